"""Judge-feature Frechet distance, per-class generation metrics and sample grids."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnlab.eval.gen_metrics import frechet_distance, gap_metrics, generation_metrics


def test_frechet_distance_against_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # N(0, I) vs N(0, 4I) in 3-d: Tr(I + 4I - 2 * 2I) = 3
    b = rng.normal(size=(4000, 3)) * 2.0
    assert frechet_distance(a, b) == pytest.approx(3.0, rel=0.1)


def test_generation_metrics_per_class():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 10)
    pred = labels.copy()
    pred[:10] = 1  # every sample of class 0 (the forgotten one) is judged a 1
    pred[10] = 2  # one class-1 sample is judged a 2
    feats = rng.normal(size=(30, 2))
    real = {c: rng.normal(size=(50, 2)) for c in range(3)}
    m, d = generation_metrics(pred, feats, labels, real, forget=[0], num_classes=3)
    assert m["UA"] == 100.0 and m["RA"] == pytest.approx((90 + 100) / 2)
    assert d["judge_counts"][0] == [0, 10, 0] and d["samples_per_class"] == [10, 10, 10]
    assert np.isfinite(m["FD"]) and "not Inception" in d["fd_note"]
    assert gap_metrics(m, {"UA": 90.0, "RA": 95.0}) == {"Avg.Gap": pytest.approx(10 / 2 + 0)}


def test_grid_png_is_a_png():
    pytest.importorskip("PIL")
    from unlearnlab.tasks.diffusion_data import grid_png

    png = grid_png(torch.rand(6, 1, 8, 8) * 2 - 1, rows=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_digits_gen_bundle(bundle8):
    from unlearnlab.tasks.diffusion_data import gen_bundle

    assert bundle8.train.x.shape[1:] == (1, 8, 8) and bundle8.train.x.min() >= -1 and bundle8.train.x.max() <= 1
    b16 = gen_bundle("digits-gen")
    assert b16.train.x.shape[1:] == (1, 16, 16) and len(b16.train) == len(bundle8.train)
