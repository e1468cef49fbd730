"""benchmarks/lm_tofu.py --quick end to end on the tiny model: report, checks, curve, relearning, resume."""
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
    argv = ["--quick", "--results", str(results), "--out", str(out), "--curve-lr", "1e-3,3e-3"]
    assert bench.main(argv) == 0
    text = out.read_text()
    assert f"benchmarks/lm_tofu.py {' '.join(argv)}" in text  # the exact command is in the report
    for m in bench.METHODS.split(","):
        assert f"| {m} |" in text
    assert "| target (original) |" in text and "| oracle (retrain) |" in text
    assert "target forget ROUGE" in text and "(high vs low, gap >= 0.3): yes" in text  # the set-up measures forgetting
    assert "| 1 |" in text and "| 3 |" in text  # the GA/NPO curve points
    for label in ("| GA curve lr 0.001, 1 epoch |", "| GA curve lr 0.003, 3 epochs |",
                  "| NPO curve lr 0.001, 3 epochs |", "| ga |", "| oracle (control: never saw D_f) |"):
        assert label in text, label  # relearning ran on the oracle control, every table row and every curve point
    assert "relearning restores most of GA's forgotten answers (table GA" in text
    assert "| paraphrased ROUGE | relearn recovery |" in text
    n = Store(results).count_runs()
    assert n == 12 + 8  # target, oracle, 10 methods; GA and NPO at 1 and 3 epochs for each of the two curve rates
    assert "- lr 0.001: GA's utility collapses" in text and "- lr 0.003: GA's utility collapses" in text
    assert "; further curve at lr 0.003:" in text
    capsys.readouterr()
    assert bench.main(argv) == 0  # a rerun reuses the fine-tunes and every stored run
    err = capsys.readouterr().err
    assert Store(results).count_runs() == n and "fine-tuning" not in err and err.count("reusing stored run") == n
    assert out.read_text().split("## Time")[0] == text.split("## Time")[0]
