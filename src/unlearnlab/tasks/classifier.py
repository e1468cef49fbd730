"""The classifier Task of the engine: data and split, original and retrained oracle, method runs, evaluation."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..config import to_dict
from ..engine.events import collect_curves, emit
from ..engine.records import count_steps, make_record, timed
from ..errors import ConfigError, UnlearnLabError
from ..spec import RunSpec
from .base import Plan, same_weights
from .scenario_split import oracle_data, run_steps

KIND = "classifier"


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def method_names(spec: RunSpec, kind: str = KIND) -> list[str]:
    """The methods a spec asks for ('all' expands to every method of the task kind except retrain)."""
    from ..methods import METHODS

    names: list[str] = []
    for m in spec.methods:
        if m == "all":
            names += [n for n, meth in METHODS.items() if kind in meth.kinds and n != "retrain"]
        else:
            meth = METHODS.get(m)
            if kind not in meth.kinds:
                raise UnlearnLabError(f"Method {m!r} does not apply to {kind} models; it supports {meth.kinds}.")
            names.append(m)
    return list(dict.fromkeys(names))


def method_config(method: str, overrides: dict) -> dict[str, Any]:
    """The full config (defaults + overrides) of `method`; empty for the original model."""
    from ..config import build
    from ..methods import METHODS

    if method in ("original", "oracle-floor"):
        return {}
    return to_dict(build(METHODS.get(method).config, overrides, what=method))


def validate(spec: RunSpec, names: list[str]) -> None:
    """Check recipe, method names and every override before anything is trained or stored."""
    spec.train_config()
    for method in spec.overrides:
        if method not in names and method != "retrain":
            raise ConfigError(f"Overrides are given for {method!r}, which is not among the methods of this run "
                              f"({', '.join(names)}); add it to --methods or drop the override.")
    for method in ["retrain", *names]:
        method_config(method, spec.overrides.get(method, {}))


def _file_hash(path: str) -> str:
    from pathlib import Path

    p = Path(path).with_suffix(".safetensors")
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else "missing"


def _context_key(spec: RunSpec, seed: int) -> str:
    """What a seed's data, original and oracle depend on: not the methods, their overrides or the run's name, so
    tuning trials and sweeps that differ only in those share one context (one load of the models, one forward pass
    of the original and the oracle per split); a user's original by its content, so an edited file is reloaded."""
    d = {k: v for k, v in spec.to_dict().items() if k not in ("methods", "seeds", "overrides", "name", "attacks")}
    return _key(d, seed, _file_hash(spec.original) if spec.original else "")


def record_spec(spec: RunSpec, method: str, seed: int, overrides: dict, data_hash: str = "") -> dict[str, Any]:
    """The stored spec of one (method, seed) run: enough to reproduce and to resume (`data_hash`: the content of
    the train/test data and of the split, so an edited data or indices file is never matched to an old run)."""
    out = {"task": spec.task, "dataset": spec.dataset, "forget": spec.forget, "split_seed": spec.split_seed,
           "model": spec.model_spec(), "recipe": to_dict(spec.train_config()), "method": method,
           "config": method_config(method, overrides), "seed": seed, "name": spec.name,
           **({"original": _file_hash(spec.original)} if spec.original else {})}
    if data_hash:
        out["data"] = data_hash
    return out


@dataclasses.dataclass
class SeedContext:
    """Everything shared by the methods of one seed: data, task, original and oracle models, output cache."""

    data: Any
    task: Any
    original: torch.nn.Module
    oracle: torch.nn.Module
    recipe: Any
    retrain_s: float
    cache: Any
    bundle: Any = None
    step_oracles: dict = dataclasses.field(default_factory=dict)  # seq: oracle of each prefix of the requests


