"""benchmarks/classifier_diagnostics.py: the measurements behind bn_stats, SSD's α grid and SCRUB's forget batch
size leave the original untouched, start from the original's own accuracy, and select fewer weights as α grows."""
from __future__ import annotations

import torch

BENCHMARK = "classifier_diagnostics"  # the `bench` fixture (tests/conftest.py) imports this script


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_bn_drift_starts_at_the_original_and_leaves_it_untouched(bench, trained_cnn, blobs_data, task4):
    before = _state(trained_cnn)
    rows = bench.bn_drift(trained_cnn, blobs_data, task4, [0, 3], 8, 0)
    assert all(torch.equal(before[k], v) for k, v in trained_cnn.state_dict().items())
    zero = rows[2].split("|")
    assert float(zero[2]) == round(bench.accuracy(trained_cnn, blobs_data.forget, task4), 1)
    assert float(zero[3]) == round(bench.accuracy(trained_cnn, blobs_data.test, task4), 1)
    assert len(rows) == 4


def test_ssd_selection_shrinks_as_alpha_grows(bench, trained_cnn, blobs_data, task4):
    before = _state(trained_cnn)
    rows = bench.selection(trained_cnn, blobs_data, task4, 0)
    assert all(torch.equal(before[k], v) for k, v in trained_cnn.state_dict().items())
    assert len(rows) == 2 + 2 * len(bench.SSD_GRID)
    for name in ("ssd", "lfssd"):
        fracs = [float(r.split("|")[3]) for r in rows[2:] if r.split("|")[1].strip() == name]
        assert len(fracs) == len(bench.SSD_GRID) and fracs == sorted(fracs, reverse=True) and fracs[0] > 0


def test_fisher_chunks_agree_and_report_a_rate(bench, trained_cnn, blobs_data, task4):
    rows = bench.fisher_chunks(trained_cnn, blobs_data, task4, 12, chunks=(4, 1), repeats=1)
    assert len(rows) == 5 and "layerwise" in rows[-1]  # two chunk sizes of the Jacobian, then the layerwise pass
    for r in rows[2:]:
        _, how, rate, diff, _ = r.split("|")
        assert float(rate) > 0 and float(diff) < 1e-4


def test_gradient_chunks_agree(bench, trained_cnn, blobs_data, task4):
    rows = bench.gradient_chunks(trained_cnn, blobs_data, task4, 12, chunks=(8, 1))
    assert len(rows) == 4 and all(float(r.split("|")[3]) < 1e-4 for r in rows[2:])
