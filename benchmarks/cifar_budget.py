"""What the CIFAR benchmark's doc says about its tuning budget (benchmarks/classifier_cifar.py write_doc).

Two kinds of evidence, both computed from files other commands wrote:
- the validation studies of benchmarks/tuning_budget.py (`<doc>/tuning_budget*.json`): how many methods choose
  another setting when their study runs more trials, and how many of those improve beyond the noise floor;
- a scenario reported at a larger budget into its own doc (`<doc>_budget<N>.md`, the benchmark's command with
  `--budget N --out ...`): whether the verdict on the reported forget set moves, not just the validation choice.
  The two scenario summaries (`scenarios/<slug>.summary.json`) are compared method by method: the best, the set
  tied with the best (paired intervals, as the tables flag them), Kendall's tau between the reported orders, and
  the methods whose reported Avg.Gap moved by more than the scenario's noise floor.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from cifar_tuning import by_fields
from report_doc import slug


def tied(summary: dict) -> list[str]:
    """The methods flagged best or tied with the best, in rank order."""
    rows = summary["rows"]
    return sorted((m for m, r in rows.items() if "best" in r["flags"] or "ties best" in r["flags"]),
                  key=lambda m: (rows[m]["rank"], m))


def reported_change(small: dict, large: dict) -> dict:
    """The same scenario's summaries at two budgets -> {'best': (small's, large's), 'tied': (lists), 'tau' (Kendall's,
    reported orders over the methods in both; nan below 3), 'better'/'worse': [(method, small mean, large mean)]
    whose reported mean moved by more than the small run's noise floor}."""
    from scipy.stats import kendalltau
    a, b = small["rows"], large["rows"]
    both = sorted(m for m in a if m in b and math.isfinite(a[m]["mean"]) and math.isfinite(b[m]["mean"]))
    tau = float(kendalltau([a[m]["mean"] for m in both], [b[m]["mean"] for m in both]).statistic) \
        if len(both) >= 3 else math.nan
    floor = small["floor"]
    moved = [(m, a[m]["mean"], b[m]["mean"]) for m in both]

    def first(rows: dict) -> str | None:
        return min(rows, key=lambda m: (rows[m]["rank"], m)) if rows else None
    return {"best": (first(a), first(b)), "tied": (tied(small), tied(large)), "tau": tau, "n": len(both),
            "floor": floor, "better": [t for t in moved if t[1] - t[2] > floor],
            "worse": [t for t in moved if t[2] - t[1] > floor]}


def _moves(ts: list[tuple[str, float, float]]) -> str:
    return ", ".join(f"{m} {x:.2f} -> {y:.2f}" for m, x, y in ts) or "none"


def reported_line(c: dict, large: int, where: str) -> str:
    """One sentence on how the reported verdict of a scenario moved between two budgets (`where`: the larger doc)."""
    return (f" On the reported forget set, with the {large}-trial choices run for five seeds (`{where}`): "
            f"best {c['best'][0]} -> {c['best'][1]}; best or tied {{{', '.join(c['tied'][0])}}} -> "
            f"{{{', '.join(c['tied'][1])}}}; Kendall's tau between the reported orders {c['tau']:.2f} "
            f"({c['n']} methods); reported Avg.Gap lower by more than the noise floor ({c['floor']:.2f}): "
            f"{_moves(c['better'])}; higher: {_moves(c['worse'])}.")


def budget_lines(out: Path, ran: list[str], space: Callable[[str], dict]) -> list[str]:
    """The doc's paragraph per tuning-budget study kept beside `out`, with the reported comparison where the
    scenario was also reported at the larger budget; `ran`: the methods with runs, `space`: a method's search
    space (its number of fields groups the improved methods)."""
    lines = []
    studies = sorted(out.with_suffix("").glob("tuning_budget*.json"), key=lambda p: len(p.stem))
    for path in studies:
        b = json.loads(path.read_text())
        line = (f"**Tuning budget, {b['small']} vs {b['large']} trials**: on val:{b['scenario']}, "
                f"{len(b['changed'])} of {b['methods']} methods choose another setting with {b['large']} "
                f"trials than with the first {b['small']} of them ({', '.join(b['changed']) or 'none'}; "
                f"Kendall's tau of the methods' validation orders {b['tau']:.2f})"
                + (f"; improved by more than the scenario's noise floor ({b['floor']:.2f}) or newly feasible: "
                   f"{', '.join(b['beyond_floor']) or 'none'}; by number of searched fields, "
                   + by_fields(b["beyond_floor"], {m: len(space(m)) for m in ran})
                   if b.get("floor") is not None else "") + ". "
                f"`{path.parent.name}/{path.stem}.md` (benchmarks/tuning_budget.py).")
        name = f"{slug(b['scenario'])}.summary.json"
        here, there = out.with_suffix("") / "scenarios" / name, \
            out.with_name(f"{out.stem}_budget{b['large']}") / "scenarios" / name
        if here.is_file() and there.is_file():
            small, large = json.loads(here.read_text()), json.loads(there.read_text())
            if (small.get("tuning") or {}).get("budget") == b["small"] \
                    and (large.get("tuning") or {}).get("budget") == b["large"]:
                line += reported_line(reported_change(small, large), b["large"],
                                      f"{out.stem}_budget{b['large']}.md")
        lines += ["", line]
    if studies:
        lines += ["", "A method whose validation best still improves beyond the noise floor with more trials was not "
                      "tuned to convergence at the smaller budget, so its reported row may understate it. The "
                      "summary's tuning row gives each column's budget."]
    return lines


def budget_header(out: Path, budget: int, default: int) -> list[str]:
    """For a doc written at another budget than the benchmark's default: say so, and name the main doc."""
    if budget == default or budget <= 0:
        return []
    main = out.name.split("_budget")[0].removesuffix(".md") + ".md"
    return [f"**Tuning budget {budget} trials per method** (`--budget {budget}`), not the benchmark's {default}: "
            f"this doc runs the protocol of `{main}` at another budget, to see whether its verdicts depend on how "
            f"far the methods were tuned; `{main}` is the benchmark.", ""]
