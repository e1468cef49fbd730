"""Sweeps: one YAML file expands to many RunSpecs (datasets x forget sets x models x method settings x seeds) that
run as ONE job graph, so every original and oracle is built once however many methods and settings use it.

Sweep keys: every RunSpec key (dataset, forget, model, methods, seeds, split_seed, recipe, overrides, device, task,
options, attacks, original), where dataset, forget, model and split_seed may be lists (axes), plus
    name     the sweep's name (stored as each run's spec name; `unlearnlab sweep status NAME`, `report NAME`)
    grid     {"METHOD.FIELD": [v1, v2, ...]}: every combination of a method's grid values is a separate run
    tune     {"budget": N, "utility_floor": 2.0, "seeds": [0], "warm_start": false, "stratify": false}: tune
             every method with the same trial budget first, on a validation forget set (on `seeds`, default the
             sweep's), then run the chosen settings on all the sweep's seeds (engine/tune.py; warm_start: each
             method's first trial is its default setting; stratify: categorical values spread over the start-up)
    backend, workers, address   defaults for where it runs (the command line overrides them)
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ..errors import ConfigError

AXES = ("dataset", "forget", "model", "split_seed")
TUNE_KEYS = frozenset({"utility_floor", "objective", "seed", "sampler", "warm_start", "stratify",
                       "spaces"})  # of tune()
SWEEP_ONLY = ("name", "grid", "tune", "backend", "workers", "address")


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read a sweep YAML file into a dict (clear errors for a missing or malformed file); name defaults to the stem."""
    from ..spec import read_mapping

    d = read_mapping(path, "Sweep", "name, dataset, forget, methods, seeds, grid, ...")
    d.setdefault("name", Path(path).stem)
    return d


def _grid(grid: Any) -> dict[str, list[tuple[str, list]]]:
    """{'ga.lr': [..]} -> {'ga': [('lr', [..])]}, validated."""
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise ConfigError("grid must map METHOD.FIELD to a list of values, e.g. grid: {ga.lr: [0.001, 0.01]}.")
    out: dict[str, list[tuple[str, list]]] = {}
    for key, values in grid.items():
        method, dot, field = str(key).partition(".")
        if not dot or not field:
            raise ConfigError(f"grid key {key!r} must look like METHOD.FIELD, e.g. ga.lr.")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid[{key!r}] must be a non-empty list of values. Got {values!r} instead.")
        out.setdefault(method, []).append((field, values))
    return out


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def expand_sweep(d: dict[str, Any]) -> list:
    """The RunSpecs of a sweep dict: the product of its axes, and per method, of its grid values."""
    from ..spec import from_dict

    base = {k: v for k, v in d.items() if k not in SWEEP_ONLY and k not in AXES}
    base["name"] = str(d.get("name") or "sweep")
    methods = base.pop("methods", ["all"])
    methods = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else _as_list(methods)
    grid = _grid(d.get("grid"))
    unknown = set(grid) - set(methods) if "all" not in methods else set()
    if unknown:
        raise ConfigError(f"grid names method(s) {sorted(unknown)} that are not in methods {methods}.")
    axes = {k: _as_list(d[k]) for k in AXES if k in d}
    overrides = dict(base.pop("overrides", None) or {})
    stray = set(overrides) - set(methods) - {"retrain"} if "all" not in methods else set()
    if stray:
        raise ConfigError(f"overrides name method(s) {sorted(stray)} that are not in methods {methods}.")

    def only(names: list[str]) -> dict:
        keep = set(names) | {"retrain"}
        return {m: v for m, v in overrides.items() if m in keep or "all" in names}

    specs = []
    for values in itertools.product(*axes.values()):
        point = {**base, **dict(zip(axes, values))}
        plain = [m for m in methods if m not in grid]
        if plain:
            specs.append(from_dict({**point, "methods": plain, "overrides": only(plain)}))
        for method, fields in grid.items():
            names = [f for f, _ in fields]
            for combo in itertools.product(*(vals for _, vals in fields)):
                over = only([method])
                over[method] = {**over.get(method, {}), **dict(zip(names, combo))}
                specs.append(from_dict({**point, "methods": [method], "overrides": over}))
    if not specs:
        raise ConfigError("The sweep expands to no runs; give methods (and non-empty axes).")
    return specs