def _precision(sc: "SeedContext", method: str) -> dict[str, str]:
    """What the run computed in: the models' training, the method and the evaluation ('bf16' or 'fp32')."""
    from ..methods.base import AUTOCAST
    from ..models.precision import effective

    amp, dev = sc.recipe.amp, sc.task.device
    return {"models": effective(amp, dev), "method": effective(amp and method in AUTOCAST, dev),
            "evaluation": effective(amp, dev)}


def _data(spec: RunSpec, seed: int):
    from ..data import load_dataset
    from .scenario_split import build_split

    bundle = load_dataset(spec.dataset, seed=seed)
    return bundle, build_split(spec, bundle)


def _base(spec: RunSpec, bundle, seed: int) -> dict[str, Any]:
    return {"arch": spec.model_spec(), "dataset": bundle.name, "recipe": to_dict(spec.train_config()), "seed": seed}


def load_original(path: str, model: torch.nn.Module, arch: str, bundle) -> torch.nn.Module:
    """Load a user's original checkpoint, refusing one made for another architecture or other training data."""
    from ..errors import CheckpointError
    from ..models.checkpoint import load_checkpoint, read_meta

    meta = read_meta(path)
    load_checkpoint(path, model, expect={"arch": arch, "dataset": bundle.name})
    if meta.get("data_hash") and meta["data_hash"] != bundle.train.fingerprint():
        raise CheckpointError(f"Checkpoint {path} was trained on different {bundle.name} data (hash "
                              f"{meta['data_hash']} vs {bundle.train.fingerprint()}); retrain it on this dataset.")
    return model.eval()


