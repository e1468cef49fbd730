"""Budgeted hyper-parameter tuning: every method gets the same number of trials, chosen on a validation forget set.

For each method an Optuna study samples the search space its config declares (`config.param(search=...)`) for
exactly `budget` trials. A trial runs the experiment on the validation scenario `val:<forget>` (same kind and size
as the reported forget set, disjoint from it; see data/scenarios.py) and scores the mean over seeds of the
objective (default Avg.Gap, the mean |metric - retrained oracle's metric|) against the validation oracle. A trial
whose RA or TA falls more than `utility_floor` points below the validation oracle's is infeasible (an Optuna
constraint, so TPE learns to avoid the region, and never selected); a trial whose method fails is infeasible with
its error kept. The best feasible setting is then run once on the reported forget set. Selection never evaluates
anything on the reported forget set: in the validation runs it is part of the retain set, as any other example.

Why Optuna rather than Ray Tune: Optuna's ask/tell interface drives trials from this process without a cluster
or a scheduler, its samplers are deterministic for a seed (the same budget gives the same trials), and it starts no
extra process; each trial is an ordinary `api.run`, so trials are cached in the store by content and whatever
backend `api.run` uses (serial, local pool, Ray) still parallelises the work inside a trial.
"""
from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

SAMPLERS = ("tpe", "random")
NEAR_BEST = 1.0  # points of the objective: "within 1 point of the best" in the sensitivity summary
UTILITY = ("RA", "TA")


def tune(spec: dict, methods: list[str] | str, *, budget: int, store=None, objective: str = "Avg.Gap",
         utility_floor: float = 5.0, seed: int = 0, sampler: str = "tpe",
         progress: Callable[[str], None] | None = None, run_kwargs: dict | None = None,
         spaces: dict[str, dict[str, tuple]] | None = None, final: bool = True) -> dict[str, Any]:
    """Tune each method with `budget` trials on `val:<forget>`, then report its best setting on the forget set
    (final=False: selection only; a sweep runs the chosen settings itself, in its own job graph)."""
    from .. import api
    from ..artifacts import dumps, jsonable

    optuna = _optuna()
    run_spec = _reported_spec(spec)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    _check_args(names, budget, utility_floor, sampler)
    plans = {m: _space(m, (spaces or {}).get(m)) for m in dict.fromkeys(names)}
    say = progress or (lambda msg: None)
    summary: dict[str, Any] = {
        "spec": run_spec, "validation_forget": f"val:{run_spec['forget']}", "budget": budget,
        "objective": objective, "utility_floor": utility_floor, "seed": seed, "sampler": sampler, "methods": {}}
    records: list[dict[str, Any]] = []
    for method, space in plans.items():
        trials = _search(optuna, api, run_spec, method, space, budget=budget, store=store, objective=objective,
                         floor=utility_floor, seed=seed, sampler=sampler, say=say, run_kwargs=run_kwargs or {})
        feasible = [t for t in trials if t["feasible"]]
        best = min(feasible, key=lambda t: (t["value"], t["number"])) if feasible else None
        entry = {"space": {k: list(v) for k, v in space.items()}, "trials": trials,
                 "best": None if best is None else {"trial": best["number"], "params": best["params"],
                                                    "value": best["value"]},
                 "sensitivity": sensitivity(trials, budget), "reported": None, "errors": []}
        if best is not None and not final:
            pass
        elif best is None:
            entry["note"] = (f"no feasible trial among {budget}: every setting failed or fell more than "
                             f"{utility_floor:g} points below the oracle's RA/TA; raise --budget or --floor")
        else:
            say(f"tune {method}: running the best setting {best['params']} on forget {run_spec['forget']}")
            result = api.run(_trial_spec(run_spec, method, best["params"], validation=False), store=store,
                             progress=progress, **(run_kwargs or {}))
            records += result["records"]
            entry["errors"] = [e for e in result["errors"] if e["method"] in (method, "retrain", "original")]
            row = next((r for r in result["table"] if r["method"] == method), None)
            entry["reported"] = None if row is None else {k: v for k, v in row.items() if k != "method"}
            entry["record_ids"] = [r["id"] for r in result["records"] if r.get("id") and
                                   r["spec"]["method"] == method]
        summary["methods"][method] = entry
    summary = jsonable(summary, "tune summary")
    digest = store.put_bytes(dumps(summary).encode()) if store is not None else None
    return {**summary, "summary_digest": digest, "records": records}


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("tuning needs Optuna: pip install 'unlearnlab[tune]' (or pip install optuna).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _reported_spec(spec: Any) -> dict[str, Any]:
    """The user's spec as a plain dict, checked: classifier task, a plain (not val:) forget scenario."""
    from .. import api
    from ..data.scenarios import parse_forget

    rs = api.as_spec(spec)
    if rs.task != "classifier":
        raise ConfigError(f"tune does not support task {rs.task!r} yet: it has no disjoint validation forget set "
                          "(val:<forget>). Tune a classifier run, or compare LM settings with `unlearnlab run --set`.")
    if parse_forget(rs.forget).val:
        raise ConfigError(f"Give tune the forget set to report ({rs.forget[4:]!r}), not {rs.forget!r}: it derives "
                          "the disjoint validation set val:<forget> itself.")
    d = rs.to_dict()
    d.pop("methods", None)
    return json.loads(json.dumps(d, default=str))


def _check_args(names: list[str], budget: int, floor: float, sampler: str) -> None:
    if not names or not all(names):
        raise ConfigError("tune needs at least one method, e.g. --method ft,ga.")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget must be a positive number of trials per method. Got {budget!r} instead.")
    if not isinstance(floor, (int, float)) or not floor >= 0:
        raise ConfigError(f"utility floor must be >= 0 points of RA/TA below the oracle. Got {floor!r} instead.")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}. Got {sampler!r} instead.")


