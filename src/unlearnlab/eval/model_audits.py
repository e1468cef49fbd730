"""Model-level audits of one run: representation similarity, decodability and recovery attacks.

For a stored run, unlearnlab.audit rebuilds the unlearned model by re-running its method on its seed's original
(methods are deterministic given the seed) and checks its outputs against the stored ones; the approximate deletion
scheme passes its served model, the model before the batch and its retrained reference. Each attack is also applied
to the oracle (floor: what a model that never saw the forget set yields) and the original (ceiling: no unlearning).

* CKA per layer (Kornblith et al., ICML 2019; linear CKA) of the unlearned model to the original and to the oracle,
  on forget and retain examples; floor row: the oracle of the next seed vs the oracle.
* Linear probe and k-NN (k = 5, cosine, as UUEF's code: Kim, Cha, Kim, arXiv 2503.06991) on frozen penultimate
  features, fitted on half of the test split (all classes) and scored on the forget set.
* Relearning: fine-tune every weight on 20% of the forget set (the recipe's optimiser, 2 epochs,
  constant lr) and measure accuracy on the other 80% (Lynch et al. 2024; Fan et al., ICML 2025 for LLMs).
* Head recovery: retrain only the last linear layer on retain data and measure forget accuracy: if it returns, the
  forgotten information sat in the features and the method only altered the head.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from .representation import knn_accuracy, linear_cka, linear_probe_accuracy

MAX_EXAMPLES = 512
MIN_FORGET = 10  # fewer deleted records: representation and recovery attacks are noise


@dataclasses.dataclass
class Models:
    """The models an audit of one run compares, and their data."""

    unlearned: nn.Module
    original: nn.Module
    oracle: nn.Module
    other_oracle: nn.Module | None
    data: Any
    task: Any
    recipe: Any
    seed: int


def stored_gap(m: Models, stored: dict[str, dict[str, np.ndarray]]) -> float:
    """Max |logit| difference between the rebuilt unlearned model and the run's stored forget-set outputs."""
    from .outputs import split_outputs

    now = split_outputs(m.unlearned, m.data.forget, m.task)["logits"]
    return float(np.max(np.abs(now - stored["forget"]["logits"]))) if len(now) else 0.0


def _rows(ds: Any, n: int, seed: int) -> np.ndarray:
    from ..seeding import numpy_rng

    return np.sort(numpy_rng(seed, "audit-sample").choice(len(ds), size=min(n, len(ds)), replace=False))


def _batch(ds: Any, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(ds[int(i)] for i in rows))
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(np.asarray(ys))


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@torch.no_grad()
def activations(model: nn.Module, x: torch.Tensor, device: Any) -> dict[str, np.ndarray]:
    """Flattened outputs of every Linear / Conv2d layer, plus 'penultimate' (the last Linear layer's input)."""
    acts: dict[str, np.ndarray] = {}
    hooks = []
    layers = _layers(model)
    for name, mod in layers:
        hooks.append(mod.register_forward_hook(
            lambda _m, _i, out, name=name: acts.__setitem__(name, out.detach().flatten(1).float().cpu().numpy())))
    last = [m for _, m in layers if isinstance(m, nn.Linear)][-1]
    hooks.append(last.register_forward_pre_hook(
        lambda _m, inp: acts.__setitem__("penultimate", inp[0].detach().flatten(1).float().cpu().numpy())))
    try:
        model.eval()(x.to(device))
    finally:
        for h in hooks:
            h.remove()
    return acts


def cka_audit(m: Models) -> dict:
    """Per-layer linear CKA of the unlearned model to the original and to the oracle, on forget and retain."""
    out: dict = {"layers": [n for n, _ in _layers(m.unlearned)], "splits": {}}
    dev = m.task.device
    for split, ds in (("forget", m.data.forget), ("retain", m.data.retain)):
        x, _ = _batch(ds, _rows(ds, MAX_EXAMPLES, m.seed))
        a = {k: activations(mod, x, dev) for k, mod in (("unlearned", m.unlearned), ("original", m.original),
                                                         ("oracle", m.oracle), ("other", m.other_oracle)) if mod}
        pair = lambda p, q, a=a: {n: linear_cka(a[p][n], a[q][n]) for n in out["layers"]}  # noqa: E731
        row = {"unlearned~original": pair("unlearned", "original"), "unlearned~oracle": pair("unlearned", "oracle"),
               "ceiling original~oracle": pair("original", "oracle"), "n": int(len(x))}
        if "other" in a:
            row["floor oracle~oracle(seed+1)"] = pair("other", "oracle")
        out["splits"][split] = row
    return out


