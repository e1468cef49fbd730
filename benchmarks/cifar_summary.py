"""The CIFAR benchmark's view across scenarios (benchmarks/classifier_cifar.py): each scenario's section keeps a
small summary of its leaderboard beside it (`<scenario>.summary.json`: per method the row of its selected setting),
and the doc opens with one table over every section present: a method's Avg.Gap and rank per scenario, whether it
is best or tied with the best (paired 95% interval of the difference contains 0), whether it forgot at all, and
each scenario's noise floor. A reader sees which method is reliably near retraining before reading any section."""
from __future__ import annotations

import json
import math
from pathlib import Path

from cifar_checks import _row

NOT_FORGOT = ("CHANGED NOTHING", "DID NOT FORGET")


def scenario_summary(board: dict, forget: str, command: str, date: str, cost: dict | None = None) -> dict:
    """One scenario's summary: per method its selected setting's row (for GA the tuned one, not the README-lr rows
    of the check), ranked among those rows only; the original's and the floor's Avg.Gap; `cost`: worker-minutes
    of its tuning trials and of its reported method runs, from their records."""
    methods = sorted({r["method_name"] for r in board["rows"] if not r["reference"]})
    picked = {m: _row(board, m) for m in methods}
    order = sorted(methods, key=lambda m: (not math.isfinite(picked[m]["primary"]["mean"]),
                                           picked[m]["primary"]["mean"]))
    ref = {r["method_name"]: r for r in board["rows"] if r["reference"]}
    floor = (board.get("floor") or {}).get("primary", {}).get("mean", math.nan)
    return {"scenario": forget, "command": command, "date": date, "cost": cost or {}, "primary": board["primary"],
            "floor": floor,
            "original": ref["original"]["primary"]["mean"] if "original" in ref else math.nan,
            "rows": {m: {"label": picked[m]["method"], "mean": picked[m]["primary"]["mean"],
                         "lo": picked[m]["primary"].get("lo"), "hi": picked[m]["primary"].get("hi"),
                         "rank": i + 1, "flags": picked[m]["flags"]} for i, m in enumerate(order)}}


