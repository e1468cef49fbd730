"""The judges of generated images: a small CNN trained once on the real images of the diffusion dataset (train
split), cached in the store's model cache like an original; its accuracy on the real test split is reported. A
two-factor (canvas) dataset has one judge per factor: `factor='object'` (digit) and `factor='style'`."""
from __future__ import annotations

import hashlib
import json
import math
import re
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


def judge_setup(bundle: Any, factor: str | None = None) -> tuple[str, dict[str, Any]]:
    """(model spec, training recipe) of the judge of `bundle`: the dataset's own judge (DATASET_JUDGES, keyed by the
    dataset name without its size suffix) for single-factor data at >= 16x16, else JUDGE_ARCH and judge_recipe."""
    from ..eval.gen_metrics import DATASET_JUDGES, JUDGE_ARCH

    own = DATASET_JUDGES.get(re.sub(r"\d+$", "", bundle.name))
    if factor is None and own is not None and min(bundle.train.x.shape[-2:]) >= 16:
        return own[0], dict(own[1])
    return JUDGE_ARCH, judge_recipe(bundle, factor)


def judge_for(bundle: Any, device: torch.device, store=None, seed: int = 0,
              factor: str | None = None) -> tuple[torch.nn.Module, float]:
    """(judge, its accuracy % on the real test images) for `bundle` (for one factor of a canvas bundle:
    'object' or 'style'): memoised, else from the store, else trained."""
    from ..eval.gen_metrics import judge_accuracy
    from ..models import ClassifierTask, build_model
    from ..models.zoo import data_init
    from ..train import TrainConfig, train
    from .diffusion_canvas import factor_view

    train_set, test_set = bundle.train, bundle.test
    if factor is not None:
        if factor not in ("object", "style") or getattr(bundle, "factors", None) is None:
            raise ValueError(f"a factor judge ('object' or 'style') needs a canvas bundle; got {factor!r}.")
        train_set, test_set = (factor_view(d, bundle.factors, factor) for d in (bundle.train, bundle.test))
    n = len(train_set.classes) if factor is not None else bundle.num_classes
    arch, recipe = judge_setup(bundle, factor)
    shape = tuple(bundle.train.x.shape[1:])
    parts = [arch, recipe, bundle.name, shape, seed, bundle.train.fingerprint()] + ([factor] if factor else [])
    key = "judge-" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
    if key in _JUDGES:
        return _JUDGES[key]
    judge = build_model(arch, shape, n, seed=seed).to(device)
    got = store.load_model(key, judge) if store is not None else None
    if got is not None:
        acc = float(got["test_acc"])
    else:
        task = ClassifierTask(n, device)
        train(data_init(judge, train_set), train_set, TrainConfig(**recipe), task, seed=seed, key="judge",
              what=f"training the {factor + ' ' if factor else ''}judge")
        acc = judge_accuracy(judge, test_set.x, test_set.y)
        if store is not None:
            store.save_model(key, judge, {"role": "judge", "arch": arch, "dataset": bundle.name,
                                          "test_acc": acc, **({"factor": factor} if factor else {})})
    _JUDGES[key] = (judge.eval(), acc)
    return _JUDGES[key]


__all__ = ["judge_for", "judge_recipe", "judge_setup"]
