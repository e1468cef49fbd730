"""benchmarks/lm_tofu.py --quick end to end on the tiny model: seeds, intervals, floor, matched forgetting, resume."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lm_tofu.py"


def _load():
    spec = importlib.util.spec_from_file_location("lm_tofu_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_benchmark_writes_report_and_resumes(tmp_path, capsys):
    from unlearnlab.store import Store

    bench = _load()
    out, results = tmp_path / "report.md", tmp_path / "results"
    argv = ["--quick", "--seeds", "2", "--methods", "ga,npo,rmu", "--epochs", "2", "--results", str(results),
            "--out", str(out)]
    assert bench.main(argv) == 0
    text = out.read_text()
    assert f"benchmarks/lm_tofu.py {' '.join(argv)}" in text  # the exact command is in the report
    for label in ("| ga |", "| npo |", "| rmu |", "| target (original) |", "| oracle (retrain) |"):
        assert label in text, label
    assert " ± " in text  # 95% intervals over the two seeds
    assert "noise floor (oracle vs oracle of the next seed, 1 pair(s))" in text
    assert "distinct values" in text and "KS D" in text
    assert "seeds" in text.split("| ga |")[1].split("\n")[0]  # matched-forgetting cell: reached in k/2 seeds
    assert "| 1 |" in text and "| 2 |" in text  # GA/NPO utility per epoch from the trajectories
    assert "NPO degrades utility markedly more slowly than GA" in text
    assert "oracle (control: never saw D_f): held-out ROUGE" in text and "- ga: held-out ROUGE" in text
    n = Store(results).count_runs()
    assert n == 2 * 5 + 1  # per seed: target, oracle, 3 methods; plus the two-oracle floor
    capsys.readouterr()
    assert bench.main(argv) == 0 and Store(results).count_runs() == n  # a rerun reuses every stored run
    assert out.read_text().split("## Time")[0] == text.split("## Time")[0]


def test_spec_applies_one_rule_to_every_method():
    bench = _load()
    a = bench.parse_args(["--methods", "ga,rmu,npo"])
    spec = bench.spec_of(a)
    assert spec["overrides"]["ga"] == spec["overrides"]["npo"] == {"lr": 2e-5, "batch_size": 8, "epochs": 5}
    assert spec["overrides"]["rmu"]["preset"] == "tofu" and spec["trajectory"] is True
    assert spec["forget"] == "20%" and a.authors * a.facts * 20 // 100 >= 100  # >= 100 forget QA
