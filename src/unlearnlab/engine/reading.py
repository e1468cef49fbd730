"""The one-line reading of a leaderboard (engine.report.leaderboard), printed by `unlearnlab run` and heading each
scenario of a report."""
from __future__ import annotations

import math

import numpy as np

from .report import KINDS, _ci, _fin, _fmt


def reading(b: dict) -> str:
    """One line that reads a leaderboard: does the set-up show forgetting, which method is closest to retraining,
    which are within the noise floor, which changed nothing."""
    prim, rows = b["primary"], b["rows"]
    ref = {r["method_name"]: r for r in rows if r["reference"]}
    parts = []
    orig, orac, fm = ref.get("original"), ref.get("retrain"), KINDS[b["kind"]]["forget"]
    if orig and orac and fm in orig["metrics"] and fm in orac["metrics"]:
        o, t = orig["metrics"][fm]["mean"], orac["metrics"][fm]["mean"]
        if "NOTHING TO FORGET" in orig["flags"]:
            parts.append(f"the original has nothing to forget ({fm} {_fmt(o)} vs the oracle's {_fmt(t)}, within the "
                         "noise floor)")
        else:
            parts.append(f"the original remembers the forget set ({fm} {_fmt(o)}; retrained oracle {_fmt(t)})")
    ranked = [r for r in rows if not r["reference"]]
    if b["best"]:
        best = next(r for r in ranked if r["method"] == b["best"])
        ties = [r["method"] for r in ranked if "ties best" in r["flags"]]
        parts.append(f"closest to retraining: {b['best']} ({prim} {_ci(best['primary'])})"
                     + (f", tied with {', '.join(ties)}" if ties else ""))
    if b.get("no_oracle"):
        parts.append(f"{b['no_oracle']}; compare UA / RA with the original's")
    elif b["floor"]:
        within = [r["method"] for r in ranked if "within noise floor" in r["flags"]]
        parts.append(f"within the noise floor ({prim} {_fmt(b['floor']['primary']['mean'])}): "
                     + (", ".join(within) if within else "none"))
    else:
        parts.append("noise floor not measured (run 2+ seeds)")
    noop = [r["method"] for r in ranked if "CHANGED NOTHING" in r["flags"] or "DID NOT FORGET" in r["flags"]
            or r.get("warnings")]
    if noop:
        parts.append(f"changed nothing or too little: {', '.join(noop)}")
    return "; ".join(parts) + "."


def _within_floor(a: dict, b: dict, floor: dict | None, m: str, upper: bool = True) -> bool:
    """True when rows `a` and `b` differ on metric `m` (mean |difference| over the seeds both have) by no more
    than two oracles of different seeds do (the floor's mean |difference|, or with `upper` its interval's upper
    end, which two floor pairs make wide)."""
    if b is None or floor is None or m not in floor["metrics"]:
        return False
    gap = _mean_gap(a, b, m)
    f = floor["metrics"][m]
    bound = max(f["mean"], f.get("hi", f["mean"])) if upper else f["mean"]
    return _fin(gap) and _fin(f.get("mean")) and gap <= bound


def _mean_gap(a: dict, b: dict, m: str) -> float:
    """Mean over the seeds rows `a` and `b` share of |a - b| on metric `m` (nan when none is finite)."""
    gaps = [abs(v.get(m, math.nan) - b["by_seed"][s].get(m, math.nan)) for s, v in a["by_seed"].items()
            if s in b["by_seed"]]
    gaps = [g for g in gaps if _fin(g)]
    return float(np.mean(gaps)) if gaps else math.nan


def nothing_to_forget(original: dict, floor: dict | None, oracle: dict | None, kind: dict) -> bool:
    """True when the original's forget-set metric (UA; QA: forget ROUGE) is no further from the oracle's than a
    second oracle is (the noise floor of that metric): the set-up cannot show forgetting."""
    return _within_floor(original, oracle, floor, kind["forget"])


NEGLIGIBLE = 0.05  # a method that closed less than this fraction of the original-to-oracle forget gap did not forget


def did_not_forget(row: dict, original: dict | None, floor: dict | None, kind: dict,
                   oracle: dict | None = None) -> bool:
    """True when a method's forget-set metric stayed as close to the original's as two oracles are to each other:
    it changed its weights (not CHANGED NOTHING) but not what the forget set measures, a near no-op (e.g. a tuned
    setting whose learning rate is too small to matter, chosen because every stronger one broke the utility
    floor). Judged against the floor's mean, not its upper end: with a few seeds that end is wide, and a method
    that moved the metric by several floors must not be called a no-op. With the `oracle` row, a move of less than
    NEGLIGIBLE (5%) of the original's distance to the oracle also counts: on class forgetting every oracle has
    forget accuracy 0, the floor of that metric is exactly 0, and a method that moved it by 0.2 of 98 points would
    otherwise pass as having forgotten."""
    if _within_floor(row, original, floor, kind["forget"], upper=False):
        return True
    if original is None or oracle is None or floor is None:
        return False
    moved, gap = _mean_gap(row, original, kind["forget"]), _mean_gap(oracle, original, kind["forget"])
    return _fin(moved) and _fin(gap) and moved < NEGLIGIBLE * gap
