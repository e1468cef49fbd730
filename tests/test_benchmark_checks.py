"""The CIFAR benchmark's verdict lines (benchmarks/classifier_cifar.py): SalUn's findings are checked against the
right rows (GA's tuned row when a README-lr reference row also exists), a missing method is said, never skipped."""
from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARK = "classifier_cifar"  # the `bench` fixture (tests/conftest.py) imports benchmarks/classifier_cifar.py


def _row(label: str, method: str, gaps: list[float], config: dict | None = None, reference: bool = False) -> dict:
    return {"method": label, "method_name": method, "config": config or {}, "reference": reference,
            "by_seed": {s: {"Avg.Gap": g} for s, g in enumerate(gaps)}, "metrics": {}, "cost": {"mean": 0.1}}


def _board(rows: list[dict]) -> dict:
    return {"rows": rows, "floor": {"primary": {"mean": 0.5}, "metrics": {}}}


def test_salun_check_compares_with_the_tuned_ga_row(bench):
    others = [_row(m, m, [6.0, 6.2, 6.1]) for m in ("ft", "random_label", "influence", "boundary_shrink", "l1_sparse")]
    ga = [_row("ga (lr=0.0026)", "ga", [2.0, 2.1, 2.2], {"lr": 0.0026}),  # the tuned GA beats SalUn
          _row("ga (lr=0.0001)", "ga", [9.0, 9.1, 9.2], {"lr": bench.GA_README_LR})]
    board = _board([_row("salun", "salun", [4.0, 4.1, 4.2]), *others, *ga])
    line = bench.checks(board, [])[0]
    assert "**not reproduced**" in line and "ga: above" in line, line
    from cifar_checks import _row as pick  # the script's sibling module (benchmarks/ is on sys.path)

    assert pick(board, "ga")["config"]["lr"] == 0.0026
    line = bench.checks(_board([_row("salun", "salun", [4.0, 4.1, 4.2]), *others, ga[0] | {
        "by_seed": {s: {"Avg.Gap": g} for s, g in enumerate([7.0, 7.2, 7.1])}}]), [])[0]
    assert "**reproduced**" in line and "ga: below" in line, line


def test_a_missing_method_is_said(bench):
    board = _board([_row("salun", "salun", [4.0, 4.1]), _row("ft", "ft", [6.0, 6.2])])
    line = bench.checks(board, [])[0]
    assert "ga: not run" in line and "**not fully checked (methods not run)**" in line, line


def test_scenario_sections_of_earlier_runs_are_kept(bench, tmp_path):
    """A run writes only its own scenarios' sections; the doc shows every section present in protocol order, each
    with the command of the run that produced it, and its figure links resolve from the doc's folder."""
    import re
    import types
    from importlib.util import module_from_spec, spec_from_file_location

    pytest.importorskip("matplotlib")
    spec = spec_from_file_location("report_records", Path(__file__).parent / "test_report.py")
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "docs" / "bench.md"
    out.parent.mkdir()
    args = types.SimpleNamespace(seeds=[0, 1, 2], budget=12, results=str(tmp_path / "res"), name="exp", backend="local",
                                 workers=2, amp=False, dataset="cifar10-dev", subclass_dataset="cifar10-dev-coarse")
    for forget, command in (("class:1", "python bench A"), ("random:10%", "python bench B")):
        recs = [{**r, "spec": {**r["spec"], "forget": forget}} for r in mod.classifier_records("exp")]
        args.scenarios = [forget]
        log = {"command": command, "cores": 2, "date": "today", "phases": {"reported": 60.0}, "tuning": {},
               "report_s": 60.0}
        bench.write_doc(args, recs, log, out)
    doc = out.read_text()
    first, second = doc.index("### forget random:10%"), doc.index("### forget class:1")
    assert first < second  # protocol order, not the order of the runs
    assert "Run: `python bench B`" in doc[first:second] and "Run: `python bench A`" in doc[second:]
    assert "not yet: random:50%, class:3, class:8, subclass:dog" in doc
    assert (out.parent / "bench" / "scenarios" / "class-1.md").is_file()
    # the summary across scenarios opens the doc, one column per section present, in protocol order
    assert doc.index("## Summary across scenarios") < first
    head = next(ln for ln in doc.splitlines() if ln.startswith("| method | random:10%"))
    assert head.startswith("| method | random:10% | class:1 | best or tied | mean rank |"), head
    noop = next(ln for ln in doc.splitlines() if ln.startswith("| noop |"))
    assert noop.count("✗") == 2, noop  # it changed nothing in both scenarios
    assert (out.parent / "bench" / "scenarios" / "class-1.summary.json").is_file()
    # a later --report-only of class:1 keeps the stamp of the run that computed it, not the log's latest command
    args.scenarios = ["class:1"]
    recs = [{**r, "spec": {**r["spec"], "forget": "class:1"}} for r in mod.classifier_records("exp")]
    bench.write_doc(args, recs, {**log, "command": "python bench C", "runs": {"class:1": {
        "command": "python bench A", "date": "then", "cores": 2, "report_s": 60.0, "scenarios": ["class:1"]}}}, out)
    doc = out.read_text()
    assert "Run: `python bench A` on" in doc and "python bench C`" not in doc.split("## Scenarios")[1]
    bench.write_doc(args, recs, {**log, "command": "python bench D"}, out)  # a log without the scenario's entry:
    doc = out.read_text()  # the stamp its section's summary kept
    assert "Run: `python bench A` on" in doc and "python bench D`" not in doc.split("## Scenarios")[1]
    links = re.findall(r"\]\(([^)]+\.png)\)", doc)
    assert links and all((out.parent / link).is_file() for link in links), links


