"""The judge of generated images: a small CNN trained once on the real images of the diffusion dataset (train
split), cached in the store's model cache like an original; its accuracy on the real test split is reported."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

_JUDGES: dict[str, tuple[torch.nn.Module, float]] = {}


def judge_for(bundle: Any, device: torch.device, store=None, seed: int = 0) -> tuple[torch.nn.Module, float]:
    """(judge, its accuracy % on the real test images) for `bundle`: memoised, else from the store, else trained."""
    from ..eval.gen_metrics import JUDGE_ARCH, JUDGE_RECIPE, judge_accuracy
    from ..models import ClassifierTask, build_model
    from ..train import TrainConfig, train

    shape = tuple(bundle.train.x.shape[1:])
    key = "judge-" + hashlib.sha256(json.dumps([JUDGE_ARCH, JUDGE_RECIPE, bundle.name, shape, seed,
                                                bundle.train.fingerprint()]).encode()).hexdigest()[:24]
    if key in _JUDGES:
        return _JUDGES[key]
    judge = build_model(JUDGE_ARCH, shape, bundle.num_classes, seed=seed).to(device)
    got = store.load_model(key, judge) if store is not None else None
    if got is not None:
        acc = float(got["test_acc"])
    else:
        task = ClassifierTask(bundle.num_classes, device)
        train(judge, bundle.train, TrainConfig(**JUDGE_RECIPE), task, seed=seed, key="judge", what="training the judge")
        acc = judge_accuracy(judge, bundle.test.x, bundle.test.y)
        if store is not None:
            store.save_model(key, judge, {"role": "judge", "arch": JUDGE_ARCH, "dataset": bundle.name,
                                          "test_acc": acc})
    _JUDGES[key] = (judge.eval(), acc)
    return _JUDGES[key]


__all__ = ["judge_for"]