def decodability_audit(m: Models) -> dict:
    """Linear-probe and k-NN accuracy of frozen penultimate features on the forget set and held-out test data."""
    test = m.data.test
    rows = _rows(test, 2 * MAX_EXAMPLES, m.seed)
    fit, held = rows[::2], rows[1::2]
    fx, fy = _batch(test, fit)
    hx, hy = _batch(test, held)
    gx, gy = _batch(m.data.forget, _rows(m.data.forget, MAX_EXAMPLES, m.seed))
    out: dict = {"fit_on": f"{len(fit)} test examples (all classes)", "probe": {}, "knn": {}}
    for role, mod in (("method", m.unlearned), ("oracle", m.oracle), ("original", m.original)):
        feats = {k: activations(mod, x, m.task.device)["penultimate"] for k, x in (("fit", fx), ("held", hx),
                                                                                   ("forget", gx))}
        sets = {"forget": (feats["forget"], gy.numpy()), "test": (feats["held"], hy.numpy())}
        pct = lambda d: {k: 100 * v for k, v in d.items()}  # noqa: E731  (percent, like every accuracy we report)
        out["probe"][role] = pct(linear_probe_accuracy(feats["fit"], fy.numpy(), sets))
        out["knn"][role] = pct(knn_accuracy(feats["fit"], fy.numpy(), sets, k=5, metric="cosine"))
    return out


def _accuracy(model: nn.Module, ds: Any, task: Any) -> float:
    from .outputs import split_outputs

    o = split_outputs(model, ds, task)
    return float(100 * np.mean(o["correct"]))


def _finetune(model: nn.Module, ds: Any, m: Models, epochs: int, head_only: bool) -> nn.Module:
    from ..train import train

    work = copy.deepcopy(model)
    params = None
    if head_only:
        last = [mod for _, mod in _layers(work) if isinstance(mod, nn.Linear)][-1]
        params = list(last.parameters())
    cfg = dataclasses.replace(m.recipe, epochs=epochs, schedule="constant", warmup=0.0, augment=False, ema=0.0,
                              batch_size=min(m.recipe.batch_size, max(8, len(ds) // 4)))
    return train(work, ds, cfg, m.task, seed=m.seed, key="audit-recovery", params=params,
                 what="recovery attack").eval()


def relearn_audit(m: Models, epochs: int = 2, fraction: float = 0.2) -> dict:
    """Forget accuracy on the unseen rest after fine-tuning on `fraction` of the forget set, per model.

    A small budget on purpose: with many epochs on half of a forgotten class even the oracle learns the class and
    the attack shows nothing (measured: 100% for method, oracle and original on digits class 3 after 5 epochs)."""
    from ..data.core import subset
    from ..seeding import numpy_rng

    rows = numpy_rng(m.seed, "audit-relearn").permutation(len(m.data.forget))
    cut = max(1, int(round(fraction * len(rows))))
    known, unseen = subset(m.data.forget, rows[:cut]), subset(m.data.forget, rows[cut:])
    out: dict = {"epochs": epochs, "fraction": fraction, "known": int(len(known)), "unseen": int(len(unseen))}
    for role, mod in (("method", m.unlearned), ("oracle", m.oracle), ("original", m.original)):
        out[role] = {"before": _accuracy(mod, unseen, m.task),
                     "after": _accuracy(_finetune(mod, known, m, epochs, head_only=False), unseen, m.task)}
    return out


def head_recovery_audit(m: Models, epochs: int = 5) -> dict:
    """Forget accuracy after retraining only the last linear layer on retain data, per model."""
    out: dict = {"epochs": epochs, "trained_on": f"retain ({len(m.data.retain)} examples)"}
    for role, mod in (("method", m.unlearned), ("oracle", m.oracle), ("original", m.original)):
        out[role] = {"before": _accuracy(mod, m.data.forget, m.task),
                     "after": _accuracy(_finetune(mod, m.data.retain, m, epochs, head_only=True), m.data.forget,
                                        m.task)}
    return out


def single_model_audit(m: Models) -> dict:
    """The strict attacks that need no population (for one deletion batch): Comparator privacy score of the forget
    outputs against the oracle's (ceiling: the original's), CKA, probe / k-NN, relearning and head recovery."""
    from .outputs import split_outputs
    from .privacy_score import privacy_score

    forget = {k: split_outputs(mod, m.data.forget, m.task)["logits"] for k, mod in
              (("method", m.unlearned), ("oracle", m.oracle), ("original", m.original))}
    out = {"ps": {"method": privacy_score(forget["method"], forget["oracle"])["ps"],
                  "ceiling": privacy_score(forget["original"], forget["oracle"])["ps"]},
           "notes": ["Population attacks (KLoM, challenge score, U-LiRA, LiRA, RMIA) need many models per role and "
                     "are not run per deletion; calibrate the method with `unlearnlab audit` on an experiment."]}
    n = len(m.data.forget)
    if n < MIN_FORGET:
        out["notes"].append(f"A batch of {n} record(s): CKA, probe, relearning and head recovery need at least "
                            f"{MIN_FORGET} deleted records to mean anything; skipped.")
        return out
    return {**out, "cka": cka_audit(m), "probe": decodability_audit(m), "relearn": relearn_audit(m),
            "head": head_recovery_audit(m)}


__all__ = ["Models", "activations", "cka_audit", "decodability_audit", "head_recovery_audit", "relearn_audit",
           "single_model_audit", "stored_gap"]
