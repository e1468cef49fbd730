"""The audit forget scenarios of a classifier run (docs/scenarios.md): model-chosen forget sets (hard / easy / worst),
the corrective oracle (poison) and sequential deletion requests (seq).

Model-chosen sets are selected with models trained with the spec's architecture and recipe at the split seed, so
every run seed of a spec forgets the same rows; the selection is memoised in this process and its rows are stored in
each run record (`forget_set`).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data.core import UnlearnData, subset
from ..data.scenarios import MODEL_KINDS, make_split, parse_forget

_MEMO: OrderedDict[str, Any] = OrderedDict()  # selections, shared scores and selection originals


def _fit(spec, bundle, rows: np.ndarray | None, seed: int, device) -> torch.nn.Module:
    """A model of the spec's architecture trained with its recipe on train rows `rows` (all when None)."""
    from ..models import ClassifierTask, build_model
    from ..models.zoo import data_init
    from ..train import train

    ds = bundle.train if rows is None else subset(bundle.train, rows)
    task = ClassifierTask(bundle.num_classes, device)
    model = build_model(spec.model_spec(), tuple(bundle.train.x.shape[1:]), bundle.num_classes, seed=seed).to(device)
    return train(data_init(model, ds), ds, spec.train_config(), task, seed=seed, what="training a selection model")


def _original(spec, bundle, device) -> torch.nn.Module:
    """The model the worst-case set is chosen against: the user's --original checkpoint, else the original of the
    split seed (trained exactly as the engine trains the original of that seed). Memoised with the selections."""
    key = "original:" + _memo_key(spec, bundle, None)
    if key in _MEMO:
        return _MEMO[key]
    if not spec.original:
        model = _fit(spec, bundle, None, spec.split_seed, device).eval()
    else:
        from ..models import build_model
        from .classifier import load_original

        model = build_model(spec.model_spec(), tuple(bundle.train.x.shape[1:]), bundle.num_classes).to(device)
        model = load_original(spec.original, model, spec.model_spec(), bundle)
    return _remember(key, model)


def _remember(key: str, value):
    _MEMO[key] = value
    while len(_MEMO) > 8:
        _MEMO.popitem(last=False)
    return value


def _scores(spec, bundle, device) -> np.ndarray:
    """Out-of-fold cross-entropy of every train row (shared by hard:p, easy:p and their val: forms), memoised."""
    from ..data import memorisation

    key = "scores:" + _memo_key(spec, bundle, None)
    if key not in _MEMO:
        def fit(keep: np.ndarray, fold: int) -> torch.nn.Module:
            return _fit(spec, bundle, keep, spec.split_seed * 1000 + fold, device)

        _remember(key, memorisation.out_of_fold_loss(bundle.train, fit, seed=spec.split_seed))
    return _MEMO[key]


def _choose(spec, bundle, s) -> tuple[np.ndarray, dict]:
    """(rows, record) of a hard / easy / worst scenario. val: rows disjoint from the reported set of the same kind
    and size: hard / easy the next p% of the same ranking (a little less extreme), worst the worst-case set chosen
    among the rows the reported set leaves (docs/scenarios.md)."""
    import dataclasses

    from ..data import memorisation, worst_case
    from ..errors import DataError
    from ..train import resolve_device

    device = resolve_device(spec.device)
    n = len(bundle.train)
    size = max(1, int(round(n * s.pct / 100)))
    if s.val and 2 * size >= n:
        raise DataError(f"Forget spec {str(s)!r}: the reported set and its disjoint validation set need 2 x {size} of "
                        f"the {n} training rows, leaving nothing to retain; use a smaller percentage.")
    t0 = time.perf_counter()
    if s.kind == "worst":
        original = _original(spec, bundle, device)
        exclude = _selected(spec, bundle, dataclasses.replace(s, val=False))[0] if s.val else None
        rows = worst_case.select(original, bundle.train, s.method, size, seed=spec.split_seed, exclude=exclude)
        info = {"selector": f"worst-case bi-level ({s.method} lower level)" + (", among the rows the reported set "
                                                                             "leaves" if s.val else ""),
                "config": {k: v for k, v in vars(worst_case.WorstCaseConfig()).items()}}
    else:
        scores = _scores(spec, bundle, device)
        rows = memorisation.rank_select(scores, size, hardest=s.kind == "hard", skip=size if s.val else 0)
        info = {"selector": f"out-of-fold cross-entropy, {memorisation.FOLDS} folds"
                + (f", ranks {size + 1}-{2 * size}" if s.val else ""),
                "scores": scores[rows].tolist(), "score_mean_all": float(scores.mean())}
    info["select_s"] = time.perf_counter() - t0
    return rows, info


