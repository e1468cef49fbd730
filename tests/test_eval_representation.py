"""Linear CKA, linear probe and k-NN accuracy on synthetic features with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from unlearnlab.errors import ConfigError, DataError
from unlearnlab.eval.representation import cka_per_layer, knn_accuracy, linear_cka, linear_probe_accuracy
from unlearnlab.seeding import numpy_rng


def rng(key: str) -> np.random.Generator:
    return numpy_rng(0, "test-representation", key)


def test_cka_of_itself_is_one_and_hand_computed_case():
    x = rng("self").normal(size=(50, 8))
    assert linear_cka(x, x) == pytest.approx(1.0)
    # 1-D: centred x = (-1, 0, 1), y = (0, -1, 1): ||y^T x||^2 = 1, ||x^T x|| = ||y^T y|| = 2 -> 1/4 (= corr^2)
    assert linear_cka(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [0.0], [2.0]])) == pytest.approx(0.25)


def test_cka_invariances():
    x = rng("inv-x").normal(size=(200, 6))
    y = x @ rng("inv-m").normal(size=(6, 4)) + 0.5 * rng("inv-n").normal(size=(200, 4))
    base = linear_cka(x, y)
    q, _ = np.linalg.qr(rng("inv-q").normal(size=(6, 6)))
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(base, rel=1e-10)  # centring
    stretch = np.diag([10.0, 1, 1, 1, 1, 0.1])  # not orthogonal: CKA changes
    assert abs(linear_cka(x @ stretch, y) - base) > 1e-3


def test_cka_independent_features_near_zero_and_gram_form_agrees():
    a, b = rng("ind-a").normal(size=(5000, 10)), rng("ind-b").normal(size=(5000, 10))
    assert linear_cka(a, b) < 0.01
    wide_x, wide_y = rng("wide-x").normal(size=(20, 50)), rng("wide-y").normal(size=(20, 30))
    xc, yc = wide_x - wide_x.mean(0), wide_y - wide_y.mean(0)
    feature_form = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(wide_x, wide_y) == pytest.approx(feature_form, rel=1e-10)


def test_cka_per_layer_and_errors():
    x = rng("layer").normal(size=(30, 4))
    out = cka_per_layer({"l1": x, "l2": x[:, :2], "only_a": x}, {"l1": x, "l2": -x[:, :2]})
    assert out == pytest.approx({"l1": 1.0, "l2": 1.0})
    assert linear_cka(rng("conv").normal(size=(10, 2, 3, 3)), rng("conv").normal(size=(10, 2, 3, 3))) == \
        pytest.approx(1.0)
    with pytest.raises(DataError, match="same examples"):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(DataError, match="constant"):
        linear_cka(np.ones((5, 2)), rng("c").normal(size=(5, 2)))
    with pytest.raises(DataError, match="No layer name"):
        cka_per_layer({"a": x}, {"b": x})


def _blobs(key: str, n: int = 200, sep: float = 4.0):
    g = rng(key)
    y = g.integers(0, 3, size=n)
    x = g.normal(size=(n, 5))
    x[:, 0] += sep * y
    return x, y


def test_linear_probe_decodes_separable_labels_and_not_random_ones():
    tx, ty = _blobs("probe-train")
    fx, fy = _blobs("probe-forget")
    shuffled = rng("shuffle").permutation(fy)
    acc = linear_probe_accuracy(tx, ty, {"forget": (fx, fy), "random": (fx, shuffled)})
    assert acc["forget"] > 0.95 and acc["random"] < 0.6
    with pytest.raises(DataError, match="same layer"):
        linear_probe_accuracy(tx, ty, {"bad": (fx[:, :3], fy)})
    with pytest.raises(ConfigError):
        linear_probe_accuracy(tx, ty, {}, c=0.0)


def test_knn_hand_computed_and_separable():
    tx = np.array([[0.0], [0.1], [1.0], [1.1]])
    ty = np.array([0, 0, 1, 1])
    acc = knn_accuracy(tx, ty, {"eval": (np.array([[0.05], [0.9], [0.4]]), np.array([0, 1, 1]))}, k=1)
    assert acc["eval"] == pytest.approx(2 / 3)  # 0.4 is nearest to 0.1 -> class 0, wrong
    bx, by = _blobs("knn-train")
    ex, ey = _blobs("knn-eval")
    assert knn_accuracy(bx, by, {"eval": (ex, ey)})["eval"] > 0.9  # 4 of 5 dims are noise
    with pytest.raises(DataError, match="exceeds"):
        knn_accuracy(tx, ty, {}, k=10)
