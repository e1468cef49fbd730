"""Get a stored classifier run's models back: the original and the retrained oracle from the store's model cache, the
unlearned model by re-applying the run's method with its stored config and seed (methods are deterministic given the
seed; the dashboard and `unlearnlab audit` check this against the stored outputs). Nothing here reads a path or a
pickle from a request."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigError


class NotRebuildable(ConfigError):
    """A run whose models cannot be rebuilt (a language-model run, the noise floor, a user checkpoint, other data)."""


@dataclasses.dataclass
class RunModels:
    """The unlearned model of one run with the original, the oracle and the data of its seed."""

    model: Any
    original: Any
    oracle: Any
    data: Any
    task: Any
    classes: list[str]


def run_spec_of(record: dict, device: str = "cpu"):
    """The RunSpec that reproduces one stored classifier run (its method alone, its seed alone)."""
    from ..spec import from_dict

    s = record.get("spec") or {}
    method = s.get("method", "")
    if s.get("task", "classifier") != "classifier":
        raise NotRebuildable(f"Run {record.get('id')} is a {s.get('task')} run; model views and audits cover "
                             "classifier runs (language-model runs have the LM view and the spec's `attacks`).")
    if method == "oracle-floor":
        raise NotRebuildable(f"Run {record.get('id')} is the two-oracle noise floor, not one model; pick the retrain "
                            "run of a seed instead.")
    if s.get("original"):
        raise NotRebuildable(f"Run {record.get('id')} started from a user checkpoint (--original), which the store "
                             "does not hold; its models cannot be rebuilt (audit a run whose original unlearnlab "
                             "trained).")
    overrides = {method: dict(s.get("config") or {})} if method not in ("original", "retrain") else {}
    return from_dict({"dataset": s["dataset"], "forget": s["forget"], "model": s.get("model", ""),
                      "methods": [] if method in ("original", "retrain") else [method], "seeds": [int(s["seed"])],
                      "split_seed": int(s.get("split_seed", 0)), "recipe": dict(s.get("recipe") or {}),
                      "overrides": overrides, "device": device, "name": s.get("name", "")})


def rebuild(record: dict, store) -> RunModels:
    """The models of a stored classifier run (original/oracle from the store's cache, trained if missing)."""
    from ..methods import MethodContext, run_method
    from ..tasks.classifier import ClassifierTask

    spec = run_spec_of(record)
    s = record["spec"]
    seed, method = int(s["seed"]), s["method"]
    sc = ClassifierTask().context(spec, seed, store)
    if sc.data.fingerprint() != s.get("data", sc.data.fingerprint()):
        raise NotRebuildable(f"Run {record.get('id')} was made on other data (hash {s.get('data')}) than the "
                            f"dataset {s['dataset']!r} loads now ({sc.data.fingerprint()}); it cannot be rebuilt.")
    if method == "original":
        model = sc.original
    elif method == "retrain":
        model = sc.oracle
    else:
        ctx = MethodContext(seed=seed, recipe=sc.recipe)
        model = run_method(method, sc.original, sc.data, sc.task, dict(s.get("config") or {}), ctx).eval()
    classes = getattr(sc.data.train, "classes", None) or [str(c) for c in range(sc.data.num_classes)]
    return RunModels(model, sc.original, sc.oracle, sc.data, sc.task, [str(c) for c in classes])


__all__ = ["NotRebuildable", "RunModels", "rebuild", "run_spec_of"]
