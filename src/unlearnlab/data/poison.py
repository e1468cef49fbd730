"""Corrective-unlearning manipulations (Goel, Prabhu, Torr, Kumaraguru, Sanyal, "Corrective Machine Unlearning",
TMLR 2024; bench drimpossible/corrective-unlearning-bench): a BadNets-style trigger patch relabelled to a target class,
and an interclass label swap. Only a fraction (`known`) of the manipulated rows is handed to the unlearner.

Defaults follow the bench (src/datasets.py, src/main.py, scripts/CIFAR10_*.sh): poisoned rows drawn at random from
the whole train set, a 3x3 patch in the bottom-right corner set to the largest input value of the normalised train
set, label -> class 0; 100 poisoned rows with 10 known; swapped pair (3, 5) (cat/dog on CIFAR-10), 500 rows with 50
known. Evaluation as in the bench: the manipulated rows with the trigger and their clean labels, and every test image
with the trigger and its clean label (corrected accuracy); the attack success rate counts triggered test images of the
other classes predicted as the target. Deviation: the swapped rows are a seeded random draw from each class (the bench
takes the first m/2 rows of each class in file order).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import DataError
from ..seeding import numpy_rng
from .core import ArrayDataset

PATCH = 3  # bench: 3x3 trigger


def poisoned_indices(s, labels: np.ndarray, seed: int, num_classes: int) -> np.ndarray:
    """Sorted train rows manipulated by poison spec `s` (seeded, independent of `known`). For val:poison:... another
    set of the same size, drawn from the rows the reported scenario leaves clean (a disjoint validation poisoning)."""
    n = len(labels)
    size = s.count if s.count is not None else max(1, int(round(n * s.pct / 100)))
    pool = np.ones(n, dtype=bool)
    if getattr(s, "val", False):
        pool[poisoned_indices(dataclasses.replace(s, val=False), labels, seed, num_classes)] = False
    rng = numpy_rng(seed, "poison-val" if getattr(s, "val", False) else "poison", s.method, size)
    if s.method == "patch":
        if not 0 <= s.cls < num_classes:
            raise DataError(f"Forget spec {str(s)!r}: target class {s.cls} is out of range 0..{num_classes - 1}.")
        if size > n // 2:
            raise DataError(f"Forget spec {str(s)!r}: {size} poisoned rows is more than half of the {n} train rows; "
                            "poison fewer (the bench: 100 of CIFAR-10's 50,000).")
        return np.sort(rng.choice(np.flatnonzero(pool), size=size, replace=False)).astype(np.int64)
    a, b = s.pair
    if max(a, b) >= num_classes:
        raise DataError(f"Forget spec {str(s)!r}: classes {a}-{b} are out of range 0..{num_classes - 1}.")
    half = size // 2
    pa, pb = np.flatnonzero((labels == a) & pool), np.flatnonzero((labels == b) & pool)
    if half < 1 or half > min(len(pa), len(pb)) // (1 if getattr(s, "val", False) else 2):
        raise DataError(f"Forget spec {str(s)!r}: swapping {size} rows needs {half} per class, between 1 and half "
                        f"of the smaller class ({min(len(pa), len(pb))} rows); choose another size.")
    return np.sort(np.concatenate([rng.choice(pa, half, replace=False), rng.choice(pb, half, replace=False)]))


def known_indices(poisoned: np.ndarray, s, seed: int) -> np.ndarray:
    """The identified subset S_f of the poisoned rows S_m: `known`% of them (at least one), seeded."""
    k = max(1, int(round(len(poisoned) * s.known / 100)))
    return np.sort(numpy_rng(seed, "poison-known", str(s)).permutation(poisoned)[:k])


def add_patch(x: torch.Tensor, value: float, size: int = PATCH) -> torch.Tensor:
    """A copy of image batch `x` (N, C, H, W) with the bottom-right `size` x `size` square set to `value`."""
    out = x.clone()
    out[..., -size:, -size:] = value
    return out


def _image_train(train) -> ArrayDataset:
    if not isinstance(train, ArrayDataset) or train.x.dim() != 4:
        raise DataError("poison:patch needs image data held in memory (N, C, H, W), e.g. digits or cifar10-dev; "
                        "poison:swap works on any ArrayDataset.")
    return train


def manipulate(train: ArrayDataset, test: ArrayDataset, s, poisoned: np.ndarray) -> tuple[ArrayDataset, dict]:
    """(manipulated train set, extra evaluation splits). Splits: 'poisoned' = the manipulated rows (with the trigger)
    and their true labels (clean-label accuracy), 'attack' = attack inputs with their true labels (corrected
    accuracy: every test image with the trigger, or the test images of the swapped pair), and 'attack_target' =
    attack inputs of the classes the manipulation changes, labelled as it wants (its accuracy = attack success)."""
    if not isinstance(train, ArrayDataset) or not isinstance(test, ArrayDataset):
        raise DataError("poison scenarios need in-memory datasets (ArrayDataset), as the built-in datasets are.")
    idx = torch.as_tensor(poisoned, dtype=torch.long)
    x, y = train.x.clone(), train.y.clone()
    true_y = train.y[idx]
    if s.method == "patch":
        value = float(_image_train(train).x.max())  # bench: the max over the normalised train set
        x[idx] = add_patch(x[idx], value)
        y[idx] = s.cls
        tx, ty = add_patch(test.x, value), test.y
        other = ty != s.cls
        target = ArrayDataset(tx[other], torch.full_like(ty[other], s.cls), classes=train.classes)
    else:
        a, b = s.pair
        y[idx] = torch.where(true_y == a, torch.tensor(b), torch.tensor(a))
        keep = (test.y == a) | (test.y == b)
        tx, ty = test.x[keep], test.y[keep]
        target = ArrayDataset(tx, torch.where(ty == a, torch.tensor(b), torch.tensor(a)), classes=train.classes)
    classes = train.classes
    splits = {"poisoned": ArrayDataset(x[idx], true_y, classes=classes),
              "attack": ArrayDataset(tx, ty, classes=classes), "attack_target": target}
    out = ArrayDataset(x, y, classes=classes)
    if getattr(train, "pixel_norm", None) is not None:
        out.pixel_norm = train.pixel_norm
    return out, splits


__all__ = ["PATCH", "add_patch", "known_indices", "manipulate", "poisoned_indices"]
