"""Reports: leaderboards (ranking, t-intervals, paired differences, noise floor, flags), files, figures,
runs_frame and the `unlearnlab report` command, over hand-made run records (no training)."""
from __future__ import annotations

import math
import re
import sys

import pytest
from typer.testing import CliRunner

from unlearnlab.cli import app
from unlearnlab.engine.report import build_report, interval, leaderboard, runs_frame, scenarios
from unlearnlab.errors import ConfigError
from unlearnlab.store import Store

T975_DF2 = 4.302652729911275  # Student-t 97.5% quantile, 2 degrees of freedom (tables)
T975_DF1 = 12.706204736174707  # ... 1 degree of freedom
SEEDS = (0, 1, 2)
# Avg.Gap per seed, and (UA, RA, TA, MIA-Eff) of seed 0 (other seeds shift every metric by +seed).
CLS = {
    "original": ([6.0, 6.5, 7.0], (1.0, 99.0, 96.0, 60.0), 0.0, None),
    "retrain": ([0.0, 0.0, 0.0], (8.0, 98.0, 95.0, 40.0), 1.0, 900),
    "ga": ([3.0, 4.0, 5.0], (20.0, 90.0, 88.0, 30.0), 0.05, 50),
    "ft": ([0.3, 0.7, 0.5], (8.2, 97.5, 94.8, 40.5), 0.2, 200),
    "salun": ([0.5, 0.6, 1.0], (7.5, 98.2, 94.4, 41.0), 0.3, 300),
    "noop": ([6.0, 6.5, 7.0], (1.0, 99.0, 96.0, 60.0), 0.01, None),
}
FLOOR_GAPS = {0: 0.5, 1: 0.7}  # oracle-floor runs: seed 0 vs 1, seed 1 vs 2
LM = {  # Forget Quality per seed, Model Utility
    "original": ([1e-5, 2e-5], 0.60), "retrain": ([1.0, 1.0], 0.58), "ga": ([0.01, 0.02], 0.30),
    "npo": ([0.5, 0.3], 0.50), "idk": ([0.1, 0.2], 0.55),
}


def _details(seed: int, shift: float) -> dict:
    acc = [min(100.0, 80.0 + 2 * c + shift) for c in range(10)]
    return {"per_class_acc": {"forget": [None if c == 3 else a for c, a in enumerate(acc)], "retain": acc,
                              "test": [a - 5 for a in acc]},
            "hist": {"score": "p(true class)", "bins": [i / 20 for i in range(21)],
                     "forget": [int(1 + (i * (seed + 3) + shift) % 9) for i in range(20)],
                     "test": [int(1 + (i * 5 + seed) % 7) for i in range(20)]}}


def _record(i: int, spec: dict, metrics: dict, timings: dict, **extra) -> dict:
    return {"id": f"{i:04x}" + "ab" * 4, "created": f"2025-01-01T00:00:{i:02d}", "status": "completed", "spec": spec,
            "metrics": metrics, "timings": timings, "memory": {}, "env": {}, **extra}


def classifier_records(name: str = "exp") -> list[dict]:
    """3 seeds of original/retrain/ga/ft/salun/noop plus 2 oracle-floor runs (digits, random:10%)."""
    base = {"task": "classifier", "dataset": "digits", "forget": "random:10%", "split_seed": 0, "model": "mlp",
            "recipe": {"epochs": 5}, "name": name}
    recs = []
    for seed in SEEDS:
        for method, (gaps, vals, cost, steps) in CLS.items():
            metrics = dict(zip(("UA", "RA", "TA", "MIA-Eff"), (v + seed for v in vals)))
            metrics.update({"Avg.Gap": gaps[seed], "RTE": cost * 10, "RTE/retrain": cost})
            timings = {"wall_s": cost * 10, "cpu_s": cost * 10, **({"opt_steps": steps} if steps else {})}
            spec = {**base, "method": method, "config": {"lr": 0.01} if method == "ga" else {}, "seed": seed}
            extra = {"details": _details(seed, len(recs) % 5)} if method != "noop" else {}
            if method == "ft" and seed == 0:
                extra["curves"] = {"loss": [[0, 2.0], [10, 1.0], [20, 0.5]]}
            recs.append(_record(len(recs), spec, metrics, timings, **extra))
        if seed in FLOOR_GAPS:
            metrics = {"UA": 8.5 + seed, "RA": 97.6 + seed, "TA": 95.3 + seed, "MIA-Eff": 39.0 + seed,
                       "Avg.Gap": FLOOR_GAPS[seed]}
            spec = {**base, "method": "oracle-floor", "config": {"other_seed": seed + 1}, "seed": seed}
            recs.append(_record(len(recs), spec, metrics, {"wall_s": 0.0, "cpu_s": 0.0, "opt_steps": 0}))
    return recs