def _tune_args(tmp_path):
    import types

    return types.SimpleNamespace(dataset="cifar10-dev", subclass_dataset="cifar10-dev-coarse", model="",
                                 scenarios=["class:1"], budget=6, tune_seeds=[0],
                                 stratify=False, name="exp", results=str(tmp_path / "res"),
                                 out=str(tmp_path / "doc.md"), backend="local", workers=2, amp=False)


def test_the_sub_class_scenario_runs_on_the_super_class_dataset(bench, tmp_path):
    """subclass:<name> (and its validation form) needs super-class labels, so its specs, and the key its kept tuning
    outcome must match, name --subclass-dataset; every other scenario, a random share of a class included, --dataset."""
    args = _tune_args(tmp_path)
    for forget, data in (("subclass:dog", "cifar10-dev-coarse"), ("val:subclass:dog", "cifar10-dev-coarse"),
                         ("class:3", "cifar10-dev"), ("subclass:5:50%", "cifar10-dev")):
        assert bench._spec(args, forget, ["ft"], [0]).dataset == data, forget
    assert bench.tuning_key(args, "subclass:dog", ["ft"])["dataset"] == "cifar10-dev-coarse"
    assert bench.tuning_key(args, "class:3", ["ft"])["dataset"] == "cifar10-dev"  # kept outcomes stay valid


def test_each_doc_keeps_its_own_run_log(bench):
    """The run log holds each scenario's chosen settings and the command that ran it; a --report-only takes them
    from there. Two docs over one results store (another --budget) must not share it, or the second run's choices
    would be rewritten into the first doc under its name."""
    assert bench.log_name("docs/benchmark_cifar10.md") == "benchmark_log.json"  # the existing store's log
    assert bench.log_name("docs/benchmark_cifar10_budget20.md") == "benchmark_log-benchmark_cifar10_budget20.json"
    assert bench.log_name("/tmp/a/b.md") != bench.log_name("/tmp/a/c.md")


