"""Budgeted hyper-parameter tuning: every method gets the same number of trials, chosen on a validation forget set.

For each method an Optuna study samples the search space its config declares (`config.param(search=...)`) for
exactly `budget` trials. A trial runs the experiment on the validation scenario `val:<forget>` (same kind and size
as the reported forget set, disjoint from it; classifiers: data/scenarios.py, language models: data/lm_sources.py)
and scores the mean over seeds of the objective against the validation oracle. A trial whose utility falls more than
`utility_floor` below the validation oracle's is infeasible (an Optuna constraint, so TPE learns to avoid the
region, and never selected); a trial whose method fails is infeasible with its error kept. The best feasible setting
is then run once on the reported forget set. Selection never evaluates anything on the reported forget set: in the
validation runs it is part of the retain set, as any other example.

Classifiers (task "classifier"): objective Avg.Gap (mean |metric - oracle's| over UA, RA, TA, MIA-Eff, as
stored); floor: test accuracy (TA) at most 2 points below the validation oracle's. TA, not RA: on random
forgetting the oracle's RA is ~100% and a method that damages the retain set shows it on TA too, while TA is what
a deployed model is judged by; 2 points is about twice the seed-to-seed spread of TA between two oracles here.
Language models (task "qa"): objective Forget.Gap = mean |metric - oracle's| over the forget-side metrics the records
hold, of FORGET_GAP (forget_ROUGE, forget_Prob, forget_TruthRatio: TOFU's forget metrics; VerbMem: MUSE's; MIA-MinK:
the forget-vs-holdout AUC behind MUSE's PrivLeak), all on a 0-1 scale, so no term dominates. It asks "does the
model now answer, assign probability and leak like a model never trained on D_f", in both directions: forgetting
too much (ROUGE far below the oracle's) counts as much as too little. Floor: a fraction (default 0.1) of the
oracle's Model Utility (TOFU's harmonic mean over retain / real authors / world facts); a trial is infeasible when
its Model Utility is more than 10% (relative) below the validation oracle's. A fraction rather than points because
Model Utility's scale depends on the model (TOFU Llama-2 ~0.6, a tiny model ~0). When the oracle's Model Utility
is 0 or missing (a tiny model answers no real-author question; corpora have none) the floor applies to
retain_Prob instead (continuous; ROUGE on a few rows is too coarse), and to nothing on corpora, which have no
retain metric. `objective="Forget Quality"` (TOFU's KS-test p-value against the oracle) is maximised as it stands;
any other metric name is scored as |metric - oracle's metric|, lower is better.
Class-conditional diffusion models (task "diffusion"): a run forgets a whole class c, so the validation scenario
`val:class:c` forgets class (c + 1) mod K, as for classifiers (data/scenarios.py validation_indices): every trial
trains and evaluates against an oracle retrained without that other class, and class c is an ordinary retained
class whose samples count in the trials' RA. Held-out noise seeds would not do: the judge scores the forgotten
class's samples whatever the noise, so selecting on other seeds of class c would still select on class c itself.
Objective Avg.Gap (the record's mean |gap to the oracle| over UA and RA); floor: RA at most 10 points below the
validation oracle's. Not the classifier's 2: the methods start from the original, whose RA is itself below the
oracle's (58.9 vs 63.4 in docs/diffusion.md's run), and RA is a judge accuracy on 9 x `samples` generated images
(binomial standard error ~1.6 points at 100 per class), so a tighter floor would reject the starting point.
On the two-factor set (digits-canvas-gen) `val:style:S` forgets style (S + 1) mod K and `val:object:O` object
(O + 1) mod N; the objective is the record's Avg.Gap over UA, IRA and CRA, and the 10-point floor applies to both
IRA and CRA (UnlearnCanvas's in-domain and cross-domain retention): a trial that keeps the other styles but loses
the digits is infeasible.

`warm_start=True` makes each method's first trial its default setting (config defaults under the user's
overrides) and leaves budget - 1 to the sampler: the same budget, and the choice is never worse on validation than
the default, which a few of TPE's random start-up draws over decades of learning rate do not guarantee
(docs/benchmark_diffusion.md). Off by default so stored studies stay reproducible trial for trial.

`stratify=True` spreads the categorical fields over the sampler's random start-up: each of the first trials
(up to TPE's 10 start-up trials or the budget) has its categorical values fixed from a seeded permutation of each
field's choices, cycled, so no value repeats before every value was tried; continuous fields are sampled as ever.
With a small budget plain draws repeat values and skip others: 6 draws over SSD's 6 values of α missed 100 and 1
(and, the sampler being seeded per method, missed them in every scenario). Same budget, same continuous draws for
a method with no categorical field. Off by default so stored studies stay reproducible trial for trial.

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
from .search_space import default_params, has_batchnorm, method_space, suggest

SAMPLERS = ("tpe", "random")
NEAR_BEST = {"classifier": 1.0, "qa": 0.01, "diffusion": 1.0}  # "within 1 point of the best" (LM: 0-1 scale)
UTILITY = {"classifier": ("TA",), "diffusion": ("RA",)}  # floored in points (qa: _lm_utility, a fraction)
CANVAS_UTILITY = ("IRA", "CRA")  # two-factor diffusion sets: in-domain and cross-domain retained accuracy
DEFAULTS = {"classifier": ("Avg.Gap", 2.0), "qa": ("Forget.Gap", 0.1), "diffusion": ("Avg.Gap", 10.0)}
NO_ORACLE_OBJECTIVE = "UA"  # Stable Diffusion (no oracle): maximise UA, floor RA relative to the original's
FORGET_GAP = ("forget_ROUGE", "forget_Prob", "forget_TruthRatio", "VerbMem", "MIA-MinK")
LM_UTILITY = ("Model Utility",)
LM_UTILITY_FALLBACK = ("retain_Prob",)  # continuous, so not as coarse as ROUGE on a few rows
MAXIMIZED = ("Forget Quality",)  # already a comparison with the oracle: higher is better as it stands


def tune(spec: dict, methods: list[str] | str, *, budget: int, store=None, objective: str | None = None,
         utility_floor: float | None = None, seed: int = 0, sampler: str = "tpe",
         progress: Callable[[str], None] | None = None, run_kwargs: dict | None = None,
         spaces: dict[str, dict[str, tuple]] | None = None, final: bool = True,
         warm_start: bool = False, stratify: bool = False) -> dict[str, Any]:
    """Tune each method with `budget` trials on `val:<forget>`, then report its best setting on the forget set
    (final=False: selection only; a sweep runs the chosen settings itself, in its own job graph). `objective` and
    `utility_floor` default per task; `warm_start`: the first trial is the method's default setting (see the module
    docstring)."""
    from .. import api
    from ..artifacts import dumps, jsonable

    optuna = _optuna()
    run_spec = _reported_spec(spec)
    task = run_spec.get("task", "classifier")
    reference = "original" if _no_oracle(run_spec) else "retrain"
    objective = objective or (NO_ORACLE_OBJECTIVE if reference == "original" else DEFAULTS[task][0])
    utility_floor = DEFAULTS[task][1] if utility_floor is None else utility_floor
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    _check_args(names, budget, utility_floor, sampler, task, objective)
    if reference == "original" and objective != NO_ORACLE_OBJECTIVE:
        raise ConfigError(f"Stable Diffusion runs have no retrained oracle to take a gap to: tune maximises "
                          f"{NO_ORACLE_OBJECTIVE} under a floor on RA relative to the original's; drop --objective "
                          f"{objective}.")
    batchnorm = task == "classifier" and has_batchnorm(run_spec)
    plans = {m: method_space(m, (spaces or {}).get(m), task, batchnorm) for m in dict.fromkeys(names)}
    say = progress or (lambda msg: None)
    direction = "maximize" if objective in MAXIMIZED or reference == "original" else "minimize"
    summary: dict[str, Any] = {
        "spec": run_spec, "task": task, "validation_forget": f"val:{run_spec['forget']}", "budget": budget,
        "objective": objective, "direction": direction, "reference": reference, "utility_floor": utility_floor,
        "floor_kind": "fraction" if task == "qa" else "points", "near_best": NEAR_BEST[task], "seed": seed,
        "sampler": sampler, "warm_start": warm_start, **({"stratify": True} if stratify else {}), "methods": {}}
    records: list[dict[str, Any]] = []
    for method, space in plans.items():
        trials = _search(optuna, api, run_spec, method, space, budget=budget, store=store, objective=objective,
                         floor=utility_floor, seed=seed, sampler=sampler, say=say, run_kwargs=run_kwargs or {},
                         reference=reference, stratify=stratify,
                         start=default_params(method, space, run_spec.get("overrides")) if warm_start else None)
        entry = _entry(trials, space, budget, direction, NEAR_BEST[task])
        best = entry["best"]
        if best is None:
            entry["note"] = (f"no feasible trial among {budget}: every setting failed or fell more than "
                             f"{_floor_text(task, utility_floor)}; raise --budget or --floor")
        elif final:
            say(f"tune {method}: running the best setting {best['params']} on forget {run_spec['forget']}")
            result = api.run(_trial_spec(run_spec, method, best["params"], validation=False), store=store,
                             progress=progress, **(run_kwargs or {}))
            records += result["records"]
            entry["errors"] = [e for e in result["errors"] if e["method"] in (method, "retrain", "original")]
            row = next((r for r in result["table"] if r["method"] == method), None)
            entry["reported"] = None if row is None else {k: v for k, v in row.items() if k != "method"}
            entry["reported_score"] = score(result, method, objective, utility_floor, task, reference)
            entry["record_ids"] = [r["id"] for r in result["records"] if r.get("id") and
                                   r["spec"]["method"] == method]
        summary["methods"][method] = entry
    summary = jsonable(summary, "tune summary")
    digest = store.put_bytes(dumps(summary).encode()) if store is not None else None
    return {**summary, "summary_digest": digest, "records": records}


def best_trial(trials: list[dict], direction: str = "minimize") -> dict | None:
    """The selected trial: the best feasible one (ties: the earliest); None when none is feasible."""
    sign = -1 if direction == "maximize" else 1
    feasible = [t for t in trials if t["feasible"]]
    return min(feasible, key=lambda t: (sign * t["value"], t["number"])) if feasible else None


def _entry(trials: list[dict], space: dict, budget: int, direction: str, near: float) -> dict[str, Any]:
    """One method's summary: its trials, the best feasible one (ties: the earliest) and the sensitivity."""
    best = best_trial(trials, direction)
    return {"space": {k: list(v) for k, v in space.items()}, "trials": trials,
            "best": None if best is None else {"trial": best["number"], "params": best["params"],
                                               "value": best["value"]},
            "sensitivity": sensitivity(trials, budget, direction=direction, near=near), "reported": None,
            "errors": []}