def lm_records() -> list[dict]:
    """2 seeds of an LM (task qa) scenario."""
    base = {"task": "qa", "dataset": "qa", "forget": "10%", "split_seed": 0, "model": "smollm2", "recipe": {},
            "config": {}, "name": ""}
    recs = []
    for seed in (0, 1):
        for method, (fq, mu) in LM.items():
            metrics = {"Forget Quality": fq[seed], "Model Utility": mu + 0.01 * seed,
                       "forget_ROUGE": 0.9 - fq[seed] / 2, "retain_ROUGE": 0.8, "PrivLeak": -10.0, "RTE": 5.0,
                       "RTE/retrain": 0.1 if method != "retrain" else 1.0}
            recs.append(_record(100 + len(recs), {**base, "method": method, "seed": seed}, metrics, {"wall_s": 5.0}))
    return recs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, build_report(classifier_records() + lm_records(), out, title="Test report", command="pytest")


def _board(result, task):
    return next(b for b in result["scenarios"] if b["task"] == task)


def _row(board, method):
    return next(r for r in board["rows"] if r["method"] == method)


def test_interval_matches_hand_computation():
    st = interval([3.0, 4.0, 5.0])
    half = T975_DF2 * 1.0 / math.sqrt(3)
    assert st["n"] == 3 and st["mean"] == pytest.approx(4.0)
    assert (st["lo"], st["hi"]) == pytest.approx((4.0 - half, 4.0 + half))
    one = interval([2.0, float("nan")])
    assert one["n"] == 1 and one["mean"] == 2.0 and math.isnan(one["lo"])


