"""The judges of generated images: a small CNN trained once on the real images of the diffusion dataset (train
split), cached in the store's model cache like an original; its accuracy on the real test split is reported. A
two-factor (canvas) dataset has one judge per factor: `factor='object'` (digit) and `factor='style'`."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import torch

_JUDGES: dict[str, tuple[torch.nn.Module, float]] = {}


def judge_recipe(bundle: Any, factor: str | None) -> dict[str, Any]:
    """JUDGE_RECIPE; a factor judge of a canvas bundle (every image in K styles) trains ceil(epochs / K) epochs, the
    same number of optimisation steps as the single-factor judge."""
    from ..eval.gen_metrics import JUDGE_RECIPE

    if factor is None:
        return dict(JUDGE_RECIPE)
    return {**JUDGE_RECIPE, "epochs": math.ceil(JUDGE_RECIPE["epochs"] / bundle.factors.n_styles)}


def judge_for(bundle: Any, device: torch.device, store=None, seed: int = 0,
              factor: str | None = None) -> tuple[torch.nn.Module, float]:
    """(judge, its accuracy % on the real test images) for `bundle` (for one factor of a canvas bundle:
    'object' or 'style'): memoised, else from the store, else trained."""
    from ..eval.gen_metrics import JUDGE_ARCH, judge_accuracy
    from ..models import ClassifierTask, build_model
    from ..train import TrainConfig, train
    from .diffusion_canvas import factor_view

    train_set, test_set = bundle.train, bundle.test
    if factor is not None:
        if factor not in ("object", "style") or getattr(bundle, "factors", None) is None:
            raise ValueError(f"a factor judge ('object' or 'style') needs a canvas bundle; got {factor!r}.")
        train_set, test_set = (factor_view(d, bundle.factors, factor) for d in (bundle.train, bundle.test))
    n = len(train_set.classes) if factor is not None else bundle.num_classes
    recipe = judge_recipe(bundle, factor)
    shape = tuple(bundle.train.x.shape[1:])
    parts = [JUDGE_ARCH, recipe, bundle.name, shape, seed, bundle.train.fingerprint()] + ([factor] if factor else [])
    key = "judge-" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
    if key in _JUDGES:
        return _JUDGES[key]
    judge = build_model(JUDGE_ARCH, shape, n, seed=seed).to(device)
    got = store.load_model(key, judge) if store is not None else None
    if got is not None:
        acc = float(got["test_acc"])
    else:
        task = ClassifierTask(n, device)
        train(judge, train_set, TrainConfig(**recipe), task, seed=seed, key="judge",
              what=f"training the {factor + ' ' if factor else ''}judge")
        acc = judge_accuracy(judge, test_set.x, test_set.y)
        if store is not None:
            store.save_model(key, judge, {"role": "judge", "arch": JUDGE_ARCH, "dataset": bundle.name,
                                          "test_acc": acc, **({"factor": factor} if factor else {})})
    _JUDGES[key] = (judge.eval(), acc)
    return _JUDGES[key]


__all__ = ["judge_for", "judge_recipe"]