def _floor_text(task: str, floor: float) -> str:
    if task in UTILITY:
        return f"{floor:g} points below the oracle's {UTILITY[task][0]}"
    return f"{floor:.0%} below the oracle's Model Utility (or retain_Prob when it has none)"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("tuning needs Optuna: pip install 'unlearnlab[tune]' (or pip install optuna).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _reported_spec(spec: Any) -> dict[str, Any]:
    """The user's spec as a plain dict, checked: a known task, a plain (not val:) forget scenario."""
    from .. import api
    from ..data.lm_sources import split_validation
    from ..data.scenarios import parse_forget

    rs = api.as_spec(spec)
    if rs.task not in DEFAULTS:
        raise ConfigError(f"tune does not support task {rs.task!r}: it has no disjoint validation forget set "
                          f"(val:<forget>). Tune a task of {', '.join(DEFAULTS)}.")
    if rs.task == "qa":
        validation = bool(split_validation(rs.forget)[0])
    elif rs.task == "diffusion":  # class:K, style:S, object:O (tasks/diffusion.forget_classes checks the rest)
        validation = rs.forget.strip().startswith("val:")
    else:
        validation = parse_forget(rs.forget).val
    if validation:
        raise ConfigError(f"Give tune the forget set to report ({rs.forget[4:]!r}), not {rs.forget!r}: it derives "
                          "the disjoint validation set val:<forget> itself.")
    d = rs.to_dict()
    d.pop("methods", None)
    return json.loads(json.dumps(d, default=str))


def _no_oracle(run_spec: dict) -> bool:
    """True for a spec whose task has no retrained oracle (a Stable Diffusion run)."""
    if run_spec.get("task") != "diffusion":
        return False
    from .. import api
    from ..tasks.diffusion_sd import is_sd

    return is_sd(api.as_spec(run_spec))


def _check_args(names: list[str], budget: int, floor: float, sampler: str, task: str, objective: str) -> None:
    if not names or not all(names):
        raise ConfigError("tune needs at least one method, e.g. --method ft,ga.")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget must be a positive number of trials per method. Got {budget!r} instead.")
    if task in UTILITY and (not isinstance(floor, (int, float)) or not floor >= 0):
        raise ConfigError(f"utility floor must be >= 0 points of {UTILITY[task][0]} below the oracle. Got {floor!r} "
                          "instead.")
    if task == "qa" and (not isinstance(floor, (int, float)) or not 0 <= floor <= 1):
        raise ConfigError(f"for language models the utility floor is a fraction of the oracle's Model Utility in "
                          f"[0, 1], e.g. 0.1 = at most 10% below it (1 = no floor). Got {floor!r} instead.")
    if task == "qa" and objective == "Avg.Gap":
        raise ConfigError("Avg.Gap is a classifier metric; for language models use Forget.Gap (the default), "
                          "Forget Quality, or any LM metric name such as forget_ROUGE.")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}. Got {sampler!r} instead.")