def test_a_kept_tuning_outcome_is_reused_only_when_it_matches(bench, tmp_path, monkeypatch):
    """The first run tunes and keeps the outcome beside the scenario's section; a later run with the same data,
    model, budget, seeds and methods reuses it without tuning (the store is gone by then); another budget tunes."""

    calls = []

    def fake_tune(spec, methods, **kw):
        calls.append(kw["budget"])
        return {"objective": "Avg.Gap", "utility_floor": 2.0,
                "methods": {m: {"best": {"params": {"lr": 0.01 * kw["budget"]}, "value": 1.0},
                                "sensitivity": {}, "space": bench.current_space(m)} for m in methods}}

    monkeypatch.setattr(bench, "tune_side_by_side", fake_tune)
    monkeypatch.setattr(bench, "execute", lambda *a, **k: None)
    monkeypatch.setattr(bench, "study_cost", lambda *a: [6, 30.0])  # per method
    args = _tune_args(tmp_path)
    log = {"tuning": {}, "command": "python first", "date": "d1"}
    first = bench.phase_tune(args, None, ["ft", "ga"], log)
    assert calls == [6] and first == {"class:1": {"ft": {"lr": 0.06}, "ga": {"lr": 0.06}}}
    kept = tmp_path / "doc" / "scenarios" / "class-1.tuning.json"
    assert kept.is_file() and log["tuning"]["class:1"]["trial_runs"] == 12
    log2 = {"tuning": {}, "command": "python second", "date": "d2"}
    assert bench.phase_tune(args, None, ["ga", "ft"], log2) == first and calls == [6]  # reused, not tuned
    assert log2["tuning"]["class:1"]["trial_s"] == 60.0
    args.budget = 3
    assert bench.phase_tune(args, None, ["ft", "ga"], {"tuning": {}})["class:1"]["ft"] == {"lr": 0.03}
    assert calls == [6, 3]
    args.amp = True  # an outcome tuned in float32 is not reused for a bf16 run, nor the other way round
    assert bench.phase_tune(args, None, ["ft", "ga"], {"tuning": {}})["class:1"]["ft"] == {"lr": 0.03}
    assert calls == [6, 3, 3]


def test_a_method_whose_search_space_changed_is_tuned_again_alone(bench, tmp_path, monkeypatch):
    """A kept outcome chosen over another search space is not reused for that method: it alone is tuned again,
    with the same budget; the other methods' outcomes are kept, and the file says which were retuned and counts
    the kept trials plus the new ones."""
    import json

    tuned, costs = [], iter([[6, 30.0], [6, 30.0], [9, 45.0]])  # ft's study, ssd's, ssd's again

    def fake_tune(spec, methods, **kw):
        tuned.append(sorted(methods))
        return {"objective": "Avg.Gap", "utility_floor": 2.0,
                "methods": {m: {"best": {"params": {"lr": 0.5 if m == "ssd" else 0.1}, "value": 1.0},
                                "sensitivity": {}, "space": bench.current_space(m)} for m in methods}}

    monkeypatch.setattr(bench, "tune_side_by_side", fake_tune)
    monkeypatch.setattr(bench, "execute", lambda *a, **k: None)
    monkeypatch.setattr(bench, "study_cost", lambda *a: next(costs))
    args = _tune_args(tmp_path)
    bench.phase_tune(args, None, ["ft", "ssd"], {"tuning": {}, "command": "python first", "date": "d1"})
    path = tmp_path / "doc" / "scenarios" / "class-1.tuning.json"
    kept = json.loads(path.read_text())
    kept["tuning"]["methods"]["ssd"]["space"]["selection_weighting"] = ["choice", 0.1, 1.0, 10.0, 50.0]  # older
    kept["chosen"]["ssd"] = {"stale": True}
    path.write_text(json.dumps(kept))
    assert bench.stale_methods(kept, ["ft", "ssd"]) == ["ssd"]
    log = {"tuning": {}, "command": "python second", "date": "d2"}
    chosen = bench.phase_tune(args, None, ["ft", "ssd"], log)
    assert tuned == [["ft", "ssd"], ["ssd"]]
    assert chosen == {"class:1": {"ft": {"lr": 0.1}, "ssd": {"lr": 0.5}}}
    after = json.loads(path.read_text())
    assert after["chosen"] == chosen["class:1"] and after["command"] == "python first"
    # the cost is that of the studies behind the chosen settings: ft's kept one and ssd's new one
    assert after["tuning"]["retuned"] == ["ssd"] and after["tuning"]["trial_runs"] == 6 + 9
    assert after["tuning"]["methods"]["ssd"]["space"] == bench.current_space("ssd")
    assert bench.phase_tune(args, None, ["ft", "ssd"], {"tuning": {}}) == chosen and len(tuned) == 2  # now kept


def test_the_ga_check_reads_the_frozen_batchnorm_row_beside_the_reference_one(bench):
    """GA at the README lr runs with the reference codes' train-mode BatchNorm and with frozen statistics: the
    verdict is the reference row's; the frozen row's UA shift is said beside it."""
    def rec(method, seed, ua, config=None):
        return {"spec": {"method": method, "seed": seed, "config": config or {}}, "metrics": {"UA": ua}}

    records = [rec("original", s, 2.0) for s in (0, 1)]
    records += [rec("ga", s, 80.0, {"lr": bench.GA_README_LR, "bn_stats": "update"}) for s in (0, 1)]
    records += [rec("ga", s, 40.0, {"lr": bench.GA_README_LR, "bn_stats": "frozen"}) for s in (0, 1)]
    records += [rec("ga", s, 99.0, {"lr": 0.003, "bn_stats": "frozen"}) for s in (0, 1)]  # the tuned row
    line = next(ln for ln in bench.checks(_board([]), records) if ln.startswith("- GA barely"))
    assert "**not reproduced**" in line and "UA moves 78.00" in line and "frozen" in line and "it moves 38.00" in line