def _space(method: str, given: dict[str, tuple] | None) -> dict[str, tuple]:
    """The search space of `method`: `given` (checked against its config) or the one its config declares."""
    import dataclasses

    from ..config import check_search, search_space
    from ..methods import METHODS

    m = METHODS.get(method)
    if method == "retrain" or "classifier" not in m.kinds:
        raise ConfigError(f"{method!r} cannot be tuned here: " + ("it is the retrained oracle every method is "
                          "compared with." if method == "retrain" else f"it applies to {m.kinds} models only."))
    if given is None:
        space = search_space(m.config)
    else:
        fields = {f.name: f for f in dataclasses.fields(m.config)}
        space = {}
        for name, s in given.items():
            if name not in fields:
                raise ConfigError(f"search space of {method}: {name!r} is not a config field; fields are "
                                  f"{', '.join(fields)}.")
            meta = fields[name].metadata
            space[name] = check_search(s, choices=meta.get("choices"), low=meta.get("low"), high=meta.get("high"))
    if not space:
        raise ConfigError(f"{method} declares no search space; add search=... to its config fields or pass one.")
    return space


def _trial_spec(run_spec: dict, method: str, params: dict, *, validation: bool) -> dict[str, Any]:
    """The spec of one trial (validation) or of the final run: sampled values merged over the user's overrides."""
    user = run_spec.get("overrides") or {}
    overrides = {method: {**user.get(method, {}), **params}}
    if "retrain" in user:
        overrides["retrain"] = dict(user["retrain"])
    name = f"{run_spec.get('name') or 'tune'}:{method}"
    return {**run_spec, "methods": [method], "overrides": overrides,
            "forget": f"val:{run_spec['forget']}" if validation else run_spec["forget"],
            "name": f"{name}:val" if validation else name}


def _search(optuna, api, run_spec: dict, method: str, space: dict[str, tuple], *, budget: int, store,
            objective: str, floor: float, seed: int, sampler: str, say: Callable[[str], None],
            run_kwargs: dict) -> list[dict[str, Any]]:
    """Exactly `budget` ask/tell trials of one method on the validation scenario."""
    from optuna.trial import TrialState

    from ..seeding import derive_seed

    sampler_seed = derive_seed(seed, "tune", method) % 2**32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constraints_func is flagged experimental in some Optuna versions
        smp = (optuna.samplers.TPESampler(seed=sampler_seed, constraints_func=_constraint) if sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=sampler_seed))
    study = optuna.create_study(direction="minimize", sampler=smp)
    trials = []
    for i in range(budget):
        trial = study.ask()
        params = {name: suggest(trial, name, s) for name, s in space.items()}
        say(f"tune {method}: trial {i + 1}/{budget} {params}")
        result = api.run(_trial_spec(run_spec, method, params, validation=True), store=store, progress=say,
                         **run_kwargs)
        t = {"number": trial.number, "params": params, **score(result, method, objective, floor)}
        if t["error"] is None:
            trial.set_user_attr("violation", t["violation"])
            study.tell(trial, t["value"])
        else:
            study.tell(trial, state=TrialState.FAIL)
        trials.append(t)
    return trials