class ClassifierTask:
    """Engine Task for image / vector classifiers (one process-local memo of loaded seed contexts)."""

    kind = KIND

    def __init__(self) -> None:
        self._contexts: OrderedDict[str, SeedContext] = OrderedDict()

    # -- planning ---------------------------------------------------------------------------------
    def plan(self, spec: RunSpec) -> Plan:
        """Validate the spec and name every job it needs (content keys; data loaded to hash it)."""
        names = method_names(spec)
        validate(spec, names)
        if spec.original:
            from ..models.checkpoint import read_meta

            read_meta(spec.original)  # a missing checkpoint fails now, not in every job
            if spec.forget.removeprefix("val:").startswith("poison:"):
                raise ConfigError("a poison scenario trains the original on the manipulated train set; drop "
                                  "--original (a checkpoint trained on the clean data cannot be the poisoned model).")
        plan = Plan(methods=["original", "retrain", *(n for n in names if n != "retrain")])
        for seed in spec.seeds:
            bundle, data = _data(spec, seed)
            base = _base(spec, bundle, seed)
            if not spec.original:  # data.train: the train set as trained on (poison scenarios manipulate it)
                plan.model_keys[("original", seed)] = _key("original", base, data.train.fingerprint())
            plan.model_keys[("oracle", seed)] = _key("retrain", base, oracle_data(data).fingerprint())
            for m in plan.methods:
                plan.record_specs[(m, seed)] = record_spec(spec, m, seed, spec.overrides.get(m, {}),
                                                           data.fingerprint())
        for s1, s2 in zip(spec.seeds, spec.seeds[1:]):
            plan.record_specs[("oracle-floor", s1)] = {**record_spec(spec, "oracle-floor", s1, {},
                                                                     plan.record_specs[("retrain", s1)]["data"]),
                                                       "config": {"other_seed": s2}}
        return plan

    # -- models -----------------------------------------------------------------------------------
    def _model(self, spec: RunSpec, seed: int, role: str, store, data=None, bundle=None) -> tuple[Any, float]:
        """The original or the oracle of `seed`: from the store's model cache, else trained (and cached)."""
        from ..methods import MethodContext, run_method
        from ..models import ClassifierTask as Cls
        from ..models import build_model
        from ..models.zoo import data_init
        from ..train import resolve_device, train

        if data is None:
            bundle, data = _data(spec, seed)
        device = resolve_device(spec.device)
        rec, arch = spec.train_config(), spec.model_spec()
        task = Cls(bundle.num_classes, device, amp=rec.amp)
        base = _base(spec, bundle, seed)

        def build() -> torch.nn.Module:
            return build_model(arch, data.input_shape, bundle.num_classes, seed=seed).to(device)

        if role == "original" and spec.original:
            return load_original(spec.original, build(), arch, bundle), 0.0
        if role == "original":
            key, meta = _key("original", base, data.train.fingerprint()), {"data_hash": data.train.fingerprint()}
            fit: Callable = lambda m: train(data_init(m, data.train), data.train, rec, task, seed=seed,  # noqa: E731
                                            what="training the original")
        else:
            od = oracle_data(data)  # poison: retrained without every manipulated row, not only the known ones
            key, meta = _key("retrain", base, od.fingerprint()), {"data_hash": od.fingerprint()}
            ctx = MethodContext(seed=seed, recipe=rec)
            fit = lambda m: run_method("retrain", m, od, task, ctx=ctx)  # noqa: E731
        model = build()
        if store is not None:
            got = store.load_model(key, model)
            if got is not None:
                return model.eval(), float(got.get("train_s", 0.0))
        model, t = timed(lambda: fit(model))
        if store is not None:
            store.save_model(key, model, {**base, **meta, "role": role, "train_s": t["wall_s"]})
        return model.eval(), t["wall_s"]

    def build(self, spec: RunSpec, seed: int, role: str, store) -> str:
        """Train (or find cached) the original or oracle model of `seed`; returns a one-line summary."""
        _, seconds = self._model(spec, seed, role, store)
        return f"{role} ready ({seconds:.1f}s of training)"

    def context(self, spec: RunSpec, seed: int, store) -> SeedContext:
        """Data, task, original and oracle of `seed`, memoised in this process (the last two contexts)."""
        from ..eval import OutputCache
        from ..models import ClassifierTask as Cls
        from ..train import resolve_device

        ckey = _context_key(spec, seed)
        if ckey in self._contexts:
            self._contexts.move_to_end(ckey)
            return self._contexts[ckey]
        bundle, data = _data(spec, seed)
        original, _ = self._model(spec, seed, "original", store, data, bundle)
        oracle, retrain_s = self._model(spec, seed, "oracle", store, data, bundle)
        rec = spec.train_config()
        sc = SeedContext(data, Cls(bundle.num_classes, resolve_device(spec.device), amp=rec.amp), original, oracle,
                         rec, retrain_s, OutputCache(), bundle)
        self._contexts[ckey] = sc
        while len(self._contexts) > 2:
            self._contexts.popitem(last=False)
        return sc

    # -- runs -------------------------------------------------------------------------------------
    def run(self, spec: RunSpec, seed: int, method: str, store, rspec: dict) -> dict[str, Any]:
        """Apply `method` to the original model of `seed`, evaluate it against the oracle; a run record."""
        from ..eval import evaluate_model
        from ..methods import MethodContext, run_method

        sc = self.context(spec, seed, store)
        overrides = spec.overrides.get(method, {})
        ctx = MethodContext(seed=seed, recipe=sc.recipe)
        steps, curves = 0, {}
        if method == "original":
            model, t = sc.original, {"wall_s": 0.0, "cpu_s": 0.0}
        elif method == "retrain":
            model, t = sc.oracle, {"wall_s": sc.retrain_s, "cpu_s": float("nan")}
        else:
            if sc.task.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with count_steps() as box, collect_curves() as curves:
                if "steps" in sc.data.extra:  # seq: the requests one after another, metrics after each
                    model, seq_steps, secs = run_steps(self, spec, seed, store, sc, method, overrides, ctx)
                    t = {"wall_s": secs, "cpu_s": float("nan")}
                else:
                    model, t = timed(lambda: run_method(method, sc.original, sc.data, sc.task, overrides, ctx))
            steps = box[0]
        metrics = evaluate_model(model, sc.data, sc.task, reference=sc.oracle, cache=sc.cache)
        metrics["RTE"] = t["wall_s"]
        metrics["RTE/retrain"] = t["wall_s"] / sc.retrain_s if sc.retrain_s > 0 else float("nan")
        splits = tuple(sc.data.splits())
        outs = sc.cache.get(model, sc.data, sc.task, splits)
        details = details_of(outs, sc.data.num_classes)
        warns = list(ctx.warnings)
        if method not in ("original", "retrain"):
            warns += unchanged_warnings(method, model, sc.original, outs, sc.cache.get(sc.original, sc.data, sc.task,
                                                                                     splits))
        for w in warns:
            emit("warning", text=w)
        extra = {"curves": curves} if curves else {}
        if store is not None:
            from ..audit.outputs import save_outputs

            extra["outputs"] = save_outputs(store, outs, sc.data)
        if "forget_record" in sc.data.extra:  # audit scenarios: the rows forgotten (and poisoned), reproducibly
            extra["forget_set"] = sc.data.extra["forget_record"]
        if method not in ("original", "retrain") and "steps" in sc.data.extra:
            extra["steps"] = seq_steps
        if ctx.info:
            extra["method_info"] = ctx.info
        if warns:
            extra["warnings"] = warns
        return make_record(rspec, metrics, {**t, "opt_steps": steps}, sc.task.device, details=details,
                           precision=_precision(sc, method), **extra)

    def floor(self, spec: RunSpec, seed: int, other: int, store, rspec: dict) -> dict[str, Any]:
        """The noise floor: the oracle of seed `other` evaluated against the oracle of `seed` (same data)."""
        from ..eval import evaluate_model

        sc = self.context(spec, seed, store)
        other_oracle, _ = self._model(spec, other, "oracle", store)
        metrics = evaluate_model(other_oracle, sc.data, sc.task, reference=sc.oracle, cache=sc.cache)
        return make_record(rspec, metrics, {"wall_s": 0.0, "cpu_s": 0.0, "opt_steps": 0}, sc.task.device)


