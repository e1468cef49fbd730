"""Does the CIFAR benchmark's tuning budget decide its ranking? One scenario's studies at a larger budget.

    .venv/bin/python benchmarks/tuning_budget.py --scenario class:3 --small 6 --large 12 --amp \
        --name bench-cifar-w64 --results results/bench-cifar --out docs/benchmark_cifar10/tuning_budget.md
    (also writes tuning_budget.json beside it, which benchmarks/classifier_cifar.py quotes in its doc)

benchmarks/classifier_cifar.py gives every method the same number of trials (`--budget`; the sections so far ran
with 6) on `val:<scenario>`. With 6 trials Optuna's TPE is still in its random start-up, so the chosen setting is
the best of 6 seeded draws; the plain and the stratified draws chose settings up to 4 val Avg.Gap points apart for
SalUn and SCRUB, the size of the top methods' differences. This script runs each method's study at `--large` trials with
the benchmark's spec, seeds and sampler (same name, same results store): its first `--small` trials are the
`--small`-trial study's (same seed, same start-up draws;
tests/test_tune.py::test_stratify_tries_every_categorical_value_before_repeating_one), so they come from the store
and only the extra trials run. For each method it reports the best feasible setting among the first `--small`
trials and among all `--large`, how much the validation Avg.Gap moved, and how the methods' order on the validation
set changes (Kendall's tau between the two orders). Validation numbers only: the reported forget set is not
touched, so this measures the selection, not the verdict. A method whose choice changes would need its reported
runs redone at the larger budget: the benchmark's command with `--budget N --out docs/benchmark_cifar10_budgetN.md`
(its own doc, so the main one stays one protocol); the main doc then compares the two reported verdicts
(benchmarks/cifar_budget.py).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from classifier_cifar import _run_kw, _sink, _spec, slug
from report_doc import stamp, tune_side_by_side

from unlearnlab.engine.runner import execute
from unlearnlab.engine.tune import best_trial
from unlearnlab.store import Store
from unlearnlab.tasks.classifier import method_names


def best_of(trials: list[dict], n: int) -> dict | None:
    """The trial engine/tune.py selects among the first `n` (lowest Avg.Gap among the feasible; ties: the earliest)."""
    return best_trial([t for t in trials if t["number"] < n])


def compare(methods: dict[str, dict], small: int, kept: dict | None = None) -> list[dict]:
    """Per method: the best of the first `small` trials and of all, and the change between them; `kept`: the
    benchmark's chosen settings at the small budget ({method: params}), which the best of the first `small` trials
    must reproduce (else the larger study did not start with the smaller one's trials, and the comparison is void)."""
    rows = []
    for m, e in sorted(methods.items()):
        trials = e.get("trials", [])
        a, b = best_of(trials, small), best_of(trials, len(trials))
        rows.append({"method": m, "n": len(trials), "small": a, "large": b,
                     "kept_matches": None if kept is None or m not in kept else kept[m] == (a or {}).get("params", {}),
                     "changed": (a or {}).get("params") != (b or {}).get("params"),
                     "delta": (b["value"] - a["value"]) if a and b else math.nan,
                     "feasible_small": sum(t["feasible"] for t in trials if t["number"] < small),
                     "feasible_large": sum(t["feasible"] for t in trials)})
    return rows


def order_change(rows: list[dict]) -> tuple[float, list[str], list[str]]:
    """Kendall's tau between the methods' orders by their best val Avg.Gap at the small and the large budget (over
    methods with a feasible trial at both), and the two orders."""
    from scipy.stats import kendalltau

    both = [r for r in rows if r["small"] and r["large"]]
    small = [r["method"] for r in sorted(both, key=lambda r: r["small"]["value"])]
    large = [r["method"] for r in sorted(both, key=lambda r: r["large"]["value"])]
    tau = kendalltau([small.index(m) for m in small], [large.index(m) for m in small]).statistic if len(both) > 1 \
        else math.nan
    return float(tau), small, large


def _fmt(t: dict | None) -> str:
    return "no feasible trial" if t is None else f"{t['value']:.2f} (trial {t['number'] + 1}) {t['params']}"


def beyond(rows: list[dict], floor: float | None) -> list[str]:
    """Methods whose best validation Avg.Gap improved by more than `floor` (the reported scenario's two-oracle noise
    floor) with the larger budget, or that had no feasible trial at the smaller one and have one at the larger."""
    if floor is None:
        return []
    return [r["method"] for r in rows if r["large"] and (r["small"] is None or -r["delta"] > floor)]


def doc_lines(rows: list[dict], args, log: dict, seconds: float, floor: float | None = None) -> list[str]:
    tau, small, large = order_change(rows)
    changed = [r for r in rows if r["changed"]]
    moved = beyond(rows, floor)
    checked = [r for r in rows if r["kept_matches"] is not None]
    off = [r["method"] for r in checked if not r["kept_matches"]]
    lines = [f"# Tuning budget: {args.small} vs {args.large} trials per method (val:{args.scenario})", "",
             f"Produced by `{log['command']}` on {log['cores']} cores, {log['date']}; {seconds / 60:.1f} min of wall "
             f"time (trials already in `{args.results}` are reused). Validation forget set only "
             f"(`val:{args.scenario}`, seeds {args.tune_seeds}); selection by Avg.Gap to the validation oracle under "
             "the benchmark's utility floor (test accuracy within 2 points of the oracle's). "
             f"{'Stratified' if args.stratify else 'Plain'} start-up draws, as the benchmark's "
             f"{'default' if args.stratify else '--no-stratify'}. The first {args.small} trials of each "
             f"{args.large}-trial study are the {args.small}-trial study's"
             + (f": the best of them is the benchmark's chosen setting for {len(checked) - len(off)} of "
                f"{len(checked)} methods (`{args.kept}`)" + (f"; NOT for {', '.join(off)}: their comparison is "
                                                             "void" if off else "") if checked else "") + ".", "",
             f"**{len(changed)} of {len(rows)} methods choose another setting with {args.large} trials**"
             + (f" ({', '.join(r['method'] for r in changed)})" if changed else "")
             + f"; Kendall's tau between the methods' validation orders at {args.small} and {args.large} trials: "
             f"{tau:.2f} (1: same order)."
             + ("" if floor is None else f" Improved by more than the reported scenario's noise floor ({floor:.2f} "
                f"Avg.Gap, two oracles differing only in seed) or newly feasible: {len(moved)} "
                f"({', '.join(moved) or 'none'})."), "",
             f"| method | best of {args.small}: val Avg.Gap (trial) setting | best of {args.large} | Δ val Avg.Gap | "
             f"feasible ({args.small} / {args.large}) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {_fmt(r['small'])} | "
                     + ("same" if not r["changed"] else _fmt(r["large"]))
                     + f" | {r['delta']:+.2f}".replace("+nan", "–")
                     + f" | {r['feasible_small']} / {r['feasible_large']} |")
    lines += ["", f"Validation order at {args.small} trials: {', '.join(small)}.",
              f"Validation order at {args.large} trials: {', '.join(large)}.", "",
              "Reading: a method whose best moved by more than the reported scenario's noise floor (the section's "
              "floor row) between the two budgets was not tuned to convergence at the smaller one, and its reported "
              "row reflects which settings were drawn as much as the method.", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10-dev")
    ap.add_argument("--model", default="")
    ap.add_argument("--scenario", default="class:3")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--small", type=int, default=6, help="the benchmark's budget (trials per method)")
    ap.add_argument("--large", type=int, default=12, help="the larger budget to compare with")
    ap.add_argument("--tune-seeds", type=int, default=1)
    ap.add_argument("--no-stratify", dest="stratify", action="store_false")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--name", default="bench-cifar")
    ap.add_argument("--results", default="results/bench-cifar")
    ap.add_argument("--out", default="docs/benchmark_cifar10/tuning_budget.md")
    ap.add_argument("--bench-doc", default="docs/benchmark_cifar10.md", help="the benchmark's doc, beside which "
                    "its tuning outcomes are kept (<doc>/scenarios/<scenario>.tuning.json)")
    ap.add_argument("--kept", default="", help="the benchmark's tuning outcome at --small (default: the one kept "
                    "beside --bench-doc): its chosen settings must be the best of the first --small trials")
    args = ap.parse_args()
    if not 0 < args.small < args.large:
        ap.error(f"need 0 < --small < --large; got {args.small} and {args.large}")
    args.tune_seeds = list(range(args.tune_seeds))
    methods = method_names(_spec(args, args.scenario, [m.strip() for m in args.methods.split(",")], [0]))
    log = stamp()
    kept_path = Path(args.kept or Path(args.bench_doc).with_suffix("") / "scenarios"
                     / f"{slug(args.scenario)}.tuning.json")
    args.kept = str(kept_path)
    kept_file = json.loads(kept_path.read_text()) if kept_path.is_file() else {}
    same = kept_file.get("key", {}).get("budget") == args.small and \
        bool(kept_file["key"].get("stratify")) == args.stratify and bool(kept_file["key"].get("amp")) == args.amp
    kept = kept_file["chosen"] if same else None  # an outcome of another budget or sampler is no reference
    t0 = time.perf_counter()
    execute([_spec(args, f"val:{args.scenario}", [], args.tune_seeds)], store=Store(args.results), sink=_sink(),
            **_run_kw(args))
    res = tune_side_by_side(_spec(args, args.scenario, methods, args.tune_seeds).to_dict(), methods,
                            budget=args.large, results=args.results, workers=args.workers, stratify=args.stratify)
    rows = compare(res["methods"], args.small, kept)
    section = kept_path.with_name(f"{slug(args.scenario)}.summary.json")  # the reported scenario's floor
    floor = json.loads(section.read_text()).get("floor") if section.is_file() else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(doc_lines(rows, args, log, time.perf_counter() - t0, floor)), encoding="utf-8")
    tau = order_change(rows)[0]
    out.with_suffix(".json").write_text(json.dumps({  # what the benchmark's doc says of it (classifier_cifar.py)
        "scenario": args.scenario, "small": args.small, "large": args.large, "methods": len(rows),
        "changed": [r["method"] for r in rows if r["changed"]], "tau": tau, "floor": floor,
        "beyond_floor": beyond(rows, floor), "command": log["command"],
        "date": log["date"]}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
