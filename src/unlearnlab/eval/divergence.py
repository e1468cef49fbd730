"""KL and JS divergence between the retrained model's and the unlearned model's output distributions.

Per example, the softmax distributions over classes are compared, then averaged over the split.
Direction: KL(retrain ‖ unlearned) = sum_k p_retrain,k · (log p_retrain,k − log p_unlearned,k), the
expected extra log-loss of using the unlearned model where the retrained one is the truth (the same
direction as KLoM, Attribute-to-Delete). JS = ½ KL(P ‖ M) + ½ KL(Q ‖ M) with M = (P + Q) / 2, which
is symmetric and bounded by log 2. Natural log (nats) throughout; log-softmax is computed from logits
in float64 so that tiny probabilities do not underflow to log 0.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, check
from .metrics import metric
from .outputs import Outputs

SPLITS = ("forget", "retain", "test")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (max-shifted, stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _check_pair(p_logits: np.ndarray, q_logits: np.ndarray) -> None:
    check(np.shape(p_logits) == np.shape(q_logits) and np.ndim(p_logits) == 2, DataError,
          "Divergences compare two models' logits on the same examples: both must be [N, K] with equal "
          f"shapes. Got {np.shape(p_logits)} and {np.shape(q_logits)} instead; evaluate both models on "
          "the same split.")


def kl_per_example(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(softmax(p) ‖ softmax(q)) in nats for each row."""
    _check_pair(p_logits, q_logits)
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return np.sum(np.exp(lp) * (lp - lq), axis=1)


def js_per_example(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (nats, in [0, log 2]) between softmax(p) and softmax(q) for each row."""
    _check_pair(p_logits, q_logits)
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    lm = np.logaddexp(lp, lq) - np.log(2.0)
    js = 0.5 * np.sum(np.exp(lp) * (lp - lm), axis=1) + 0.5 * np.sum(np.exp(lq) * (lq - lm), axis=1)
    return np.maximum(js, 0.0)  # rounding can give -1e-17


def mean_kl(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over examples of KL(retrain ‖ unlearned); nan for an empty split."""
    return float(np.mean(kl_per_example(ref_logits, logits))) if len(logits) else float("nan")


def mean_js(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over examples of JS(retrain, unlearned); nan for an empty split."""
    return float(np.mean(js_per_example(ref_logits, logits))) if len(logits) else float("nan")


def align(ref_logits: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give the narrower of two [N, K] logit arrays zero-probability columns (logit -1e4) up to the wider width: a
    model kept with an extra output unit (Boundary Expand's shadow class, as SalUn's code evaluates it) compares
    with a K-way oracle that puts no mass there."""
    a, b = np.asarray(ref_logits), np.asarray(logits)
    if a.ndim == b.ndim == 2 and len(a) == len(b) and a.shape[1] != b.shape[1]:
        k = max(a.shape[1], b.shape[1])
        a, b = (np.pad(z, ((0, 0), (0, k - z.shape[1])), constant_values=-1e4) for z in (a, b))
    return a, b


def _register_kl(split: str) -> None:
    def kl(out: Outputs, ref: Outputs | None = None) -> float:
        check(ref is not None, DataError, f"KL-{split} needs the retrained model's outputs as `ref`.")
        return mean_kl(*align(ref[split]["logits"], out[split]["logits"]))

    kl.__doc__ = f"Mean KL(retrain ‖ unlearned) of softmax outputs on the {split} set."
    metric(f"KL-{split}", needs=(split,), higher_is_better=False, needs_ref=True,
           description=f"mean KL(retrain ‖ unlearned) of softmax outputs on D_{split[0]} (nats); 0 is ideal")(kl)


def _register_js(split: str) -> None:
    def js(out: Outputs, ref: Outputs | None = None) -> float:
        check(ref is not None, DataError, f"JS-{split} needs the retrained model's outputs as `ref`.")
        return mean_js(*align(ref[split]["logits"], out[split]["logits"]))

    js.__doc__ = f"Mean Jensen-Shannon divergence of softmax outputs to the retrained model on the {split} set."
    metric(f"JS-{split}", needs=(split,), higher_is_better=False, needs_ref=True,
           description=f"mean Jensen-Shannon divergence to the retrained model's outputs on D_{split[0]} "
                       "(nats, <= log 2); 0 is ideal")(js)


for _split in SPLITS:
    _register_kl(_split)
for _split in SPLITS:
    _register_js(_split)
