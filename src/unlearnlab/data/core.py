"""Array-backed datasets, the UnlearnData split object and fast batch iteration."""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import DataError


class ArrayDataset(Dataset):
    """In-memory (x, y) tensors; slicing whole batches avoids per-example Python overhead."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, classes: Sequence[str] | None = None):
        if len(x) != len(y):
            raise DataError(f"x has {len(x)} rows but y has {len(y)}; they must match.")
        self.x = x.float() if not x.is_floating_point() else x
        self.y = y.long()
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def subset(self, idx: np.ndarray | torch.Tensor) -> ArrayDataset:
        """A new ArrayDataset holding rows `idx`."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return ArrayDataset(self.x[idx], self.y[idx], classes=self.classes)

    def with_labels(self, y: torch.Tensor) -> ArrayDataset:
        """The same inputs with replaced labels."""
        return ArrayDataset(self.x, y, classes=self.classes)

    def fingerprint(self) -> str:
        """A content hash of inputs and labels."""
        h = hashlib.sha256()
        h.update(self.x.contiguous().numpy().tobytes())
        h.update(self.y.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


class TokenDataset(Dataset):
    """Pre-encoded token examples ({input_ids, attention_mask, labels} lists) with a padding collate.

    Subclasses fill `items` and `pad`; `per_item` names the attributes with one entry per example, which subset()
    slices together (no re-encoding)."""

    per_item: tuple[str, ...] = ("items",)
    items: list[dict[str, list[int]]]
    pad: int

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.items[i]

    def collate(self, features: list[dict]) -> dict:
        """Right-padded tensors (labels -100 and attention_mask 0 on padding)."""
        from ..models.lm_format import collate

        return collate(features, self.pad)

    def subset(self, idx):
        """Examples `idx` as a new dataset of the same type."""
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        for name in self.per_item:
            values = getattr(self, name)
            setattr(out, name, [values[int(i)] for i in idx])
        return out

    def fingerprint(self) -> str:
        """A content hash of the token ids and labels."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.items, separators=(",", ":")).encode()).hexdigest()[:16]


def subset(ds: Dataset, idx: np.ndarray) -> Dataset:
    """Rows `idx` of any map-style dataset (fast path for ArrayDataset)."""
    if isinstance(ds, ArrayDataset) or callable(getattr(ds, "subset", None)):
        return ds.subset(idx)  # keeps the dataset's own type (and e.g. its collate)
    return Subset(ds, [int(i) for i in idx])


def labels_of(ds: Dataset) -> np.ndarray:
    """All labels of a classification dataset as an int array."""
    if isinstance(ds, ArrayDataset):
        return ds.y.numpy()
    if isinstance(ds, Subset):
        return labels_of(ds.dataset)[np.asarray(ds.indices)]
    if hasattr(ds, "targets"):
        return np.asarray(ds.targets)
    return np.asarray([int(ds[i][1]) for i in range(len(ds))])


def fingerprint(ds: Dataset) -> str:
    """A content hash of a dataset (exact for ArrayDataset, sampled for others)."""
    if isinstance(ds, ArrayDataset):
        return ds.fingerprint()
    h = hashlib.sha256(f"{type(ds).__name__}:{len(ds)}".encode())
    n = len(ds)
    for i in sorted({0, n // 3, n // 2, n - 1} if n else set()):
        x, y = ds[i]
        h.update(torch.as_tensor(x).numpy().tobytes())
        h.update(str(int(y)).encode())
    return h.hexdigest()[:16]


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4, mode: str = "zeros") -> torch.Tensor:
    """Standard CIFAR augmentation on a batch: random crop with `pad` padding (zeros, or reflect) + horizontal flip."""
    if x.dim() != 4:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect" if mode == "reflect" else "constant")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # n x h
    cols = (dx[:, None] + torch.arange(w)[None, :])  # n x w
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


class _Indexed(Dataset):
    """(x, y, i): an (x, y) dataset's examples with their positions, for batches(..., index=True)."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        x, y = self.ds[i]
        return x, y, i


def batches(ds: Dataset, batch_size: int, *, shuffle: bool = False, gen: torch.Generator | None = None,
            augment: bool = False, drop_last: bool = False, crop_pad: int = 4,
            pad_mode: str = "zeros", index: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield (x, y) batches, or (x, y, positions in `ds`) with `index` (same order and generator draws either way);
    ArrayDataset is sliced directly, anything else goes through a DataLoader."""
    n = len(ds)
    if n == 0:
        return
    if isinstance(ds, ArrayDataset):
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for s in range(0, stop, batch_size):
            idx = order[s:s + batch_size]
            x = ds.x[idx]
            x = augment_batch(x, gen, crop_pad, pad_mode) if augment and gen is not None else x
            yield (x, ds.y[idx], idx) if index else (x, ds.y[idx])
        return
    collate = getattr(ds, "collate", None)  # e.g. padded token batches for language-model datasets
    if index and collate is not None:
        raise ValueError("batches(..., index=True) needs a dataset of (x, y) examples, not one that collates its own")
    loader = DataLoader(_Indexed(ds) if index else ds, batch_size=batch_size, shuffle=shuffle, generator=gen,
                        drop_last=drop_last, collate_fn=collate)
    for batch in loader:
        if collate is not None:
            yield batch
            continue
        x, y, *pos = batch
        x = torch.as_tensor(x).float()
        x = augment_batch(x, gen, crop_pad, pad_mode) if augment and gen is not None else x
        yield (x, torch.as_tensor(y).long(), *pos)


@dataclasses.dataclass
class UnlearnData:
    """The forget / retain / test splits of one unlearning problem, with the indices that define them."""

    train: Dataset
    test: Dataset
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    num_classes: int
    name: str = "custom"
    scenario: str = "custom"
    input_shape: tuple[int, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.forget_idx = np.asarray(self.forget_idx, dtype=np.int64)
        self.retain_idx = np.asarray(self.retain_idx, dtype=np.int64)
        n = len(self.train)
        if len(self.forget_idx) == 0:
            raise DataError("The forget set is empty; choose a forget spec that selects at least one example.")
        for nm, idx in (("forget", self.forget_idx), ("retain", self.retain_idx)):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise DataError(f"{nm} indices must lie in [0, {n}); got values from {idx.min()} to {idx.max()}.")
        if np.intersect1d(self.forget_idx, self.retain_idx).size:
            raise DataError("forget and retain indices overlap; an example can only be in one of them.")
        self._cache: dict[str, Dataset] = {}
        if not self.input_shape and n and isinstance(self.train[0], tuple):
            self.input_shape = tuple(torch.as_tensor(self.train[0][0]).shape)

    def _split(self, key: str, idx: np.ndarray) -> Dataset:
        if key not in self._cache:
            self._cache[key] = subset(self.train, idx)
        return self._cache[key]

    @property
    def forget(self) -> Dataset:
        """D_f: the training examples to forget."""
        return self._split("forget", self.forget_idx)

    @property
    def retain(self) -> Dataset:
        """D_r: the training examples to keep."""
        return self._split("retain", self.retain_idx)

    def splits(self) -> dict[str, Dataset]:
        """The evaluated splits by name (forget, retain, test, plus any extra Dataset in `extra['splits']`)."""
        return {"forget": self.forget, "retain": self.retain, "test": self.test, **self.extra.get("splits", {})}

    def fingerprint(self) -> str:
        """Hash of the data content and the split indices."""
        h = hashlib.sha256()
        h.update(fingerprint(self.train).encode())
        h.update(fingerprint(self.test).encode())
        h.update(self.forget_idx.tobytes())
        h.update(self.retain_idx.tobytes())
        return h.hexdigest()[:16]
