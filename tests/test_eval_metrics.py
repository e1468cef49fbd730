"""UA / RA / TA and Avg.Gap on hand-computed cases; OutputCache runs each (model, split) forward pass once."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnlab.eval import METRICS, OutputCache, avg_gap, compute, evaluate_model
from unlearnlab.eval.evaluate import GAP_METRICS


def _split(pred, labels, k=3):
    """Outputs of a split whose argmax predictions are `pred`."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    logits = np.eye(k, dtype=np.float32)[pred] * 5.0
    return {"logits": logits, "labels": labels, "loss": np.zeros(len(labels), np.float32),
            "correct": (pred == labels).astype(np.float32)}


HAND = {
    "forget": _split([0, 1, 2, 2], [0, 2, 2, 2]),        # 3/4 correct -> UA = 25
    "retain": _split([0, 1, 2, 0, 1], [0, 1, 2, 0, 2]),  # 4/5 correct -> RA = 80
    "test": _split([1, 0, 2, 2], [1, 1, 0, 2]),          # 2/4 correct -> TA = 50
}


def test_ua_ra_ta_hand_computed():
    v = compute(HAND, names=["UA", "RA", "TA"])
    assert v == pytest.approx({"UA": 25.0, "RA": 80.0, "TA": 50.0})
    assert METRICS.get("UA").higher_is_better is None
    assert METRICS.get("RA").higher_is_better is True and METRICS.get("TA").higher_is_better is True
    assert METRICS.get("UA").needs == ("forget",)


def test_compute_skips_missing_splits_and_reference():
    v = compute({"test": HAND["test"]}, names=["UA", "TA", "KL-test"])
    assert v == pytest.approx({"TA": 50.0})
    v = compute(HAND, HAND, names=["TA", "KL-test"])
    assert v["KL-test"] == pytest.approx(0.0, abs=1e-12)


def test_avg_gap_hand_computed():
    values = {"UA": 25.0, "RA": 80.0, "TA": 50.0, "MIA-Eff": 10.0, "KL-forget": 3.0}
    ref = {"UA": 30.0, "RA": 100.0, "TA": 60.0, "MIA-Eff": 14.0, "KL-forget": 0.0}
    assert GAP_METRICS == ("UA", "RA", "TA", "MIA-Eff")
    assert avg_gap(values, ref) == pytest.approx((5 + 20 + 10 + 4) / 4)  # KL not part of the gap
    assert avg_gap(values, values) == 0.0
    assert avg_gap({"UA": 1.0}, {"UA": 4.0, "RA": 9.0}) == pytest.approx(3.0)  # only keys in both
    assert math.isnan(avg_gap({}, ref))


def _count_forwards(model):
    calls = []
    handle = model.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    return calls, handle


def test_cache_computes_each_pass_once(blobs_data, task4, trained_mlp, trained_cnn):
    cache = OutputCache()
    calls_m, hm = _count_forwards(trained_mlp)
    calls_r, hr = _count_forwards(trained_cnn)
    try:
        first = evaluate_model(trained_mlp, blobs_data, task4, reference=trained_cnn, cache=cache)
        assert cache.passes == 6  # 2 models x 3 splits, shared by every metric
        n_total = sum(len(s) for s in blobs_data.splits().values())
        assert sum(calls_m) == n_total and sum(calls_r) == n_total  # every example seen exactly once
        second = evaluate_model(trained_mlp, blobs_data, task4, reference=trained_cnn, cache=cache)
        evaluate_model(trained_cnn, blobs_data, task4, reference=trained_cnn, cache=cache)
        assert cache.passes == 6 and sum(calls_m) == n_total and sum(calls_r) == n_total
    finally:
        hm.remove()
        hr.remove()
    assert first == second
    for name in ("UA", "RA", "TA", "MIA-Eff", "MIA-Eff-entropy", "MIA-Eff-m_entropy", "KL-forget", "KL-retain",
                 "KL-test", "JS-forget", "JS-retain", "JS-test", "Avg.Gap"):
        assert name in first and np.isfinite(first[name])


def test_cache_only_fills_missing_splits(blobs_data, task4, trained_mlp):
    cache = OutputCache()
    out = cache.get(trained_mlp, blobs_data, task4, ("test",))
    assert cache.passes == 1 and list(out) == ["test"]
    cache.get(trained_mlp, blobs_data, task4)
    assert cache.passes == 3
    assert cache.get(trained_mlp, blobs_data, task4)["test"] is out["test"]
    assert cache.passes == 3


def test_evaluate_avg_gap_against_reference(blobs_data, task4, trained_mlp, trained_cnn):
    cache = OutputCache()
    values = evaluate_model(trained_mlp, blobs_data, task4, reference=trained_cnn, cache=cache)
    ref_values = evaluate_model(trained_cnn, blobs_data, task4, reference=trained_cnn, cache=cache)
    want = np.mean([abs(values[k] - ref_values[k]) for k in ("UA", "RA", "TA", "MIA-Eff")])
    assert values["Avg.Gap"] == pytest.approx(want)
    assert ref_values["Avg.Gap"] == 0.0
    # accuracies agree with a direct count of correct predictions
    test_out = cache.get(trained_mlp, blobs_data, task4)["test"]
    assert values["TA"] == pytest.approx(100.0 * np.mean(test_out["logits"].argmax(1) == test_out["labels"]))
    assert "Avg.Gap" not in evaluate_model(trained_mlp, blobs_data, task4, cache=cache)


def test_lm_evaluation_modules_register_no_metric_and_stay_unloaded_for_classifiers():
    """The metric registry skips eval/lm_*.py and rouge.py (issue 13): so they must register nothing in METRICS."""
    import importlib
    import pkgutil
    import subprocess
    import sys

    import unlearnlab.eval as ev

    before = set(METRICS.names())
    for mod in pkgutil.iter_modules(ev.__path__):
        importlib.import_module(f"unlearnlab.eval.{mod.name}")
    assert set(METRICS.names()) == before
    code = ("import sys; from unlearnlab.eval.evaluate import default_metrics; default_metrics('classifier'); "
            "print(sorted(m for m in sys.modules if m.startswith(('unlearnlab.eval.lm', 'unlearnlab.eval.rouge', "
            "'transformers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