def sweep(d: dict[str, Any], *, store=None, backend: str | None = None, workers: int | None = None,
          address: str | None = None, resume: bool = True, sink=None, cpus_per_job: float = 1.0,
          gpus_per_job: float = 0.0) -> dict[str, Any]:
    """Run a sweep dict on the engine (tuning first when it has a `tune` block)."""
    from .runner import execute

    specs = expand_sweep(d)
    backend = backend or d.get("backend") or "local"
    workers = workers or d.get("workers")
    address = address or d.get("address")
    tuned: dict[str, Any] = {}
    res_kw = {"cpus_per_job": cpus_per_job, "gpus_per_job": gpus_per_job}
    if d.get("tune"):
        specs, tuned = _tune_first(d, specs, store=store, backend=backend, workers=workers, address=address,
                                   **res_kw)
    res = execute(specs, store=store, backend=backend, workers=workers, address=address, resume=resume, sink=sink,
                  **res_kw)
    records = [r for recs in res["records"] for r in recs]
    uniq = list({r.get("id") or id(r): r for r in records}.values())
    return {"name": d.get("name"), "specs": len(specs), "records": uniq, "errors": res["errors"], "jobs": res["jobs"],
            "tuned": tuned}


def _tune_first(d: dict, specs: list, **run_kw: Any) -> tuple[list, dict]:
    """Tune every method of every scenario with the sweep's budget; the specs then run the chosen settings."""
    import dataclasses

    from .tune import tune

    opts = dict(d["tune"]) if isinstance(d["tune"], dict) else {"budget": int(d["tune"])}
    budget = int(opts.pop("budget", 0))
    if budget < 1:
        raise ConfigError("tune.budget must be a positive number of trials per method, e.g. tune: {budget: 8}.")
    tune_seeds = opts.pop("seeds", None)
    if tune_seeds is not None:
        tune_seeds = list(range(tune_seeds)) if isinstance(tune_seeds, int) else _as_list(tune_seeds)
        if not tune_seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in tune_seeds):
            raise ConfigError(f"tune.seeds must be a number of seeds or a list of integer seeds, e.g. seeds: [0]. "
                              f"Got {tune_seeds!r} instead.")
    unknown = sorted(set(opts) - TUNE_KEYS)
    if unknown:
        raise ConfigError(f"tune block: unknown key(s) {', '.join(unknown)}; allowed: budget, seeds, "
                          f"{', '.join(sorted(TUNE_KEYS))}.")
    for flag in ("warm_start", "stratify"):
        if not isinstance(opts.get(flag, False), bool):
            raise ConfigError(f"tune.{flag} must be true or false. Got {opts[flag]!r} instead.")
    store = run_kw.pop("store")
    out, chosen = [], {}
    for spec in specs:
        names = [m for m in spec.methods if m != "all"] or None
        if names is None:
            raise ConfigError("tune needs explicit methods (not 'all') so every method gets the same budget.")
        tspec = spec.to_dict() if tune_seeds is None else {**spec.to_dict(), "seeds": tune_seeds}
        res = tune(tspec, names, budget=budget, store=store, run_kwargs=run_kw, final=False, **opts)
        best = {m: (r.get("best") or {}).get("params", {}) for m, r in res.get("methods", {}).items()}
        missing = [m for m, r in res.get("methods", {}).items() if not r.get("best")]
        if missing:
            raise ConfigError(f"tuning found no feasible setting for {missing} on {spec.dataset} {spec.forget}; "
                              "raise tune.budget or tune.utility_floor.")
        chosen[f"{spec.dataset} {spec.forget}"] = res
        over = {**spec.overrides, **{m: {**spec.overrides.get(m, {}), **cfg} for m, cfg in best.items()}}
        out.append(dataclasses.replace(spec, overrides=over))
    return out, chosen


__all__ = ["expand_sweep", "load_sweep", "sweep"]
