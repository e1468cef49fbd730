"""Audit of one approximate deletion: the evaluation layer's metrics on the deleted / kept / holdout sets.

Sets: forget = the deleted records, retain = the records kept, test = the audit holdout (never trained on).
Metrics come from eval/ (one forward pass per model and set, shared through an OutputCache): UA = 100 - forget
accuracy, RA, TA, MIA-Efficacy (SVC protocol of Jia et al. 2023, used by SalUn; shadow members = |holdout|
kept records, shadow non-members = the holdout), and with a retrained reference Avg.Gap (Fan et al. 2024) and
KL/JS of the output distributions. `MIA-Eff-holdout` applies the same fitted attack to the holdout itself: the
non-member rate that data known to be unseen gets (in-sample for the SVC), the level MIA-Eff should approach.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.core import UnlearnData
from ..errors import ConfigError, DataError
from ..eval.evaluate import evaluate_model
from ..eval.mia import mia_efficacy, shadow_member_indices
from ..eval.outputs import OutputCache, Outputs, softmax
from .base import as_numpy

BASE_METRICS = ("UA", "RA", "TA", "MIA-Eff")
REF_METRICS = tuple(f"{d}-{s}" for d in ("KL", "JS") for s in ("forget", "retain", "test"))
MIA_PROTOCOL = ("SVC MIA (Jia et al. 2023 / SalUn): RBF SVC (C=3, gamma='auto') on the true-label confidence, "
                "trained on |holdout| kept records (members) vs the holdout (non-members); MIA-Eff = % of the "
                "deleted records it calls non-member")


def _rows_view(a: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(a.reshape(len(a), -1))
    return flat.view(np.dtype((np.void, flat.shape[1] * flat.itemsize))).ravel()


def holdout_rows(holdout: Any, x_train: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, np.ndarray]:
    """Validate the audit holdout (x, y): same row shape as training, valid labels, no row that is also trained on."""
    if holdout is None:
        raise ConfigError("The approximate scheme needs an audit holdout the model never trains on (for TA and the "
                          "membership-inference audit): pass audit_holdout=(x_test, y_test) to the constructor or "
                          "holdout=(x_test, y_test) to fit(). A slice of the training records is not accepted.")
    if not isinstance(holdout, (tuple, list)) or len(holdout) != 2:
        raise DataError(f"The audit holdout must be a pair (x, y); got {type(holdout).__name__}.")
    hx = torch.as_tensor(as_numpy(holdout[0], np.float32))
    hy = as_numpy(holdout[1])
    if len(hx) == 0 or tuple(hx.shape[1:]) != tuple(x_train.shape[1:]):
        raise DataError(f"The audit holdout must hold at least one row shaped like the training rows "
                        f"{tuple(x_train.shape[1:])}; got shape {tuple(hx.shape)}.")
    if hy.shape != (len(hx),) or not np.issubdtype(hy.dtype, np.integer) or hy.min() < 0 or hy.max() >= num_classes:
        raise DataError(f"The audit holdout labels must be {len(hx)} integer class ids in [0, {num_classes}); "
                        f"got shape {hy.shape}, dtype {hy.dtype}.")
    shared = np.isin(_rows_view(hx.numpy()), _rows_view(x_train.numpy()))
    if shared.any():
        raise DataError(f"{int(shared.sum())} audit holdout row(s) also occur among the training records (e.g. "
                        f"holdout row {int(np.flatnonzero(shared)[0])}); the holdout must be data never trained "
                        "on, such as the test split.")
    return hx, hy.astype(np.int64)


def _holdout_nonmember_rate(out: Outputs) -> float:
    """% of the holdout the SVC attack (fitted as for MIA-Eff) calls non-member."""
    retain, test = out["retain"], out["test"]
    idx = shadow_member_indices(len(retain["labels"]), len(test["labels"]))
    return mia_efficacy(softmax(retain["logits"][idx]), retain["labels"][idx], softmax(test["logits"]),
                        test["labels"], softmax(test["logits"]), test["labels"])


def _model_metrics(model: nn.Module, data: UnlearnData, task, cache: OutputCache) -> dict[str, float]:
    vals = evaluate_model(model, data, task, cache=cache, names=list(BASE_METRICS))
    out = cache.get(model, data, task)
    vals["forget_acc"] = 100.0 - vals["UA"]
    vals["forget_loss"] = float(np.mean(out["forget"]["loss"], dtype=np.float64))
    vals["MIA-Eff-holdout"] = _holdout_nonmember_rate(out)
    return vals


def audit(model: nn.Module, before: nn.Module, data: UnlearnData, task,
          reference: nn.Module | None = None, *, recipe: Any = None, seed: int = 0) -> dict[str, Any]:
    """Audit metrics of `model` (after) and `before` on forget/retain/holdout, and gaps to `reference` if given;
    with a reference and the training `recipe`, also the strict attacks that need no population (`strict`: privacy
    score, CKA, probe / k-NN, relearning, head recovery; eval.model_audits)."""
    t0 = time.perf_counter()
    cache = OutputCache()
    after = _model_metrics(model, data, task, cache)
    report: dict[str, Any] = {
        "sets": {"forget": {"rows": len(data.forget_idx), "what": "the records deleted in this batch"},
                 "retain": {"rows": len(data.retain_idx), "what": "the records kept (trained on)"},
                 "test": {"rows": len(data.test), "what": "the audit holdout, never trained on"}},
        "before": _model_metrics(before, data, task, cache), "after": after,
        "reference": None, "gap_to_reference": None, "mia_protocol": MIA_PROTOCOL,
    }
    if reference is not None:
        ref = _model_metrics(reference, data, task, cache)
        vals = evaluate_model(model, data, task, reference=reference, cache=cache,
                              names=list(BASE_METRICS + REF_METRICS))
        gaps = {k: vals[k] for k in (*REF_METRICS, "Avg.Gap")}
        report["reference"] = {"kind": "retrain", "what": "trained from scratch on the kept records only", **ref}
        report["gap_to_reference"] = gaps
        if recipe is not None:
            from ..eval.model_audits import Models, single_model_audit

            report["strict"] = single_model_audit(Models(model, before, reference, None, data, task, recipe, seed))
    report["audit_seconds"] = time.perf_counter() - t0
    return report
