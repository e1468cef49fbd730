"""The CIFAR benchmark's tuning-budget evidence: benchmarks/tuning_budget.py's validation comparison (the best among
the first trials) and what the benchmark's doc says when a scenario is also reported at a larger budget
(benchmarks/cifar_budget.py)."""
from __future__ import annotations

import math

BENCHMARK = "classifier_cifar"  # the `bench` fixture (tests/conftest.py) imports benchmarks/classifier_cifar.py


def test_the_budget_comparison_takes_each_best_among_the_first_trials(bench):
    """benchmarks/tuning_budget.py: the best of the first `small` trials (feasible only, lowest value, the earliest
    on ties) against the best of all; a changed choice, the Δ, the order change and the check against the
    benchmark's kept choice are computed from the trials, not assumed."""
    import argparse

    import tuning_budget as tb

    def t(n, value, feasible=True, **params):
        return {"number": n, "value": value, "feasible": feasible, "params": params}

    methods = {"salun": {"trials": [t(0, 3.0, lr=1), t(1, 2.0, lr=2), t(2, 1.0, False, lr=3), t(3, 0.5, lr=4)]},
               "ft": {"trials": [t(0, 1.0, lr=5), t(1, 1.0, lr=6), t(2, 4.0, lr=7), t(3, 2.0, lr=8)]},
               "ga": {"trials": [t(0, math.nan, False, lr=9), t(1, math.nan, False, lr=10), t(2, 9.0, lr=11),
                                 t(3, 8.0, lr=12)]}}
    rows = {r["method"]: r for r in tb.compare(methods, 2, {"salun": {"lr": 2}, "ft": {"lr": 6}, "ga": {}})}
    assert rows["salun"]["small"]["params"] == {"lr": 2} and rows["salun"]["large"]["params"] == {"lr": 4}
    assert rows["salun"]["changed"] and rows["salun"]["delta"] == -1.5  # the infeasible 1.0 is never chosen
    assert rows["salun"]["feasible_small"] == 2 and rows["salun"]["feasible_large"] == 3
    assert rows["ft"]["small"]["params"] == {"lr": 5} and not rows["ft"]["changed"]  # a tie: the earliest trial
    assert rows["ga"]["small"] is None and rows["ga"]["large"]["params"] == {"lr": 12}
    assert rows["salun"]["kept_matches"] is True and rows["ft"]["kept_matches"] is False
    assert rows["ga"]["kept_matches"] is True  # no feasible trial: the benchmark kept no setting either
    tau, small, large = tb.order_change(list(rows.values()))
    assert small == ["ft", "salun"] and large == ["salun", "ft"] and tau == -1.0  # ga: no feasible trial at 2
    args = argparse.Namespace(small=2, large=4, scenario="class:3", results="r", tune_seeds=[0], stratify=True,
                              kept="k.json")
    text = "\n".join(tb.doc_lines(list(rows.values()), args, {"command": "c", "cores": 2, "date": "d"}, 60.0))
    assert "**2 of 3 methods choose another setting with 4 trials** (ga, salun)" in text, text
    assert "NOT for ft: their comparison is void" in text and "tau between" in text and "-1.00" in text, text
    # against the scenario's noise floor: salun gained 1.5 (> 1.0), ga became feasible, ft did not change
    assert tb.beyond(list(rows.values()), 1.0) == ["ga", "salun"] and tb.beyond(list(rows.values()), 2.0) == ["ga"]
    assert tb.beyond(list(rows.values()), None) == []
    text = "\n".join(tb.doc_lines(list(rows.values()), args, {"command": "c", "cores": 2, "date": "d"}, 60.0, 1.0))
    assert "noise floor (1.00 Avg.Gap, two oracles differing only in seed) or newly feasible: 2 (ga, salun)" in text
    from cifar_tuning import by_fields  # the doc groups the improved methods by how many fields they search

    fields = {"ft": 1, "random_label": 1, "salun": 2, "ga": 2, "ssd": 2, "scrub": 4}
    assert by_fields(["salun", "scrub"], fields) == "1 field: 0 of 2; 2 fields: 1 of 3; 4 fields: 1 of 1"


def test_the_doc_says_how_the_reported_verdict_moves_with_the_budget(bench, tmp_path):
    """A scenario reported at a larger budget into `<doc>_budget<N>.md` is compared with the main doc's row by row:
    best, tied set, tau of the reported orders, and moves beyond the noise floor (not the ones inside it); the
    larger-budget doc says it is not the benchmark."""
    import json

    from cifar_budget import budget_header, budget_lines, reported_change

    def summary(budget, means, flags):
        order = sorted(means, key=means.get)
        return {"scenario": "class:3", "floor": 0.1, "tuning": {"budget": budget},
                "rows": {m: {"mean": v, "rank": order.index(m) + 1, "flags": flags.get(m, [])}
                         for m, v in means.items()}}

    small = summary(12, {"ft": 0.8, "scrub": 1.35, "salun": 1.0, "ga": 25.0},
                    {"ft": ["best"], "salun": ["ties best"]})
    large = summary(20, {"ft": 0.82, "scrub": 0.76, "salun": 0.79, "ga": 11.0},
                    {"scrub": ["best"], "salun": ["ties best"], "ft": ["ties best"]})
    c = reported_change(small, large)
    assert c["best"] == ("ft", "scrub") and c["tied"] == (["ft", "salun"], ["scrub", "salun", "ft"])
    assert [m for m, *_ in c["better"]] == ["ga", "salun", "scrub"] and c["worse"] == []  # ft's 0.02: inside
    assert c["n"] == 4 and -1 <= c["tau"] < 1
    out = tmp_path / "bench.md"
    for doc, s in ((tmp_path / "bench" / "scenarios", small), (tmp_path / "bench_budget20" / "scenarios", large)):
        doc.mkdir(parents=True)
        (doc / "class-3.summary.json").write_text(json.dumps(s))
    (tmp_path / "bench" / "tuning_budget_12_20.json").write_text(json.dumps(
        {"scenario": "class:3", "small": 12, "large": 20, "methods": 4, "changed": ["scrub"], "tau": 0.8,
         "floor": 0.1, "beyond_floor": ["scrub"]}))
    text = "\n".join(budget_lines(out, ["ft", "scrub"], lambda m: {"ft": "a", "scrub": "abcd"}[m]))
    assert "**Tuning budget, 12 vs 20 trials**: on val:class:3, 1 of 4 methods" in text, text
    assert "by number of searched fields, 1 field: 0 of 1; 4 fields: 1 of 1." in text, text
    assert ("with the 20-trial choices run for five seeds (`bench_budget20.md`): best ft -> scrub; best or tied "
            "{ft, salun} -> {scrub, salun, ft}") in text, text
    assert "higher: none." in text and "scrub 1.35 -> 0.76" in text and "ft 0.80" not in text, text
    # a larger-budget summary of another budget than the study's is not compared
    (tmp_path / "bench_budget20" / "scenarios" / "class-3.summary.json").write_text(
        json.dumps({**large, "tuning": {"budget": 12}}))
    assert "On the reported forget set" not in "\n".join(budget_lines(out, [], dict))
    assert budget_header(out, 12, 12) == []
    assert "`bench.md` is the benchmark" in budget_header(tmp_path / "bench_budget20.md", 20, 12)[0]