def _selected(spec, bundle, s) -> tuple[np.ndarray, dict]:
    """_choose, memoised in this process."""
    key = _memo_key(spec, bundle, s)
    if key not in _MEMO:
        _remember(key, _choose(spec, bundle, s))
    return _MEMO[key]


def _memo_key(spec, bundle, s) -> str:
    from ..config import to_dict
    from .classifier import _file_hash

    parts = [bundle.train.fingerprint(), spec.model_spec(), to_dict(spec.train_config()), spec.split_seed, str(s),
             _file_hash(spec.original) if spec.original else ""]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def build_split(spec, bundle) -> UnlearnData:
    """UnlearnData of `spec.forget` on `bundle` (any scenario; model-chosen ones are selected here, memoised)."""
    s = parse_forget(spec.forget)
    found: dict[str, Any] = {}

    def selector(sp, train) -> np.ndarray:
        rows, found["info"] = _selected(spec, bundle, sp)
        return rows

    data = make_split(bundle.train, bundle.test, s, spec.split_seed, num_classes=bundle.num_classes,
                      name=bundle.name, classes=bundle.classes, selector=selector if s.kind in MODEL_KINDS else None)
    if "info" in found:
        data.extra["forget_record"].update(found["info"])
    return data


def with_forget(data: UnlearnData, forget: np.ndarray, retain: np.ndarray | None = None) -> UnlearnData:
    """The same data with another forget set (retain = everything else unless given); extra splits are kept."""
    forget = np.sort(np.asarray(forget, dtype=np.int64))
    if retain is None:
        retain = np.setdiff1d(np.arange(len(data.train)), forget)
    extra = {k: v for k, v in data.extra.items() if k in ("classes", "pixel_norm", "splits")}
    return UnlearnData(data.train, data.test, forget, retain, data.num_classes, data.name, data.scenario,
                       data.input_shape, extra)


def oracle_data(data: UnlearnData) -> UnlearnData:
    """What the oracle is retrained without: all manipulated rows for poison scenarios, else the forget set."""
    bad = data.extra.get("oracle_forget")
    return data if bad is None else with_forget(data, bad)


def run_sequence(method: str, model: torch.nn.Module, data: UnlearnData, task, *, apply: Callable, evaluate: Callable,
                 oracle_of: Callable[[UnlearnData], torch.nn.Module]) -> tuple[torch.nn.Module, list[dict], float]:
    """Apply `method` to each request of data.extra['steps'] in turn (request i: forget its rows, retain everything
    not yet deleted); after each, evaluate on the union of requests 1..i against the oracle retrained without that
    union. Returns (final model, per-step records, total unlearning seconds)."""
    done = np.zeros(0, dtype=np.int64)
    steps, total = [], 0.0
    for i, rows in enumerate(data.extra["steps"], start=1):
        done = np.union1d(done, rows)
        rest = np.setdiff1d(np.arange(len(data.train)), done)
        t0 = time.perf_counter()
        model = apply(model, with_forget(data, rows, rest))
        total += time.perf_counter() - t0
        so_far = with_forget(data, done, rest)
        metrics = evaluate(model, so_far, oracle_of(so_far))
        steps.append({"step": i, "forgotten": int(len(done)), "request": int(len(rows)), "metrics": metrics,
                      "seconds": total})
    return model, steps, total


def run_steps(task_obj, spec, seed: int, store, sc, method: str, overrides: dict, ctx):
    """run_sequence for the engine: the seed context's original, step oracles from the task's model cache."""
    from ..eval import evaluate_model
    from ..methods import run_method

    def oracle_of(d: UnlearnData) -> torch.nn.Module:
        fp = d.fingerprint()
        if fp not in sc.step_oracles:
            sc.step_oracles[fp] = (sc.oracle if fp == sc.data.fingerprint()
                                   else task_obj._model(spec, seed, "oracle", store, d, sc.bundle)[0])
        return sc.step_oracles[fp]

    return run_sequence(method, sc.original, sc.data, sc.task, oracle_of=oracle_of,
                        apply=lambda m, d: run_method(method, m, d, sc.task, overrides, ctx),
                        evaluate=lambda m, d, ref: evaluate_model(m, d, sc.task, reference=ref))


__all__ = ["build_split", "oracle_data", "run_sequence", "run_steps", "with_forget"]
