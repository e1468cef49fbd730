"""The tuning part of a CIFAR benchmark section (benchmarks/classifier_cifar.py): how each method's setting was
chosen on the validation forget set, what it scored there, what the same setting scored on the reported forget set,
and how well the validation order of the methods predicts the reported one.

The last is the check a reader needs before trusting a tuned row: selection happens on val:<scenario> (another
class, or other samples), and a choice that is good there need not be good on the reported set. Kendall's tau of the
methods' orders by validation Avg.Gap (of the chosen setting, one seed) and by reported Avg.Gap (five seeds) says
how much of the validation ranking carries over; the methods that move most are named."""
from __future__ import annotations

import math

import numpy as np

from unlearnlab.engine.tune import TPE_STARTUP

WORSE = 2.0  # times the median reported/validation ratio above which a method's choice "did not carry over"
MOVE = 3  # places of rank a method must move between validation and reported order to be named


def transfer(tuned: dict, reported: dict) -> dict:
    """{'tau', 'n', 'moves': [(method, val rank, reported rank)], 'ratio': the median reported/validation Avg.Gap,
    'worse': [(method, val, reported)] whose ratio exceeds WORSE times the median} over the methods with a feasible
    choice and a finite reported Avg.Gap (`reported`: {method: mean}); tau is nan below 3 such methods."""
    from scipy.stats import kendalltau
    val = {m: (e.get("best") or {}).get("value", math.nan) for m, e in tuned["methods"].items()}
    both = sorted(m for m in val if math.isfinite(val[m]) and math.isfinite(reported.get(m, math.nan)))
    if len(both) < 3:
        return {"tau": math.nan, "n": len(both), "moves": [], "ratio": math.nan, "worse": []}
    vo = {m: i + 1 for i, m in enumerate(sorted(both, key=lambda m: (val[m], m)))}
    ro = {m: i + 1 for i, m in enumerate(sorted(both, key=lambda m: (reported[m], m)))}
    tau = float(kendalltau([val[m] for m in both], [reported[m] for m in both]).statistic)
    moves = sorted(((m, vo[m], ro[m]) for m in both if abs(vo[m] - ro[m]) >= MOVE), key=lambda t: -abs(t[1] - t[2]))
    # ranks hide size: a choice can keep its place while its gap grows 8-fold; the reported/validation ratio of a
    # typical method (the median) is the scenario's own scale (another class, another oracle), and a method whose
    # ratio is more than twice that did not carry its validation result over
    ratio = {m: reported[m] / val[m] for m in both if val[m] > 0}
    typical = float(np.median(list(ratio.values()))) if ratio else math.nan
    worse = sorted(((m, val[m], reported[m]) for m, r in ratio.items() if r > WORSE * typical),
                   key=lambda t: -t[2] / t[1])
    return {"tau": tau, "n": len(both), "moves": moves, "ratio": typical, "worse": worse}


def tuning_lines(forget: str, tuned: dict, n_runs: int, secs: float, reported: dict) -> tuple[list[str], dict]:
    """The section's tuning paragraph, its table (chosen setting, val Avg.Gap, the same setting's reported
    Avg.Gap, feasible trials, the trials' median and IQR) and the transfer line; returns (lines, transfer)."""
    lines = [f"Tuning: {tuned['budget']} trials per method on val:{forget} (seeds {tuned['seeds']}), "
             f"{tuned['objective']} to the validation oracle, utility floor {tuned['utility_floor']} points "
             f"of TA. Cost: {n_runs} trial runs, {secs / 60:.1f} worker-minutes of method time (summed from "
             "the stored records of the studies behind the chosen settings, whichever invocation ran them); "
             f"the tuning phase took {tuned['seconds'] / 60:.1f} min of wall time (the last invocation of "
             "the first tuning, plus any retuning)."
             + (f" Tuned again later, alone and with the same budget, because their declared search space "
                f"changed: {', '.join(tuned['retuned'])}." if tuned.get("retuned") else "")
             + (f" With {tuned['budget']} trials Optuna's TPE is still in its random start-up (its first "
                f"{TPE_STARTUP} trials), and each method's sampler is seeded by the method's name, so every "
                "scenario draws the same settings of a method and picks the best of them on its own validation "
                "set: the tuning is a paired random search" + (
                    " whose categorical fields are stratified (each value tried once before any repeats)."
                    if tuned.get("stratify") else " (plain draws: a categorical value can repeat while "
                    "another is never tried).") if tuned["budget"] <= TPE_STARTUP else
                f" Its first {TPE_STARTUP} trials are TPE's random start-up (the same draws in every scenario: "
                "each method's sampler is seeded by its name" + (", categorical fields stratified" if
                                                                  tuned.get("stratify") else "")
                + "); the rest are proposed by TPE from this scenario's validation results."), "",
             "| method | chosen setting | val Avg.Gap | reported Avg.Gap | feasible trials | median | IQR |",
             "|---|---|---|---|---|---|---|"]
    for m, e in tuned["methods"].items():
        st, b = e["sensitivity"], e["best"] or {}
        lines.append(f"| {m} | {b.get('params', e.get('note'))} | {b.get('value', math.nan):.2f} | "
                     f"{reported.get(m, math.nan):.2f} | {st['n_feasible']}/{st['n_trials']} | {st['median']:.2f} | "
                     f"{st['iqr']:.2f} |")
    tr = transfer(tuned, reported)
    moved = "; ".join(f"{m} {v} -> {r}" for m, v, r in tr["moves"]) or "none"
    lines += ["", f"Validation to reported: Kendall's tau {tr['tau']:.2f} between the methods' orders by validation "
                  f"and by reported Avg.Gap ({tr['n']} methods with a feasible choice; 1 = the validation order is "
                  f"the reported one). Methods moving {MOVE} or more places (validation rank -> reported rank): "
                  f"{moved}. Reported Avg.Gap over validation Avg.Gap, median over the methods: {tr['ratio']:.2f} "
                  f"(the scenario's own scale: another forget set, another oracle); more than {WORSE:g} times that, "
                  "so the validation choice did not carry over: "
                  + ("; ".join(f"{m} {v:.2f} -> {r:.2f}" for m, v, r in tr["worse"]) or "none")
                  + ". The reported column is the five-seed mean of the chosen setting on the reported forget "
                  "set (a method without a feasible trial reports its defaults, so no validation value).", ""]
    return lines, tr


def by_fields(improved: list[str], fields: dict[str, int]) -> str:
    """'1 field: 0 of 4; 2 fields: 5 of 9; 4 fields: 1 of 1': per number of searched fields, how many of the
    methods with that many improved (`improved`) with more trials. An equal number of trials is not an equal search:
    a one-field method's 12 trials cover its line, a four-field method's do not cover its space."""
    out = []
    for k in sorted(set(fields.values())):
        ms = [m for m, n in fields.items() if n == k]
        out.append(f"{k} field{'s' if k > 1 else ''}: {sum(m in improved for m in ms)} of {len(ms)}")
    return "; ".join(out)
