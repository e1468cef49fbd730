"""Strict audits vs the usual metrics: does the SVC-MIA / Avg.Gap ranking of methods survive population attacks,
representation probes and recovery attacks?

Phases per scenario:
1. tune (`--budget` > 0): every method gets the same number of Optuna trials on val:<scenario> (engine/tune.py,
   Avg.Gap to the validation oracle under the utility floor), so no method is judged at a setting that does nothing;
2. run the selected settings on the reported forget set (seed 0) and audit each method's run (`api.audit`) with
   `--population` models per role (seeds for the fixed population, shadows for U-LiRA / LiRA / RMIA);
3. write the doc: per method its Avg.Gap, SVC-MIA gap and each strict quantity with its calibration rows
   (floor = what retraining gives, ceiling = the original), and where the rankings disagree (Kendall tau).

Populations are engine runs: cached in --results, so a rerun only recomputes what changed.

    python benchmarks/audit.py --dataset digits --scenarios class:3,random:10% --population 8 \
        --results results/bench-audit --out docs/audit_digits.md
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from datetime import UTC, datetime

import numpy as np
from scipy.stats import kendalltau

from unlearnlab import api
from unlearnlab.engine.events import LineRenderer
from unlearnlab.engine.tune import tune
from unlearnlab.store import Store

METHODS = ("ft", "ga", "random_label", "salun", "l1_sparse", "scrub", "neggrad_plus", "bad_teacher")


def _sink() -> LineRenderer:
    return LineRenderer(sys.stderr, every_s=60)


def _base(args) -> dict:
    """Dataset, model and recipe shared by every run (the audit's populations inherit them from the run)."""
    return {"dataset": args.dataset, "model": args.model,
            **({"recipe": {"epochs": args.epochs}} if args.epochs is not None else {})}


def _tuned(args, store: Store, forget: str) -> tuple[dict, float]:
    if args.budget <= 0:
        return {}, 0.0
    t0 = time.perf_counter()
    spec = {**_base(args), "forget": forget, "methods": list(args.methods), "seeds": [0]}
    # trials run in this process: each trial is a small job graph, and a process pool per trial costs more start-up
    # (~12 s on a loaded 2-core machine) than a digits trial's work
    res = tune(spec, list(args.methods), budget=args.budget, store=store, final=False,
               run_kwargs={"backend": "serial", "events": _sink()})
    return {m: (e["best"] or {}).get("params", {}) for m, e in res["methods"].items()}, time.perf_counter() - t0


def _position(row: dict) -> float:
    """0 = at the floor (as retrained), 1 = at the ceiling (as the original); nan when they coincide."""
    span = row["ceiling"] - row["floor"]
    return (row["method"] - row["floor"]) / span if abs(span) > 1e-9 else math.nan


def scenario(args, store: Store, forget: str) -> dict:
    """Tune, run, audit every method on one forget scenario; returns what the doc needs."""
    overrides, tune_s = _tuned(args, store, forget)
    spec = {**_base(args), "forget": forget, "methods": list(args.methods), "seeds": [0], "overrides": overrides}
    res = api.run(spec, store=store, backend=args.backend, workers=args.workers, events=_sink())
    recs = {r["spec"]["method"]: r for r in res["records"]}
    out: dict = {"forget": forget, "overrides": overrides, "tune_s": tune_s, "audit_s": {}, "methods": {},
                 "oracle": recs["retrain"]["metrics"], "original": recs["original"]["metrics"]}
    for m in args.methods:
        t0 = time.perf_counter()
        a = api.audit(recs[m]["id"], store=store, attacks=args.attacks, population=args.population,
                      canaries=args.canaries, backend=args.backend, workers=args.workers, events=_sink())
        out["audit_s"][m] = time.perf_counter() - t0
        out["methods"][m] = {"metrics": recs[m]["metrics"], "rows": a["rows"], "notes": sorted(
            {n for v in a["attacks"].values() for n in v.get("notes", [])})}
    return out


def population_cost(store: Store) -> str:
    """What the populations cost when they were trained (from the store, so a cached rerun still reports it)."""
    import json

    model_s = {"original": [], "oracle": []}
    for index in (store.root / "models").glob("*/*.json"):
        meta = json.loads(index.read_text()).get("meta", {})
        if meta.get("role") in model_s and meta.get("train_s"):
            model_s[meta["role"]].append(float(meta["train_s"]))
    runs = [r["timings"].get("wall_s", 0.0) for r in store.list_runs()
            if r["spec"].get("method") not in ("original", "retrain", "oracle-floor")]
    parts = [f"{len(v)} {k} models, median {np.median(v):.1f} s each, {sum(v) / 60:.1f} min in all"
             for k, v in model_s.items() if v]
    parts.append(f"{len(runs)} method runs, {sum(runs) / 60:.1f} min of method time")
    return ("Population training (every model and run in the store, tuning trials included; seconds per job as "
            "measured when it ran, two jobs at a time on a machine shared with other work): " + "; ".join(parts) + ".")


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def _tables(sc: dict) -> list[str]:
    methods = list(sc["methods"])
    quantities = [r["quantity"] for r in sc["methods"][methods[0]]["rows"]]
    mia_o = sc["oracle"].get("MIA-Eff", math.nan)
    lines = ["| method | Avg.Gap | \\|ΔMIA-Eff\\| (SVC) | " + " | ".join(quantities) + " |",
             "|---|---|---|" + "---|" * len(quantities)]
    for m in methods:
        met = sc["methods"][m]["metrics"]
        cells = [f"{_fmt(r['method'])} ({_fmt(_position(r))})" for r in sc["methods"][m]["rows"]]
        lines.append(f"| {m} | {_fmt(met.get('Avg.Gap'))} | {_fmt(abs(met.get('MIA-Eff', math.nan) - mia_o))} | "
                     + " | ".join(cells) + " |")
    first = sc["methods"][methods[0]]["rows"]
    lines.append("| floor (retraining) | 0 | 0 | " + " | ".join(_fmt(r["floor"]) for r in first) + " |")
    lines.append("| ceiling (original) | " + _fmt(sc["original"].get("Avg.Gap")) + " | "
                 + _fmt(abs(sc["original"].get("MIA-Eff", math.nan) - mia_o)) + " | "
                 + " | ".join(_fmt(r["ceiling"]) for r in first) + " |")
    return lines


def _disagreements(sc: dict) -> list[str]:
    methods = list(sc["methods"])
    gap = np.array([sc["methods"][m]["metrics"].get("Avg.Gap", math.nan) for m in methods])
    mia_o = sc["oracle"].get("MIA-Eff", math.nan)
    mia = np.array([abs(sc["methods"][m]["metrics"].get("MIA-Eff", math.nan) - mia_o) for m in methods])
    out = []
    for q, row0 in enumerate(sc["methods"][methods[0]]["rows"]):
        pos = np.array([abs(_position(sc["methods"][m]["rows"][q])) for m in methods])
        if math.isnan(row0["floor"]) or math.isnan(row0["ceiling"]):
            out.append(f"- {row0['quantity']}: no floor / ceiling rows at this population size; not ranked.")
            continue
        if np.isnan(pos).any():
            out.append(f"- {row0['quantity']}: floor = ceiling, cannot rank (the set-up does not show it).")
            continue
        if np.ptp(pos) < 1e-9:
            out.append(f"- {row0['quantity']}: every method at the same position; no ranking.")
            continue
        tg, tm = kendalltau(gap, pos).statistic, kendalltau(mia, pos).statistic
        best, worst = methods[int(np.argmin(pos))], methods[int(np.argmax(pos))]
        out.append(f"- {row0['quantity']}: Kendall tau vs Avg.Gap {tg:+.2f}, vs SVC-MIA gap {tm:+.2f}; closest to "
                   f"retraining: {best}, furthest: {worst} (Avg.Gap ranks {methods[int(np.argmin(gap))]} first).")
    return out


def write_doc(args, scenarios: list[dict], wall: float, cost: str = "") -> str:
    cmd = "python benchmarks/audit.py " + " ".join(sys.argv[1:])
    lines = [f"# Strict audits vs the usual metrics: {args.dataset}", "",
             f"Command: `{cmd}`", "",
             f"Machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores; "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Total wall time {wall / 60:.1f} min "
             f"(populations of {args.population} models per role, {args.canaries} canaries; cached in "
             f"`{args.results}`; a rerun reuses them).", "", cost, "",
             "Each cell is the method's value and, in brackets, its position between the floor (0: what retraining "
             "gives) and the ceiling (1: the original, no unlearning); |position| ranks methods (0 best). A "
             "position far above 1 or below 0 is an overshoot (the method is further from retraining than doing "
             "nothing, e.g. a random-label method's forget outputs). Floors and ceilings are computed at the same "
             "population size as the method (halves of the oracle population for KLoM and the challenge score; a "
             "permutation null for U-LiRA; the oracle and the original as targets for LiRA / RMIA).", ""]
    for sc in scenarios:
        lines += [f"## forget {sc['forget']}", ""]
        if sc["overrides"]:
            kept = [m for m, p in sc["overrides"].items() if not p]
            lines += [f"Tuned on val:{sc['forget']} ({args.budget} trials each, {sc['tune_s'] / 60:.1f} min): "
                      + "; ".join(f"{m} {p}" for m, p in sc["overrides"].items() if p)
                      + (f" (defaults kept for {', '.join(kept)}: no trial met the utility floor)" if kept else ""),
                      ""]
        else:
            lines += ["Settings: the methods' defaults (`--budget 0`).", ""]
        lines += ["Audit wall time per method (populations shared across methods): "
                  + ", ".join(f"{m} {s / 60:.1f} min" for m, s in sc["audit_s"].items()), ""]
        lines += _tables(sc) + ["", "Where the rankings disagree:", ""] + _disagreements(sc) + [""]
        notes = sorted({n for m in sc["methods"].values() for n in m["notes"]})
        lines += ["Notes from the audits:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--scenarios", default="class:3,random:10%")
    ap.add_argument("--model", default="", help="model spec (default: the dataset's)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the original / oracle recipe")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--attacks", default="klom,eps,ps,ulira,lira,rmia,cka,probe,relearn,head")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--canaries", type=int, default=200)
    ap.add_argument("--budget", type=int, default=4, help="tuning trials per method (0: defaults)")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--results", default="results/bench-audit")
    ap.add_argument("--out", default="docs/audit_digits.md")
    args = ap.parse_args()
    args.methods = tuple(m for m in args.methods.split(",") if m)
    store = Store(args.results)
    t0 = time.perf_counter()
    scenarios: list[dict] = []
    for f in (f for f in args.scenarios.split(",") if f):
        scenarios.append(scenario(args, store, f))
        text = write_doc(args, scenarios, time.perf_counter() - t0, population_cost(store))  # partial doc survives
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