def test_the_report_holds_the_runs_of_the_current_settings_only(bench, tmp_path):
    """Runs of the same experiment name made with an earlier setting (a superseded tuning outcome) stay in the
    store but are not rows of the report: it holds the current specs' runs and noise floors, nothing else."""
    from unlearnlab.engine.runner import execute
    from unlearnlab.spec import from_dict
    from unlearnlab.store import Store

    store = Store(tmp_path / "res")
    base = {"dataset": "blobs", "model": "mlp", "recipe": {"epochs": 3}, "forget": "random:10%", "seeds": [0, 1],
            "name": "exp", "methods": ["ft"]}
    old = from_dict({**base, "overrides": {"ft": {"epochs": 1, "lr": 0.05}}})
    new = from_dict({**base, "overrides": {"ft": {"epochs": 1, "lr": 0.01}}})
    execute([old], store=store)
    execute([new], store=store)
    rows = bench.reported_records(store, [new])
    ft = [r for r in rows if r["spec"]["method"] == "ft"]
    assert len(ft) == 2 and {r["spec"]["config"]["lr"] for r in ft} == {0.01}
    assert {r["spec"]["method"] for r in rows} == {"original", "retrain", "ft", "oracle-floor"}
    assert len(store.list_runs()) > len(rows)  # the superseded runs are still stored


def test_rl_over_forgetting_is_checked_on_random_forgetting_only(bench):
    """SalUn's 'RL over-forgets' finding is about random forgetting: a class scenario says it does not apply (with
    the oracle's MIA-Eff) instead of calling it not reproduced."""
    def row(method, mia):
        return {**_row(method, method, [1.0, 1.0], reference=method == "retrain"),
                "metrics": {"MIA-Eff": {"mean": mia}}}

    board = _board([row("retrain", 100.0), row("random_label", 100.0)])
    for forget, word in (("class:1", "**not applicable**"), ("random:10%", "**not reproduced**")):
        records = [{"spec": {"method": "ft", "seed": 0, "forget": forget, "config": {}}, "metrics": {"UA": 1.0}}]
        line = next(ln for ln in bench.checks(board, records) if ln.startswith("- RL over-forgets"))
        assert word in line, line


def test_the_summary_ranks_each_methods_selected_setting(bench):
    """Across scenarios a method is its selected setting: GA's tuned row, not the README-lr rows of the check;
    ranks are among those rows; bold marks best or tied, ✗ a method that did not forget."""
    from cifar_summary import scenario_summary, summary_lines

    def row(label, method, mean, flags=(), lr=None, reference=False):
        return {"method": label, "method_name": method, "config": {"lr": lr} if lr else {}, "reference": reference,
                "primary": {"mean": mean, "lo": mean - 1, "hi": mean + 1}, "flags": list(flags)}

    board = {"primary": "Avg.Gap", "floor": {"primary": {"mean": 0.4}},
             "rows": [row("original", "original", 9.0, reference=True),
                      row("ga (lr=0.0001)", "ga", 1.0, ["best"], lr=bench.GA_README_LR),
                      row("salun", "salun", 2.0, ["ties best"]), row("ga (lr=0.003)", "ga", 3.0, lr=0.003),
                      row("ssd", "ssd", 8.9, ["DID NOT FORGET"])]}
    a = scenario_summary(board, "class:1", "cmd", "today", {"tuning_min": 50.0, "methods_min": 120.0})
    assert a["rows"]["ga"]["label"] == "ga (lr=0.003)" and a["rows"]["ga"]["rank"] == 2
    assert a["rows"]["salun"]["rank"] == 1 and a["floor"] == 0.4 and a["original"] == 9.0
    b = {**a, "scenario": "class:3", "rows": {**a["rows"], "ga": {**a["rows"]["ga"], "rank": 1, "flags": ["best"]}},
         "tuning": {"budget": 6, "stratify": True}}
    lines = summary_lines([a, b], 6)
    text = "\n".join(lines)
    assert "| salun | **2.00** (1) | **2.00** (1) | 2 of 2 | 1.0 |" in text, text
    assert "| ga | 3.00 (2) | **3.00** (1) | 1 of 2 | 1.5 |" in text, text
    assert "| ssd | 8.90 (3) ✗ | 8.90 (3) ✗ | 0 of 2 | 3.0 |" in text, text
    assert "| noise floor (oracle vs oracle) | 0.40 | 0.40 | | |" in text
    assert "| tuning: trials per method, start-up draws | ? | 6, stratified | | |" in text, text  # a says nothing
    assert "| tuning: validation order vs reported order (Kendall's tau) | ? | ? | | |" in text, text
    assert "tuning 100, reported method runs 240, over class:1 (50 + 120), class:3 (50 + 120)" in text, text
    assert ("Reading (computed from the table): salun is best or tied with the best in every scenario; lowest "
            "mean rank: salun (1.0). Never best or tied: ssd. Did not forget in at least one scenario (✗): ssd (2 "
            "of 2). With 2 of 6 scenarios so far") in text, text
    c = {**b, "rows": {**b["rows"], "salun": {**b["rows"]["salun"], "flags": []}}}
    assert "no method is best or tied with the best in every scenario; most often ga, salun (1 of 2)" in \
        "\n".join(summary_lines([a, c]))