def unchanged_warnings(method: str, model: torch.nn.Module, original: torch.nn.Module,
                       out: dict[str, dict[str, np.ndarray]], orig: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Warnings for a method that did nothing: weights bitwise equal to the original's, or else the same predicted
    class as the original on every example of every split (such a row must never read as a result)."""
    if same_weights(model, original):
        return [f"{method} left the weights exactly as the original's: it changed nothing (raise its learning "
                "rate / epochs, or lower its selection threshold)."]
    same = all(np.array_equal(out[s]["logits"].argmax(1), orig[s]["logits"].argmax(1)) for s in out if s in orig)
    if same:
        return [f"{method} predicts the same class as the original on every example of every split: its accuracies "
                "equal the original's (it changed too little to show)."]
    return []


def details_of(out: dict[str, dict[str, np.ndarray]], num_classes: int, bins: int = 20) -> dict[str, Any]:
    """Per-class accuracy (%) per split and histograms of p(true class) on forget and test (for reports)."""
    from ..eval.outputs import softmax

    per_class: dict[str, list[float | None]] = {}
    for split, o in out.items():
        labels, correct = o["labels"].astype(int), o["correct"]
        per_class[split] = [float(100 * correct[labels == c].mean()) if (labels == c).any() else None
                            for c in range(num_classes)]
    edges = np.linspace(0.0, 1.0, bins + 1)
    hist: dict[str, Any] = {"score": "p(true class)", "bins": edges.tolist()}
    for split in ("forget", "test"):
        if split in out:
            p = softmax(out[split]["logits"])[np.arange(len(out[split]["labels"])), out[split]["labels"].astype(int)]
            hist[split] = np.histogram(p, bins=edges)[0].tolist()
    return {"per_class_acc": per_class, "hist": hist}


__all__ = ["ClassifierTask", "SeedContext", "details_of", "load_original", "method_config", "method_names",
           "record_spec", "same_weights", "unchanged_warnings", "validate"]