def write_summary(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")


def _cell(row: dict | None) -> str:
    if row is None:
        return "–"
    val = f"{row['mean']:.2f}" if math.isfinite(row["mean"]) else "nan"
    top = "best" in row["flags"] or "ties best" in row["flags"]
    mark = " ✗" if any(f in row["flags"] for f in NOT_FORGOT) else ""
    return (f"**{val}**" if top else val) + f" ({row['rank']})" + mark


def _tuning(summary: dict) -> str:
    """'6, stratified' / '6, plain' (how the column's settings were chosen: a plain draw can miss a categorical
    value, e.g. SSD's α=100); '?' for a section written before its summary said so."""
    t = summary.get("tuning") or {}
    return f"{t['budget']}, {'stratified' if t.get('stratify') else 'plain'}" if "budget" in t else "?"


def _tau(summary: dict) -> str:
    """Kendall's tau between the methods' orders by validation and by reported Avg.Gap (benchmarks/cifar_tuning.py);
    '?' for a section written before its summary kept it."""
    tau = (summary.get("tuning") or {}).get("transfer_tau")
    return "?" if tau is None else ("nan" if not math.isfinite(tau) else f"{tau:.2f}")


def reading(summaries: list[dict], planned: int | None = None) -> str:
    """The table's verdict in one paragraph, computed from it (nothing is written by hand): which methods are best
    or tied most often, which has the lowest mean rank, which never are, and which did not forget somewhere;
    `planned`: the protocol's number of scenarios (fewer present: the verdict is said to be provisional)."""
    n = len(summaries)
    methods = sorted({m for s in summaries for m in s["rows"]})
    rows = {m: [s["rows"][m] for s in summaries if m in s["rows"]] for m in methods}
    top = {m: sum("best" in r["flags"] or "ties best" in r["flags"] for r in rs) for m, rs in rows.items()}
    failed = {m: sum(any(f in r["flags"] for f in NOT_FORGOT) for r in rs) for m, rs in rows.items()}
    rank = {m: sum(r["rank"] for r in rs) / len(rs) for m, rs in rows.items()}
    most = max(top.values())
    leaders = [m for m in methods if top[m] == most]
    first = min(methods, key=lambda m: (rank[m], m))
    never = [m for m in methods if top[m] == 0]
    text = ("Reading (computed from the table): "
            + (f"{', '.join(leaders)} {'is' if len(leaders) == 1 else 'are'} best or tied with the best in every "
               f"scenario" if most == n else f"no method is best or tied with the best in every scenario; most "
               f"often {', '.join(leaders)} ({most} of {n})" if most else "no method is best in any scenario")
            + f"; lowest mean rank: {first} ({rank[first]:.1f}).")
    if never:
        text += f" Never best or tied: {', '.join(never)}."
    if any(failed.values()):
        text += (" Did not forget in at least one scenario (✗): "
                 + ", ".join(f"{m} ({failed[m]} of {len(rows[m])})" for m in sorted(
                     methods, key=lambda m: (-failed[m], m)) if failed[m]) + ".")
    return text + (f" With {n} of {planned} scenarios so far, the verdict across scenarios is provisional."
                   if planned and n < planned else "")


def summary_lines(summaries: list[dict], planned: int | None = None) -> list[str]:
    """The table across scenarios (rows: methods by their mean rank; columns: scenarios in protocol order)."""
    if not summaries:
        return []
    methods = sorted({m for s in summaries for m in s["rows"]})

    def mean_rank(m: str) -> float:
        ranks = [s["rows"][m]["rank"] for s in summaries if m in s["rows"]]
        return sum(ranks) / len(ranks)

    head = ["method", *(s["scenario"] for s in summaries), "best or tied", "mean rank"]
    lines = ["## Summary across scenarios", "",
             f"{summaries[0]['primary']} of each method's selected setting (its tuned one; its defaults where no "
             "trial was feasible), with its rank among the methods in that scenario. **Bold**: best, or tied with "
             "the best (the paired 95% interval of the difference contains 0). ✗: did not forget (changed nothing, "
             "or its forget accuracy stayed within the noise floor of the original's or moved less than 5% of the "
             "way to the oracle's). A difference smaller than the column's noise floor is not a ranking; columns "
             "are separate experiments (their sections say how each was run), so compare ranks, not values, "
             "across them.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in sorted(methods, key=lambda m: (mean_rank(m), m)):
        rows = [s["rows"].get(m) for s in summaries]
        top = sum(1 for r in rows if r and ("best" in r["flags"] or "ties best" in r["flags"]))
        lines.append(f"| {m} | " + " | ".join(_cell(r) for r in rows)
                     + f" | {top} of {sum(1 for r in rows if r)} | {mean_rank(m):.1f} |")
    for name, key in (("noise floor (oracle vs oracle)", "floor"), ("original (no unlearning)", "original")):
        lines.append(f"| {name} | " + " | ".join(f"{s[key]:.2f}" for s in summaries) + " | | |")
    lines.append("| tuning: trials per method, start-up draws | " + " | ".join(map(_tuning, summaries)) + " | | |")
    lines.append("| tuning: validation order vs reported order (Kendall's tau) | "
                 + " | ".join(_tau(s) for s in summaries) + " | | |")
    lines += ["", reading(summaries, planned), "",
              "Runs: " + "; ".join(f"{s['scenario']} {s['date']}" for s in summaries) + "."]
    costs = [s for s in summaries if s.get("cost")]
    if costs:
        tune = sum(s["cost"].get("tuning_min", 0.0) for s in costs)
        runs = sum(s["cost"].get("methods_min", 0.0) for s in costs)
        lines += ["", f"Compute, summed from the runs' records (worker-minutes; the local backend runs one job per "
                      f"core): tuning {tune:.0f}, reported method runs {runs:.0f}, over "
                      + ", ".join(f"{s['scenario']} ({s['cost'].get('tuning_min', 0.0):.0f} + "
                                  f"{s['cost'].get('methods_min', 0.0):.0f})" for s in costs)
                      + "; the models behind them (one original per seed, shared by the scenarios, and each "
                      "scenario's oracles and validation models) are in the sections' regime lines and the time "
                      "section below."]
    lines.append("")
    return lines