def test_the_tpe_start_up_the_doc_states_is_optunas(bench):
    """The tuning line says 6 trials are TPE's random start-up: true only while Optuna's default is what we say."""
    import inspect

    optuna = pytest.importorskip("optuna")
    from cifar_tuning import TPE_STARTUP

    assert inspect.signature(optuna.samplers.TPESampler).parameters["n_startup_trials"].default == TPE_STARTUP


def test_the_tuning_table_says_how_the_validation_order_carries_over(bench):
    """Beside each chosen setting its reported Avg.Gap, and Kendall's tau between the methods' validation and
    reported orders, naming the methods that move 3 or more places; a method without a feasible trial is left out."""
    from cifar_tuning import tuning_lines

    sens = {"n_feasible": 6, "n_trials": 6, "median": 1.0, "iqr": 0.5}
    val = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}
    tuned = {"budget": 12, "seeds": [0], "objective": "Avg.Gap", "utility_floor": 2.0, "seconds": 60.0,
             "stratify": True, "methods": {**{m: {"best": {"params": {"lr": 0.1}, "value": v}, "sensitivity": sens}
                                             for m, v in val.items()},
                                          "f": {"best": None, "note": "no feasible trial", "sensitivity": sens}}}
    same = {m: 10 * v for m, v in val.items()} | {"f": 0.5}
    lines, tr = tuning_lines("class:1", tuned, 72, 600.0, same)
    assert tr["tau"] == pytest.approx(1.0) and tr["n"] == 5 and tr["moves"] == [] and tr["worse"] == []
    text = "\n".join(lines)
    assert "| a | {'lr': 0.1} | 1.00 | 10.00 | 6/6 | 1.00 | 0.50 |" in text, text
    assert "| f | no feasible trial | nan | 0.50 |" in text, text
    assert "proposed by TPE" in text  # 12 trials: past the random start-up
    flipped = {"a": 50.0, "b": 20.0, "c": 30.0, "d": 40.0, "e": 10.0}  # a: 1st -> 5th, e: 5th -> 1st
    lines, tr = tuning_lines("class:1", tuned, 72, 600.0, flipped)
    assert tr["tau"] == pytest.approx(-0.4) and [m for m, *_ in tr["moves"]] == ["a", "e"], tr
    assert "a 1 -> 5; e 5 -> 1" in "\n".join(lines)
    # ranks kept, but d's gap grows 8-fold where the others' grow 1.5-fold: its choice did not carry over
    lines, tr = tuning_lines("class:1", tuned, 72, 600.0, {m: 1.5 * v for m, v in val.items()} | {"d": 32.0})
    assert tr["moves"] == [] and tr["ratio"] == pytest.approx(1.5) and tr["worse"] == [("d", 4.0, 32.0)], tr
    assert "did not carry over: d 4.00 -> 32.00." in "\n".join(lines)