def _constraint(trial) -> tuple[float]:
    """Optuna constraint: <= 0 when the trial keeps RA and TA within the floor of the oracle's."""
    return (float(trial.user_attrs.get("violation", 1.0)),)


def suggest(trial, name: str, s: tuple) -> Any:
    """Sample field `name` from search tuple `s` with an Optuna trial."""
    kind, *vals = s
    if kind == "choice":
        return trial.suggest_categorical(name, list(vals))
    if kind == "int":
        return trial.suggest_int(name, int(vals[0]), int(vals[1]))
    return trial.suggest_float(name, float(vals[0]), float(vals[1]), log=kind == "log")


def score(result: dict[str, Any], method: str, objective: str, floor: float) -> dict[str, Any]:
    """Objective (mean over seeds, lower is better), utility violation and feasibility of one trial's result.

    `objective` "Avg.Gap" is taken as stored; any other metric name is scored as |metric - oracle's metric|.
    """
    errors = [e for e in result["errors"] if e["method"] in (method, "retrain", "original")]
    recs = [r for r in result["records"] if r["spec"]["method"] == method]
    oracle = {r["spec"]["seed"]: r["metrics"] for r in result["records"] if r["spec"]["method"] == "retrain"}
    out: dict[str, Any] = {"value": math.nan, "feasible": False, "violation": math.nan, "error": None}
    if errors or not recs or any(r["spec"]["seed"] not in oracle for r in recs):
        out["error"] = "; ".join(f"{e['method']} (seed {e['seed']}): {e['error']}" for e in errors) or \
            f"no {method} or oracle record came back"
        return out
    if objective not in recs[0]["metrics"]:
        raise ConfigError(f"objective {objective!r} is not a metric of these runs; choose one of "
                          f"{', '.join(recs[0]['metrics'])}.")

    def value(r: dict) -> float:
        m = r["metrics"][objective]
        return m if objective == "Avg.Gap" else abs(m - oracle[r["spec"]["seed"]][objective])

    out["value"] = statistics.fmean(value(r) for r in recs)
    for k in UTILITY:
        out[k] = statistics.fmean(r["metrics"][k] for r in recs)
        out[f"oracle_{k}"] = statistics.fmean(oracle[r["spec"]["seed"]][k] for r in recs)
    out["violation"] = max(out[f"oracle_{k}"] - out[k] for k in UTILITY) - floor
    if not math.isfinite(out["value"]) or not math.isfinite(out["violation"]):
        out["error"] = f"objective or utility is not finite ({out['value']}, {out['violation']})"
        return out
    out["feasible"] = out["violation"] <= 0
    return out


def sensitivity(trials: list[dict[str, Any]], budget: int) -> dict[str, float]:
    """How much the method's objective moved over its trials: spread over feasible trials and near-best share."""
    vals = sorted(t["value"] for t in trials if t["feasible"])
    out = {"n_trials": budget, "n_feasible": len(vals), "frac_feasible": len(vals) / budget}
    if not vals:
        nan = math.nan
        return {**out, "best": nan, "min": nan, "median": nan, "max": nan, "iqr": nan, "frac_near_best": 0.0}
    q = statistics.quantiles(vals, n=4, method="inclusive") if len(vals) > 1 else [vals[0]] * 3
    return {**out, "best": vals[0], "min": vals[0], "median": statistics.median(vals), "max": vals[-1],
            "iqr": q[2] - q[0], "frac_near_best": sum(v <= vals[0] + NEAR_BEST for v in vals) / budget}