def test_classifier_ranking_intervals_floor_and_flags(built):
    board = _board(built[1], "classifier")
    assert [r["method"] for r in board["rows"]] == ["retrain", "original", "ft", "salun", "ga", "noop"]
    assert [r["rank"] for r in board["rows"]] == [None, None, 1, 2, 3, 4]
    assert board["best"] == "ft" and board["metrics"] == ["UA", "RA", "TA", "MIA-Eff"]
    ga = _row(board, "ga")
    half = T975_DF2 / math.sqrt(3)  # sd of [3, 4, 5] is 1
    assert ga["n"] == 3 and ga["primary"]["mean"] == pytest.approx(4.0)
    assert (ga["primary"]["lo"], ga["primary"]["hi"]) == pytest.approx((4.0 - half, 4.0 + half))
    # paired by seed: salun - ft = [0.2, -0.1, 0.5], mean 0.2, sd 0.3
    d = _row(board, "salun")["diff_to_best"]
    assert d["mean"] == pytest.approx(0.2) and d["seeds"] == [0, 1, 2]
    half = T975_DF2 * 0.3 / math.sqrt(3)
    assert (d["lo"], d["hi"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert _row(board, "ga")["diff_to_best"]["lo"] > 0
    assert ga["cost"]["mean"] == pytest.approx(0.05) and ga["opt_steps"]["mean"] == 50
    assert math.isnan(_row(board, "noop")["opt_steps"]["mean"])  # old record without opt_steps
    # noise floor: Avg.Gap of the two oracle-floor runs, per-metric |floor - oracle of the same seed|
    f = board["floor"]
    assert f["n"] == 2 and f["primary"]["mean"] == pytest.approx(0.6)
    assert f["primary"]["hi"] - f["primary"]["mean"] == pytest.approx(T975_DF1 * math.sqrt(0.02) / math.sqrt(2))
    assert f["metrics"]["UA"]["mean"] == pytest.approx(0.5) and f["metrics"]["TA"]["mean"] == pytest.approx(0.3)
    assert sorted(f["pairs"]) == [[0, 1], [1, 2]]
    assert _row(board, "ft")["flags"] == ["best", "within noise floor"]
    assert _row(board, "salun")["flags"] == ["ties best"]
    assert _row(board, "ga")["flags"] == []
    assert "CHANGED NOTHING" in _row(board, "noop")["flags"]
    assert not any("CHANGED NOTHING" in r["flags"] for r in board["rows"] if r["method"] != "noop")
    assert _row(board, "retrain")["primary"]["mean"] == 0.0


def test_lm_ranked_by_forget_quality(built):
    board = _board(built[1], "qa")
    assert board["primary"] == "Forget Quality" and board["higher_is_better"]
    assert [r["method"] for r in board["rows"]] == ["retrain", "original", "npo", "idk", "ga"]
    assert board["metrics"] == ["Model Utility", "forget_ROUGE", "retain_ROUGE", "PrivLeak"]
    npo = _row(board, "npo")
    half = T975_DF1 * math.sqrt(0.02) / math.sqrt(2)
    assert (npo["primary"]["lo"], npo["primary"]["hi"]) == pytest.approx((0.4 - half, 0.4 + half))
    assert _row(board, "idk")["diff_to_best"]["mean"] == pytest.approx(-0.25)
    assert board["floor"] is None and "best" in npo["flags"]


def test_tuned_settings_are_separate_rows():
    recs = classifier_records("tune")
    extra = [dict(r, id=f"ff{i:02d}", spec={**r["spec"], "config": {"lr": 0.001}}, metrics={**r["metrics"], "UA": 50})
             for i, r in enumerate(recs) if r["spec"]["method"] == "ga"]
    board = leaderboard(scenarios(recs + extra)[0])
    labels = {r["method"] for r in board["rows"]}
    assert {"ga (lr=0.01)", "ga (lr=0.001)", "ft"} <= labels


def test_files_markdown_and_html(built):
    out, result = built
    md = result["markdown"].read_text()
    assert result["markdown"] == out / "report.md" and md.startswith("# Test report")
    assert "`pytest`" in md and "CHANGED NOTHING" in md and "Noise floor" in md and "ties the best" in md
    assert "| 3 | ga | 3 | 4 [" in md and "noise floor (oracle vs oracle)" in md
    assert md.count("![") == len(result["figures"]) // 2
    page = result["html"].read_text()
    assert page.count("data:image/png;base64,") == len(result["figures"]) // 2
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page)
    assert "http://" not in page and "https://" not in page and "<style>" in page


def test_figures_are_real_png_and_svg(built):
    out, result = built
    pngs = [p for p in result["figures"] if p.suffix == ".png"]
    kinds = {p.stem.split("-", 2)[-1] for p in pngs}
    assert {"digits-random-10-mlp-exp-accuracy", "digits-random-10-mlp-exp-cost"} <= {p.stem.split("-", 1)[1]
                                                                                       for p in pngs}
    assert any(k.endswith("per-class") for k in kinds) and any(k.endswith("mia-hist") for k in kinds)
    assert any(k.endswith("curves") for k in kinds) and any(k.endswith("quality") for k in kinds)
    for p in result["figures"]:
        assert p.parent == out / "figures" and p.stat().st_size > 1024
        head = p.read_bytes()[:400]
        assert head.startswith(b"\x89PNG\r\n\x1a\n") if p.suffix == ".png" else b"<svg" in head


def test_a_long_legend_goes_beside_the_axes():
    """With a benchmark's many rows the legend sits beside the axes (the figure widened), never over the points."""
    pytest.importorskip("matplotlib")
    from unlearnlab.engine.figures import LEGEND_INSIDE, _styles, fig_accuracy, fig_per_class

    recs = classifier_records("many")
    extra = [dict(r, id=f"lr{k}{i:02d}", spec={**r["spec"], "config": {"lr": 10.0 ** -k}})
             for k in range(3, 3 + 2 * LEGEND_INSIDE) for i, r in enumerate(recs) if r["spec"]["method"] == "ga"]
    sc = scenarios(recs + extra)[0]
    board = leaderboard(sc)
    assert len(board["rows"]) > LEGEND_INSIDE
    fig = fig_accuracy(board, sc)
    ax = fig.axes[0]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out (constrained layout) as saving it does
    renderer = canvas.get_renderer()
    legend, frame = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.x0 >= frame.x1 and fig.get_figwidth() > 6.4
    styles = _styles(board)
    assert len(set(v[:2] for v in styles.values())) == len(styles)  # no two rows share marker and colour
    per = fig_per_class(board, sc)
    assert per.legends and not any(a.get_legend() for a in per.axes)  # one legend beside both panels
    small = leaderboard(scenarios(classifier_records("few"))[0])
    ax = fig_accuracy(small, scenarios(classifier_records("few"))[0]).axes[0]
    assert ax.get_legend() is not None and ax.figure.get_figwidth() == 6.4  # short: inside, as before


def test_missing_matplotlib_and_pandas_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"pip install 'unlearnlab\[report\]'"):
        build_report(classifier_records(), tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigError, match=r"pip install 'unlearnlab\[report\]'"):
        runs_frame(tmp_path)


