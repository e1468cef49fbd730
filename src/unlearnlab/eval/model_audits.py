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
  forgotten information sat in the features and the method only altered the head. The head trains on the frozen
  eval-mode penultimate features (BatchNorm statistics do not drift, and each model is forwarded once).
* Attack strength (both recovery attacks): the recipe's learning rate is not an attack budget (FastCNN's 1.0
  relearns a class from a few examples even in the oracle, or wipes a head row in every model: floor = ceiling).
  Unless a learning rate is given, each attack is calibrated on the reference models only, never on the method:
  from recipe lr x 10^0, 10^-0.5, ..., 10^-3 it takes the strongest learning rate at which the original and the
  oracle stay at least half as far apart after the attack as before it. The same learning rate then attacks the
  method, so every method of a run faces the same attack; the trace of the calibration is in the result.
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
LR_STEPS = tuple(10 ** (-k / 2) for k in range(7))  # x recipe lr: 1, 0.32, 0.1, ..., 0.001 (strongest first)
KEEP = 0.5  # the calibrated attack keeps at least this share of the original-oracle gap
MAX_HEAD_ROWS = 8192  # retain examples the head-recovery attack trains on (features of a sample beyond that)


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


def _halves(rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random halves of `rows` (sorted). Alternate rows are not random halves where labels cycle through the
    classes (blobs: every other row is every other class, so the probe was fit on half the classes)."""
    from ..seeding import numpy_rng

    perm = numpy_rng(seed, "audit-probe-halves").permutation(len(rows))
    return np.sort(rows[perm[::2]]), np.sort(rows[perm[1::2]])


def decodability_audit(m: Models) -> dict:
    """Linear-probe and k-NN accuracy of frozen penultimate features on the forget set and held-out test data."""
    test = m.data.test
    fit, held = _halves(_rows(test, 2 * MAX_EXAMPLES, m.seed), m.seed)
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


def _finetune(model: nn.Module, ds: Any, m: Models, epochs: int, lr: float) -> nn.Module:
    from ..train import train

    cfg = dataclasses.replace(m.recipe, epochs=epochs, lr=lr, schedule="constant", warmup=0.0, augment=False,
                              ema=0.0, batch_size=min(m.recipe.batch_size, max(8, len(ds) // 4)))
    return train(copy.deepcopy(model), ds, cfg, m.task, seed=m.seed, key="audit-recovery",
                 what="recovery attack").eval()


def calibrate(attack: Any, before: dict[str, float], base_lr: float, lr: float | None = None) -> dict:
    """The learning rate of a recovery attack: `attack(role, lr)` -> forget accuracy (%) after attacking the
    original or the oracle. Fixed when `lr` is given; else the strongest of base_lr x LR_STEPS at which
    original - oracle after the attack is at least KEEP x (original - oracle) before it. Calibrates on the
    reference models only, so every method of a run faces the same attack."""
    if lr is not None:
        return {"lr": float(lr), "calibrated": False, "trace": []}
    gap = before["original"] - before["oracle"]
    trace = []
    for step in LR_STEPS:
        after = {role: attack(role, base_lr * step) for role in ("original", "oracle")}
        trace.append({"lr": base_lr * step, **after})
        if gap > 0 and after["original"] - after["oracle"] >= KEEP * gap:
            return {"lr": base_lr * step, "calibrated": True, "trace": trace, "gap_before": gap}
    return {"lr": base_lr * LR_STEPS[-1], "calibrated": True, "trace": trace, "gap_before": gap,
            "note": f"no learning rate down to {LR_STEPS[-1]:g} x the recipe's keeps half of the original-oracle "
                    f"gap ({gap:.1f} points before the attack): the set-up cannot show this attack; weakest used"}


def _attacked(m: Models, name: str, before_of: Any, attack: Any, lr: float | None) -> dict:
    """Before/after forget accuracy of method, oracle and original under one calibrated learning rate."""
    models = {"method": m.unlearned, "oracle": m.oracle, "original": m.original}
    before = {role: before_of(mod) for role, mod in models.items()}
    done: dict = {}

    def run(role: str, at: float) -> float:
        if (role, at) not in done:
            done[role, at] = attack(models[role], at)
        return done[role, at]

    cal = calibrate(run, before, m.recipe.lr, lr)
    out = {role: {"before": before[role], "after": run(role, cal["lr"])} for role in models}
    how = (f"calibrated on the original and the oracle ({m.recipe.lr:g} x {cal['lr'] / m.recipe.lr:.3g})"
           if cal["calibrated"] else "given")
    notes = [f"{name}: lr {cal['lr']:.3g}, {how}" + (f"; {cal['note']}" if "note" in cal else "")]
    return {**out, "lr": cal["lr"], "calibration": cal, "notes": notes}


def relearn_audit(m: Models, epochs: int = 2, fraction: float = 0.2, lr: float | None = None) -> dict:
    """Forget accuracy on the unseen rest after fine-tuning on `fraction` of the forget set, per model.

    A small budget on purpose: with many epochs on half of a forgotten class even the oracle learns the class and
    the attack shows nothing (measured: 100% for method, oracle and original on digits class 3 after 5 epochs)."""
    from ..data.core import subset
    from ..seeding import numpy_rng

    rows = numpy_rng(m.seed, "audit-relearn").permutation(len(m.data.forget))
    cut = max(1, int(round(fraction * len(rows))))
    known, unseen = subset(m.data.forget, rows[:cut]), subset(m.data.forget, rows[cut:])
    out: dict = {"epochs": epochs, "fraction": fraction, "known": int(len(known)), "unseen": int(len(unseen))}
    res = _attacked(m, "relearning attack", lambda mod: _accuracy(mod, unseen, m.task),
                    lambda mod, at: _accuracy(_finetune(mod, known, m, epochs, at), unseen, m.task), lr)
    return {**out, **res}


@torch.no_grad()
def _features(model: nn.Module, ds: Any, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features, labels) of an eval-mode model: the input of its last Linear layer at the first call
    per batch (a test-time-augmenting model calls its head again on the flipped image)."""
    from ..data.core import batches

    grab: list[torch.Tensor] = []
    n = [0]  # batches done: keep one feature row per example
    hook = _head(model).register_forward_pre_hook(
        lambda _m, inp: None if len(grab) > n[0] else grab.append(inp[0].detach().flatten(1).float().cpu()))
    ys = []
    try:
        model.eval()
        for x, y in batches(ds, 512):
            model(x.to(device))
            ys.append(torch.as_tensor(y))
            n[0] += 1
    finally:
        hook.remove()
    return torch.cat(grab), torch.cat(ys)


def _head(model: nn.Module) -> nn.Linear:
    heads = [mod for _, mod in _layers(model) if isinstance(mod, nn.Linear)]
    if not heads:
        from ..errors import ConfigError

        raise ConfigError("the head-recovery attack needs a model with a Linear output layer; leave `head` out of "
                          "--attacks for this model")
    return heads[-1]


def _train_head(model: nn.Module, fit: tuple, m: Models, epochs: int, lr: float) -> float:
    """Forget accuracy (%) of the model with its last layer retrained on frozen retain features (SGD with momentum
    0.9, the recipe's weight decay and batch size, constant lr; cross-entropy on that layer's outputs). The
    accuracy is the whole model's with the new layer swapped in, so output scaling or test-time augmentation after
    the layer is kept."""
    from ..seeding import torch_generator

    work = copy.deepcopy(model)
    head = _head(work)
    device = head.weight.device
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=m.recipe.weight_decay)
    gen = torch_generator(m.seed, "audit-head")
    feats, ys = fit
    bs = min(m.recipe.batch_size, len(ys))
    with torch.enable_grad():
        for _ in range(epochs):
            for rows in torch.randperm(len(ys), generator=gen).split(bs):
                loss = torch.nn.functional.cross_entropy(head(feats[rows].to(device)), ys[rows].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return _accuracy(work.eval(), m.data.forget, m.task)


def head_recovery_audit(m: Models, epochs: int = 5, lr: float | None = None) -> dict:
    """Forget accuracy after retraining only the last linear layer on retain data, per model."""
    from ..data.core import subset

    retain = m.data.retain
    if len(retain) > MAX_HEAD_ROWS:
        retain = subset(retain, _rows(retain, MAX_HEAD_ROWS, m.seed))
    cache: dict[int, tuple] = {}

    def fit(mod: nn.Module) -> tuple:
        if id(mod) not in cache:
            cache[id(mod)] = _features(mod, retain, m.task.device)
        return cache[id(mod)]

    out: dict = {"epochs": epochs, "trained_on": f"retain ({len(retain)} examples, frozen features)"}
    res = _attacked(m, "head-recovery attack", lambda mod: _accuracy(mod, m.data.forget, m.task),
                    lambda mod, at: _train_head(mod, fit(mod), m, epochs, at), lr)
    return {**out, **res}


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
