"""The audit forget scenarios on digits (docs/scenarios.md quotes its output).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scenarios_digits.py --results results/bench-scenarios

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scenarios_digits.py --budget 4 --results results/bench-scenarios

Runs, with default method settings (or, with --budget N, each method tuned with N trials on the scenario's own
disjoint val: form, selected by Avg.Gap to the validation oracle under the tuner's utility floor) and the digits
recipe (MLP, 30 epochs), seeds 0 and 1:
  random:10%, worst:10%:ft|rl|ga, hard:10%, easy:10%                   (UA of the oracle, Avg.Gap per method)
  poison:patch:100 at known=10% / 50% / 100%, poison:swap:100:known=50%  (ASR, Corrected-Acc, Poison-Acc, TA)
  seq:random:5%x4                                                        (Avg.Gap after each request)
Runs are cached in the results store, so a rerun recomputes nothing. Prints markdown tables (mean over seeds).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from unlearnlab import api
from unlearnlab.data.scenarios import parse_forget
from unlearnlab.store import Store

METHODS = ["ft", "ga", "random_label", "l1_sparse", "salun", "ssd"]
SELECT = ["random:10%", "worst:10%:ft", "worst:10%:rl", "worst:10%:ga", "hard:10%", "easy:10%"]
POISON = ["poison:patch:100:known=10%", "poison:patch:100:known=50%", "poison:patch:100:known=100%",
          "poison:swap:100:known=50%"]
SEQ = "seq:random:5%x4"


BUDGET: dict = {"n": 0, "poison_objective": None}  # --budget: trials per method on the scenario's val: form
CHOSEN: dict[str, dict[str, dict]] = {}  # scenario -> method -> the tuned setting


def _run(forget: str, methods: list[str], store, seeds) -> dict[str, list[dict]]:
    spec = {"dataset": "digits", "forget": forget, "seeds": seeds}
    if BUDGET["n"]:
        objective = BUDGET["poison_objective"] if forget.startswith("poison:") else None
        res = api.tune(spec, methods, budget=BUDGET["n"], store=store, seed=0, objective=objective)
        errors = [e for m in res["methods"].values() for e in m.get("errors", [])]
        CHOSEN[forget] = {m: (e["best"] or {}).get("params") for m, e in res["methods"].items()}
    else:
        res = api.run({**spec, "methods": methods}, store=store)
        errors = res["errors"]
    if errors:
        raise SystemExit(f"{forget}: {errors}")
    out: dict[str, list[dict]] = {}
    seen: set = set()
    for r in res["records"]:  # tune's final runs each carry the original and oracle records: keep one of each
        key = (r["spec"]["method"], r["spec"]["seed"], r.get("id"))
        if key not in seen:
            seen.add(key)
            out.setdefault(r["spec"]["method"], []).append(r)
    return out


def chosen_table() -> list[str]:
    """The tuned settings per scenario and method (--budget)."""
    rows = ["| scenario | method | chosen setting |", "|---|---|---|"]
    for sc, methods in CHOSEN.items():
        for m, params in methods.items():
            txt = "no feasible trial (defaults not run)" if params is None else ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
            rows.append(f"| {sc} | {m} | {txt} |")
    return rows


def _mean(recs: list[dict] | None, key: str) -> float:
    """Mean over seeds; NaN (printed 'nan') for a method that was not run (tuning found no feasible setting)."""
    return float(np.mean([r["metrics"][key] for r in recs])) if recs else float("nan")


def selection_table(store, seeds) -> list[str]:
    """Avg.Gap to the oracle per method and scenario, with the oracle's UA."""
    rows = ["| scenario | oracle UA | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 2) + "|"]
    for sc in SELECT:
        t0 = time.perf_counter()
        runs = _run(sc, METHODS, store, seeds)
        cells = [f"{_mean(runs.get(m), 'Avg.Gap'):.2f}" for m in METHODS]
        rows.append(f"| {sc} | {_mean(runs['retrain'], 'UA'):.1f} | " + " | ".join(cells) + " |")
        print(f"[{sc}: {time.perf_counter() - t0:.0f}s]", file=sys.stderr, flush=True)
    return rows


def poison_table(store, seeds) -> list[str]:
    """Corrective metrics per scenario and method (original = the poisoned model, retrain = the clean oracle)."""
    rows = ["| scenario | model | ASR | Corrected-Acc | Poison-Acc | TA |", "|---|---|---|---|---|---|"]
    for sc in POISON:
        runs = _run(sc, ["ft", "ga", "random_label", "ssd"], store, seeds)
        for m in ("original", "retrain", "ft", "ga", "random_label", "ssd"):
            vals = " | ".join(f"{_mean(runs.get(m), k):.1f}" for k in ("ASR", "Corrected-Acc", "Poison-Acc", "TA"))
            rows.append(f"| {sc} | {m} | {vals} |")
    return rows


def seq_table(store, seeds) -> list[str]:
    """Avg.Gap after each request of the sequence (each step against the oracle without all requests so far)."""
    methods = ["ft", "ga", "random_label", "salun"]
    runs = _run(SEQ, methods, store, seeds)
    k = parse_forget(SEQ).steps
    rows = ["| method | " + " | ".join(f"after {i + 1}" for i in range(k)) + " |", "|---" * (k + 1) + "|"]
    for m in methods:
        gaps = [np.mean([r["steps"][i]["metrics"]["Avg.Gap"] for r in runs.get(m, [])] or [np.nan]) for i in range(k)]
        rows.append(f"| {m} | " + " | ".join(f"{g:.2f}" for g in gaps) + " |")
    return rows


def main() -> None:
    """Run the three tables and print them."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/bench-scenarios")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=0, help="tune each method with N trials on the scenario's val: "
                    "form (0: default settings)")
    ap.add_argument("--poison-objective", default=None, help="tuning objective of the poison scenarios, e.g. ASR "
                    "(|ASR - the clean oracle's|); default: the tuner's Avg.Gap")
    a = ap.parse_args()
    store, seeds = Store(a.results), list(range(a.seeds))
    BUDGET.update(n=a.budget, poison_objective=a.poison_objective)
    t0 = time.perf_counter()
    out = ["### Forget-set selection: Avg.Gap to the oracle", "", *selection_table(store, seeds), "",
           "### Corrective unlearning", "", *poison_table(store, seeds), "",
           f"### Sequential requests ({SEQ}): Avg.Gap after each", "", *seq_table(store, seeds), "",
           *(["### Tuned settings", "", *chosen_table(), ""] if a.budget else []),
           f"(wall time {time.perf_counter() - t0:.0f}s, seeds {seeds}, budget {a.budget}, poison objective "
           f"{a.poison_objective or 'Avg.Gap'})"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