def test_no_records_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no completed run records"):
        build_report([{"spec": {"method": "ga"}, "status": "failed"}], tmp_path)


@pytest.fixture
def store(tmp_path):
    st = Store(tmp_path / "results")
    for r in classifier_records()[:7]:  # seed 0: original, retrain, ga, ft, salun, noop, oracle-floor
        st.add_run({k: v for k, v in r.items() if k not in ("id", "created")})
    yield st
    st.close()


def test_runs_frame(store):
    df = runs_frame(store)
    assert df.shape[0] == 7
    assert {"id", "spec.method", "spec.seed", "metrics.UA", "metrics.Avg.Gap", "timings.wall_s"} <= set(df.columns)
    assert set(df["spec.method"]) == {"original", "retrain", "ga", "ft", "salun", "noop", "oracle-floor"}
    assert runs_frame(store, method="ga").shape[0] == 1
    assert runs_frame(store, method=["ga", "ft"], metrics__UA=lambda v: v > 10).shape[0] == 1
    with pytest.raises(ConfigError, match="Did you mean"):
        runs_frame(store, methd="ga")


def test_cli_report(store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "rep"
    r = runner.invoke(app, ["report", "--results", str(store.root), "--out", str(out), "--title", "T"])
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(out / "report.md"), str(out / "report.html")]
    assert "unlearnlab report --out" in (out / "report.md").read_text()
    ga_id = store.list_runs(method="ga")[0]["id"]
    r = runner.invoke(app, ["report", "exp", ga_id[:6], "--results", str(store.root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "nosuchexperiment", "--results", str(store.root), "--out", str(out)])
    assert r.exit_code == 2 and "neither an experiment name" in r.stderr


def test_cli_report_help_has_example():
    r = CliRunner().invoke(app, ["report", "--help"])
    assert r.exit_code == 0 and "Example: unlearnlab report" in r.output


def test_cli_report_without_runs_exits_2(tmp_path):
    r = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "No runs" in r.stderr and "runs.sqlite" in r.stderr
    assert not (tmp_path / "o" / "report.md").exists() and not (tmp_path / "empty").exists()


def test_api_report(store, tmp_path):
    from unlearnlab import api

    result = api.report(["exp"], store=store, out=tmp_path / "a")
    assert result["html"].exists() and len(result["scenarios"]) == 1
    assert api.runs_frame(store, method="ft").shape[0] == 1


def test_reading_nothing_to_forget_and_record_warnings():
    from unlearnlab.engine.report import reading

    board = leaderboard(scenarios(classifier_records())[0])
    line = reading(board)
    assert "original remembers the forget set (UA 2" in line and "retrained oracle 9" in line
    assert "closest to retraining: ft" in line and "tied with salun" in line
    assert "within the noise floor (Avg.Gap 0.6" in line and ": ft" in line
    assert "changed nothing or too little: noop" in line
    assert "NOTHING TO FORGET" not in _row(board, "original")["flags"]
    # an original whose forget accuracy is as close to the oracle's as a second oracle is: nothing to forget
    recs = classifier_records("same")
    for r in recs:
        if r["spec"]["method"] == "original":
            r["metrics"]["UA"] = 8.2 + r["spec"]["seed"]
        if r["spec"]["method"] == "ga":
            r["warnings"] = ["ga predicts the same class as the original on every example"]
            r["method_info"] = {"selected_fraction": 0.25, "note": "text is not averaged"}
    board = leaderboard(scenarios(recs)[0])
    assert "NOTHING TO FORGET" in _row(board, "original")["flags"]
    assert reading(board).startswith("the original has nothing to forget (UA 9.2")
    ga = _row(board, "ga")
    assert ga["warnings"] == ["ga predicts the same class as the original on every example"]
    assert ga["info"] == {"selected_fraction": 0.25}
    assert "ga" in reading(board).split("changed nothing or too little:")[1]


def test_setting_labels_round_floats_unless_that_merges_two():
    import json

    from unlearnlab.engine.report import _setting_diff

    def setting(lr: float) -> str:
        return json.dumps({"config": {"lr": lr}, "recipe": {}}, sort_keys=True)

    a, b, c = setting(0.0026054256939914973), setting(1e-4), setting(0.00260549)
    assert _setting_diff(a, [a, b]) == "lr=0.00261" and _setting_diff(b, [a, b]) == "lr=0.0001"
    assert _setting_diff(a, [a, b, c]) == "lr=0.0026054256939914973"  # 3 digits would give a and c one label


def test_a_method_that_did_not_move_the_forget_metric_is_flagged(tmp_path):
    """A near no-op: its weights and RA/TA changed (so not CHANGED NOTHING) but its UA stayed within the two-oracle
    floor of UA (0.5) of the original's. It is flagged, named in the reading and explained in the report; a method
    that moved UA by more (ga, +19) is not."""
    from unlearnlab.engine.reading import reading

    recs = classifier_records("weak")
    weak = [dict(r, id=f"ee{i:02d}", spec={**r["spec"], "method": "weak"},
                 metrics={**r["metrics"], "UA": r["metrics"]["UA"] + 0.3, "RA": r["metrics"]["RA"] - 5.0})
            for i, r in enumerate(recs) if r["spec"]["method"] == "original"]
    result = build_report(recs + weak, tmp_path, title="weak")
    board = _board(result, "classifier")
    assert "DID NOT FORGET" in _row(board, "weak")["flags"] and "CHANGED NOTHING" not in _row(board, "weak")["flags"]
    assert not any("DID NOT FORGET" in r["flags"] for r in board["rows"] if r["method"] in ("ga", "ft", "salun"))
    assert "changed nothing or too little: noop, weak" in reading(board)
    assert "**weak: DID NOT FORGET**" in result["markdown"].read_text()


def test_a_near_no_op_is_flagged_when_the_forget_metric_has_a_zero_floor():
    """Class forgetting: every oracle has UA 100, so the two-oracle floor of UA is exactly 0 and any move, however
    small, would clear it. A method that moved UA by 0.2 of the original's 98-point distance to the oracle (under
    5%) did not forget; one that moved it by 40 did."""
    from unlearnlab.engine.reading import did_not_forget
    from unlearnlab.engine.report import KINDS

    def row(*uas):
        return {"by_seed": {s: {"UA": u} for s, u in enumerate(uas)}}

    kind, floor = KINDS["classifier"], {"metrics": {"UA": {"mean": 0.0, "hi": 0.0}}}
    original, oracle = row(2.0, 2.2), row(100.0, 100.0)
    assert did_not_forget(row(2.2, 2.4), original, floor, kind, oracle)
    assert not did_not_forget(row(42.0, 45.0), original, floor, kind, oracle)
    assert not did_not_forget(row(2.2, 2.4), original, floor, kind)  # without the oracle row: the floor alone