def _trial_spec(run_spec: dict, method: str, params: dict, *, validation: bool) -> dict[str, Any]:
    """The spec of one trial (validation) or of the final run: sampled values merged over the user's overrides."""
    user = run_spec.get("overrides") or {}
    overrides = {method: {**user.get(method, {}), **params}}
    if "retrain" in user:
        overrides["retrain"] = dict(user["retrain"])
    base = run_spec.get("name") or "tune"
    # every method's trials share one name: a run's records are keyed by content, name included, so the validation
    # original's and oracle's records (the same for every method) are evaluated once, not once per method's study
    return {**run_spec, "methods": [method], "overrides": overrides,
            "forget": f"val:{run_spec['forget']}" if validation else run_spec["forget"],
            "name": f"{base}:val" if validation else f"{base}:{method}"}


def _search(optuna, api, run_spec: dict, method: str, space: dict[str, tuple], *, budget: int, store,
            objective: str, floor: float, seed: int, sampler: str, say: Callable[[str], None],
            run_kwargs: dict, reference: str = "retrain", start: dict | None = None,
            stratify: bool = False) -> list[dict[str, Any]]:
    """Exactly `budget` ask/tell trials of one method on the validation scenario (the first one at `start` when
    given: enqueued, so the sampler learns from it as from any trial; with `stratify` the start-up trials' categorical
    values enqueued as the module docstring says)."""
    from optuna.trial import TrialState

    from ..seeding import derive_seed

    sampler_seed = derive_seed(seed, "tune", method) % 2**32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constraints_func is flagged experimental in some Optuna versions
        smp = (optuna.samplers.TPESampler(seed=sampler_seed, constraints_func=_constraint) if sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=sampler_seed))
    up = objective in MAXIMIZED or reference == "original"
    study = optuna.create_study(direction="maximize" if up else "minimize", sampler=smp)
    if start:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a default outside the searched range is tried as it is
            study.enqueue_trial(start, skip_if_exists=False)
    if stratify:
        for fixed in stratified_choices(space, min(budget, TPE_STARTUP) - bool(start), sampler_seed):
            study.enqueue_trial(fixed, skip_if_exists=False)
    trials = []
    for i in range(budget):
        trial = study.ask()
        params = {name: suggest(trial, name, s) for name, s in space.items()}
        say(f"tune {method}: trial {i + 1}/{budget} {params}")
        result = api.run(_trial_spec(run_spec, method, params, validation=True), store=store, progress=say,
                         **run_kwargs)
        t = {"number": trial.number, "params": params,
             **score(result, method, objective, floor, run_spec.get("task", "classifier"), reference)}
        if t["error"] is None:
            trial.set_user_attr("violation", t["violation"])
            study.tell(trial, t["value"])
        else:
            study.tell(trial, state=TrialState.FAIL)
        trials.append(t)
    return trials


