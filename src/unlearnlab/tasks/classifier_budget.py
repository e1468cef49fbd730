"""The classifier engine's guard against absurd training budgets: a recipe of 0 epochs, or a run whose training
would take far too long (estimated from one timed training step of the model on the data)."""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..spec import RunSpec

MAX_EXAMPLE_PASSES = 2e9  # ~ CIFAR-10 ResNet-18 for 182 epochs x 200 (original + oracle): far beyond any real run


def _passes(spec: RunSpec, names: list[str], n_train: int) -> list[tuple[str, float]]:
    """(what, example passes) of one seed: the original, the oracle and each method, counting a method's epochs
    as passes over the train set (an upper bound: most methods see only D_r or D_f)."""
    from ..config import build
    from ..methods import METHODS

    rec = spec.train_config()
    out = [("original + oracle", 2.0 * rec.epochs * n_train)]
    for m in names:
        cfg = build(METHODS.get(m).config, spec.overrides.get(m, {}), what=m)
        epochs = getattr(cfg, "epochs", 0) or 0
        out.append((f"{m} (epochs={epochs:g})", float(epochs) * n_train))
    return out


def check_budget(spec: RunSpec, *, allow_large: bool = False) -> None:
    """Refuse a recipe of 0 epochs (an untrained original) and, unless `allow_large`, a run whose training would take
    absurdly long, with an estimate of that time (one timed training step of the model on this data)."""
    if spec.original:
        return
    rec = spec.train_config()
    if rec.epochs == 0:
        raise ConfigError("recipe epochs 0 trains nothing: the original and the retrained oracle would be their "
                          "random initialisation, so there is nothing to forget. Use at least 1 epoch, or bring a "
                          "trained model with --original CHECKPOINT.")
    from .classifier import _data, method_names

    names = [n for n in method_names(spec) if n != "retrain"]
    bundle, data = _data(spec, spec.seeds[0])
    parts = _passes(spec, names, len(bundle.train))
    total = sum(p for _, p in parts) * len(spec.seeds)
    if total <= MAX_EXAMPLE_PASSES or allow_large:
        return
    secs = total * _seconds_per_example(spec, bundle, data)
    what, worst = max(parts, key=lambda p: p[1])
    raise ConfigError(f"this run trains for {total:.3g} example passes ({what}: {worst:.3g} per seed), about "
                      f"{_human(secs)} on this machine. Lower the epochs, or pass --yes (api.run(..., "
                      "allow_large=True)) to run it anyway.")


def _seconds_per_example(spec: RunSpec, bundle, data) -> float:
    """Wall seconds per example of one training step of the spec's model on a batch of this data."""
    import time

    from ..data.core import batches
    from ..models import ClassifierTask as Cls
    from ..models import build_model
    from ..train import resolve_device

    device = resolve_device(spec.device)
    task = Cls(bundle.num_classes, device, amp=spec.train_config().amp)
    model = build_model(spec.model_spec(), data.input_shape, bundle.num_classes).to(device).train()
    batch = next(iter(batches(bundle.train, min(64, len(bundle.train)))))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    t0 = time.perf_counter()
    for _ in range(2):
        opt.zero_grad()
        task.loss(model, batch).backward()
        opt.step()
    return (time.perf_counter() - t0) / (2 * len(batch[1]))


def _human(secs: float) -> str:
    for unit, s in (("years", 3.15e7), ("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if secs >= s:
            return f"{secs / s:.3g} {unit}"
    return f"{secs:.0f} seconds"
