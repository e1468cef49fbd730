"""run_lm end to end on the tiny model: target/oracle fine-tunes, one method, evaluation, store and resume."""
from __future__ import annotations

import pytest

from unlearnlab.errors import ConfigError, DataError
from unlearnlab.tasks.lm import lm_method_names, method_overrides, parse_dataset, run_lm

SPEC = {"task": "qa", "model": "tiny", "dataset": "qa:authors=6,facts=4", "forget": "random:10%",
        "methods": ["grad_diff"], "seeds": [0], "recipe": {"epochs": 60}, "epochs": 2, "device": "cpu"}


def test_run_lm_records_store_and_resume(tmp_path):
    store_mod = pytest.importorskip("unlearnlab.store")
    store = store_mod.Store(tmp_path / "store")
    msgs: list[str] = []
    records = run_lm(SPEC, store=store, progress=msgs.append)
    assert [r["spec"]["method"] for r in records] == ["original", "retrain", "grad_diff"]
    assert any("fine-tuning the retain oracle" in m for m in msgs)
    by = {r["spec"]["method"]: r for r in records}
    assert by["grad_diff"]["spec"]["config"]["epochs"] == 2 and by["grad_diff"]["timings"]["wall_s"] > 0
    m_orig, m_oracle = by["original"]["metrics"], by["retrain"]["metrics"]
    key = "forget_ROUGE" if "forget_ROUGE" in m_orig else "forget_NLL"
    # the target memorised the forget authors, the oracle never saw them
    assert (m_orig[key] > m_oracle[key]) == (key == "forget_ROUGE")
    # a target that memorised D_f draws no "did not learn" warning; 4 forget questions do draw the KS one
    assert not any("did not learn" in w for w in by["original"].get("warnings", []))
    assert any("at most 5 distinct p-values" in w for w in by["original"]["warnings"]), by["original"].get("warnings")
    assert store.count_runs() == 3
    # per-question answers (the dashboard's side-by-side view) are stored, and agree with the run's mean ROUGE
    import json

    import numpy as np

    table = json.loads(store.artifact_path(by["original"]["answers"]).read_text())
    forget = table["forget"]
    assert {"question", "target", "answer", "rouge", "truth_ratio"} <= set(forget[0])
    assert np.mean([r["rouge"] for r in forget]) == pytest.approx(m_orig["forget_ROUGE"], abs=1e-9)
    assert all(r["truth_ratio"] is None or r["truth_ratio"] > 0 for r in forget)
    msgs.clear()
    again = run_lm(SPEC, store=store, progress=msgs.append)
    assert [r["spec"] for r in again] == [r["spec"] for r in records] and store.count_runs() == 3
    assert all("reusing stored run" in m for m in msgs)


def test_bad_specs_fail_clearly():
    with pytest.raises(ConfigError, match="not a generated QA dataset"):
        parse_dataset("cifar10")
    with pytest.raises(ConfigError, match="Bad QA dataset option"):
        parse_dataset("qa:people=3")
    with pytest.raises(ConfigError, match="does not apply to language models"):
        lm_method_names(["ssd"])
    assert "npo" in lm_method_names(["all"]) and "ssd" not in lm_method_names(["all"])
    with pytest.raises(DataError, match="forget all"):
        run_lm({**SPEC, "forget": "99.9%"})


def test_method_overrides_layering():
    ov = method_overrides({**SPEC, "lr": 5e-4, "overrides": {"npo": {"beta": 0.2}}}, "npo")
    assert ov["lr"] == 5e-4 and ov["beta"] == 0.2 and ov["epochs"] == 2 and ov["batch_size"] == 8


def test_trajectory_scores_every_epoch_without_changing_the_method(tmp_path):
    """trajectory: true evaluates after each unlearning epoch; the method's weights and final metrics are those of
    the same run without it, and the evaluation seconds are not counted as the method's."""
    from unlearnlab.store import Store

    spec = {**SPEC, "methods": ["ga"], "epochs": 3, "baselines": False}
    store = Store(tmp_path / "r")  # the second run reuses the fine-tuned target and oracle (not the run: new spec)
    plain = run_lm(spec, store=store)
    traced = run_lm({**spec, "trajectory": True}, store=store)
    same = {k: v for k, v in plain[0]["metrics"].items() if k != "RTE"}  # RTE: wall seconds
    assert same == pytest.approx({k: traced[0]["metrics"][k] for k in same}, nan_ok=True)
    points = traced[0]["trajectory"]
    assert [p["epoch"] for p in points] == [1, 2, 3] and "trajectory" not in plain[0]
    assert points[-1]["forget_ROUGE"] == pytest.approx(traced[0]["metrics"]["forget_ROUGE"])
    assert {"forget_ROUGE", "forget_Prob", "Model Utility", "Forget Quality"} <= set(points[0])
    assert traced[0]["spec"]["trajectory"] is True and traced[0]["timings"]["trajectory_s"] > 0