TPE_STARTUP = 10  # optuna's TPESampler n_startup_trials default: its random trials before it models anything


def stratified_choices(space: dict[str, tuple], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` partial settings fixing every categorical field of `space`: per field a seeded permutation of its choices,
    cycled (no value repeats before each was used once); [] when the space has no categorical field."""
    import numpy as np

    rng = np.random.default_rng(seed)
    fields = {name: [s[1:][i] for i in rng.permutation(len(s) - 1)] for name, s in space.items() if s[0] == "choice"}
    if not fields or n <= 0:
        return []
    return [{name: vals[i % len(vals)] for name, vals in fields.items()} for i in range(n)]


def _constraint(trial) -> tuple[float]:
    """Optuna constraint: <= 0 when the trial keeps its utility within the floor of the oracle's."""
    return (float(trial.user_attrs.get("violation", 1.0)),)


def score(result: dict[str, Any], method: str, objective: str, floor: float,
          task: str = "classifier", reference: str = "retrain") -> dict[str, Any]:
    """Objective (mean over seeds), utility violation (<= 0: feasible) and feasibility of one trial's result.

    "Avg.Gap" and "Forget Quality" are taken as stored; "Forget.Gap" is the mean |metric - oracle's| over the
    FORGET_GAP metrics present; any other metric name is scored as |metric - oracle's metric|. With reference
    "original" (Stable Diffusion: no oracle) the objective is taken as stored and the utility floor applies to the
    drop from the original's (keys original_<metric> instead of oracle_<metric>).
    """
    errors = [e for e in result["errors"] if e["method"] in (method, "retrain", "original")]
    recs = [r for r in result["records"] if r["spec"]["method"] == method]
    oracle = {r["spec"]["seed"]: r["metrics"] for r in result["records"] if r["spec"]["method"] == reference}
    prefix = "oracle" if reference == "retrain" else "original"
    out: dict[str, Any] = {"value": math.nan, "feasible": False, "violation": math.nan, "error": None}
    if errors or not recs or any(r["spec"]["seed"] not in oracle for r in recs):
        out["error"] = "; ".join(f"{e['method']} (seed {e['seed']}): {e['error']}" for e in errors) or \
            f"no {method} or oracle record came back"
        return out
    pairs = [(r["metrics"], oracle[r["spec"]["seed"]]) for r in recs]
    if objective == "Forget.Gap":
        terms = [k for k in FORGET_GAP if all(_finite(m.get(k)) and _finite(o.get(k)) for m, o in pairs)]
        if not terms:
            raise ConfigError(f"Forget.Gap needs one of {', '.join(FORGET_GAP)} in the records; these runs have "
                              f"{', '.join(recs[0]['metrics'])}. Choose one of them with --objective.")
        out["gap_over"] = terms
        out["value"] = statistics.fmean(statistics.fmean(abs(m[k] - o[k]) for k in terms) for m, o in pairs)
    elif objective not in recs[0]["metrics"]:
        raise ConfigError(f"objective {objective!r} is not a metric of these runs; choose one of "
                          f"{', '.join(recs[0]['metrics'])}" + (", or Forget.Gap." if task == "qa" else "."))
    else:
        stored = objective in ("Avg.Gap", *MAXIMIZED) or reference == "original"
        out["value"] = statistics.fmean(m[objective] if stored else abs(m[objective] - o[objective])
                                        for m, o in pairs)
    names = _utility(task, [o for _, o in pairs])
    out["utility"] = names
    for k in names:
        out[k] = statistics.fmean(m[k] for m, _ in pairs)
        out[f"{prefix}_{k}"] = statistics.fmean(o[k] for _, o in pairs)
    if task in UTILITY:  # points
        drop = max(out[f"{prefix}_{k}"] - out[k] for k in names)
    else:  # relative to the oracle's value
        drop = max(((out[f"{prefix}_{k}"] - out[k]) / out[f"{prefix}_{k}"] for k in names), default=0.0)
    out["violation"] = drop - floor
    if not math.isfinite(out["value"]) or not math.isfinite(out["violation"]):
        out["error"] = f"objective or utility is not finite ({out['value']}, {out['violation']})"
        return out
    out["feasible"] = out["violation"] <= 0
    return out


def _utility(task: str, oracles: list[dict[str, Any]]) -> list[str]:
    """The metrics the utility floor applies to: UTILITY[task]; on a two-factor diffusion set (records with IRA)
    both retained accuracies, IRA and CRA; for language models _lm_utility."""
    if task == "diffusion" and all("IRA" in o for o in oracles):
        return list(CANVAS_UTILITY)
    return list(UTILITY[task]) if task in UTILITY else _lm_utility(oracles)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _lm_utility(oracles: list[dict[str, Any]]) -> list[str]:
    """The LM utility metrics the floor applies to: Model Utility when the oracle's is > 0, else retain_Prob."""
    def usable(k: str) -> bool:
        return all(_finite(o.get(k)) for o in oracles) and statistics.fmean(o[k] for o in oracles) > 0

    return [k for k in LM_UTILITY if usable(k)] or [k for k in LM_UTILITY_FALLBACK if usable(k)]


def sensitivity(trials: list[dict[str, Any]], budget: int, *, direction: str = "minimize",
                near: float = NEAR_BEST["classifier"]) -> dict[str, float]:
    """How much the method's objective moved over its trials: spread over feasible trials and near-best share."""
    vals = sorted(t["value"] for t in trials if t["feasible"])
    out = {"n_trials": budget, "n_feasible": len(vals), "frac_feasible": len(vals) / budget}
    if not vals:
        nan = math.nan
        return {**out, "best": nan, "min": nan, "median": nan, "max": nan, "iqr": nan, "frac_near_best": 0.0}
    q = statistics.quantiles(vals, n=4, method="inclusive") if len(vals) > 1 else [vals[0]] * 3
    best = vals[-1] if direction == "maximize" else vals[0]
    return {**out, "best": best, "min": vals[0], "median": statistics.median(vals), "max": vals[-1],
            "iqr": q[2] - q[0], "frac_near_best": sum(abs(v - best) <= near for v in vals) / budget}
