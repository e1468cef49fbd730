"""Population metrics on synthetic populations with known answers and hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnlab.errors import ConfigError, DataError
from unlearnlab.eval.lira import attack_metrics, gaussian_lr_scores, lira_scores, per_example_auc, ulira_scores
from unlearnlab.eval.population import (
    binned_kl,
    bootstrap_interval,
    challenge_epsilon,
    challenge_points,
    challenge_score,
    gaussian_kl,
    klom,
    klom_report,
    logit_scaled_confidence,
    margins,
    quantile_summary,
)
from unlearnlab.eval.privacy_score import privacy_score, threshold_attack_scores
from unlearnlab.seeding import numpy_rng

DELTA = 1e-5


def rng(key: str) -> np.random.Generator:
    return numpy_rng(0, "test-population", key)


# ----------------------------------------------------------------------------- statistics
def test_margin_and_confidence_hand_computed():
    logits = np.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])  # 1 model, 2 examples
    labels = np.array([0, 1])
    m = margins(logits, labels)
    assert m[0, 0] == pytest.approx(2.0 - math.log(2.0))  # 2 - log(e^0 + e^0)
    assert m[0, 1] == pytest.approx(1.0 - math.log(1.0 + math.e))
    # log p_y - log(1 - p_y) equals the margin analytically
    np.testing.assert_allclose(logit_scaled_confidence(logits, labels), m, rtol=1e-12)


def test_statistics_reject_bad_shapes():
    with pytest.raises(DataError, match="n_models, n_examples, n_classes"):
        margins(np.zeros((3, 4)), np.zeros(3, dtype=int))
    with pytest.raises(DataError, match="labels must be integers"):
        margins(np.zeros((1, 2, 3)), np.array([0, 3]))


# ----------------------------------------------------------------------------- KLoM
def test_binned_kl_hand_computed_and_top_edge_quirk():
    p, q = np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0])
    # edges [0, .5, 1]: p = (1/2, 1/2), q = (1/4, 3/4)
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert binned_kl(p, q, bins=2) == pytest.approx(want)
    # the released np.digitize drops values equal to the joint max: p = q = (1, 0)
    assert binned_kl(p, q, bins=2, top_edge="drop") == pytest.approx(0.0)


def test_gaussian_kl_closed_form():
    p, q = np.array([-1.0, 1.0]), np.array([-2.0, 2.0])  # s_p^2 = 2, s_q^2 = 8, equal means
    assert gaussian_kl(p, q) == pytest.approx(math.log(2.0) + 2.0 / 16.0 - 0.5)


@pytest.mark.parametrize("estimator", ["binned", "gaussian"])
def test_klom_identical_is_zero_and_disjoint_is_large(estimator):
    a = rng("klom").normal(0.0, 1.0, size=(100, 5))
    np.testing.assert_allclose(klom(a, a.copy(), estimator=estimator), 0.0, atol=1e-12)
    same = klom(rng("klom-u").normal(size=(2000, 3)), rng("klom-o").normal(size=(2000, 3)), estimator=estimator)
    assert same.max() < 0.05
    far = klom(a + 20.0, a, estimator=estimator)
    assert far.min() > 5.0  # binned: ~log(1 / 1e-5) = 11.5; Gaussian: ~200


@pytest.mark.parametrize("estimator", ["binned", "gaussian"])
def test_klom_direction_option_differs_on_asymmetric_case(estimator):
    narrow = rng("narrow").normal(0.0, 0.1, size=(400, 4))  # unlearned: peaky
    wide = rng("wide").normal(0.0, 1.0, size=(400, 4))  # oracle: spread
    paper = klom(narrow, wide, estimator=estimator)
    released = klom(narrow, wide, direction="released", estimator=estimator)
    np.testing.assert_allclose(released, klom(wide, narrow, estimator=estimator))
    assert np.all(released > 2.0 * paper)
    if estimator == "gaussian":  # closed form: 1.80 vs 47.2 nats
        assert np.median(paper) == pytest.approx(math.log(10) + 0.005 - 0.5, abs=0.2)
        assert np.median(released) == pytest.approx(-math.log(10) + 50.0 - 0.5, rel=0.2)


def test_klom_report_per_split():
    u = rng("rep-u").normal(size=(200, 6))
    o = rng("rep-o").normal(size=(200, 6))
    u[:, :2] += 10.0  # the first two ("forget") examples were not unlearned
    rep = klom_report(u, o, {"forget": np.arange(2), "retain": np.arange(2, 6)}, estimator="gaussian")
    assert rep["per_example"].shape == (6,)
    assert rep["summary"]["forget"]["q50"] > 10 > 0.1 > rep["summary"]["retain"]["q95"]


def test_klom_errors():
    with pytest.raises(DataError, match="same examples"):
        klom(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ConfigError, match="direction"):
        klom(np.zeros((3, 4)), np.zeros((3, 4)), direction="forward")
    with pytest.raises(DataError, match="non-finite"):
        klom(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_quantile_summary_per_split():
    v = np.arange(10.0)
    forget = np.zeros(10, dtype=bool)
    forget[:4] = True
    s = quantile_summary(v, {"forget": forget, "retain": np.arange(4, 10)}, quantiles=(0.5, 0.95))
    assert s["forget"]["n"] == 4 and s["forget"]["q50"] == pytest.approx(1.5)
    assert s["retain"]["mean"] == pytest.approx(6.5) and s["retain"]["q95"] == pytest.approx(8.75)
    with pytest.raises(DataError, match="one entry per example"):
        quantile_summary(v, {"bad": np.ones(3, dtype=bool)})


# ----------------------------------------------------------------------------- challenge score
def test_challenge_epsilon_hand_computed():
    pos, neg = np.array([2.0, 3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0, 3.0])
    # best usable rule: t in (2, 3] -> TPR = 3/4, FPR = 1/4 (rules with one zero rate are discarded)
    want = math.log(1 - DELTA - 0.25) - math.log(0.25)
    assert challenge_epsilon(pos, neg) == pytest.approx(want, rel=1e-12)


def test_challenge_points_buckets():
    pts, max_eps, n_buckets = challenge_points(np.array([0.0, 0.49, 0.5, 1.2, 6.9, 7.0, 50.0, np.nan]), 512)
    assert (max_eps, n_buckets) == (7.0, 14)
    np.testing.assert_allclose(pts, [1, 1, 0.5, 0.25, 2.0 ** -13, 0, 0, 0])
    with pytest.raises(DataError, match="N >= 3"):
        challenge_points(np.zeros(2), 2)


def test_challenge_score_hand_computed_small_population():
    u = np.array([[2.0], [3.0], [4.0], [5.0]])
    r = np.array([[0.0], [1.0], [2.0], [3.0]])
    s = challenge_score(u, r, ra_ratio=0.9, ta_ratio=0.8)
    assert s.max_epsilon == 2.0 and s.n_buckets == 4  # ceil(log 3) = 2
    assert s.epsilons[0] == pytest.approx(math.log(3 - 4 * DELTA))  # bucket 2 -> 1/4 point
    assert s.forget_score == pytest.approx(0.25)
    assert s.final_score == pytest.approx(0.25 * 0.9 * 0.8)
    assert s.small_population and "compare F only at equal N" in s.notes[0]
    with pytest.raises(ConfigError, match="both ra_ratio and ta_ratio"):
        challenge_score(u, r, ra_ratio=0.9)


def test_challenge_identical_and_disjoint_populations():
    a = rng("challenge").normal(size=(64, 6))
    same = challenge_score(a, a.copy())
    np.testing.assert_allclose(same.epsilons, 0.0)
    assert same.forget_score == 1.0 and not same.small_population
    apart = challenge_score(a + 100.0, a)
    np.testing.assert_allclose(apart.epsilons, 50.0)  # perfect separation -> inf, capped
    assert apart.forget_score == 0.0
    peaky = challenge_score(np.full((64, 6), 0.1) + 1e-6 * a, a)  # range ratio < 1%
    np.testing.assert_allclose(peaky.epsilons, 50.0)


def test_challenge_same_distribution_scores_higher_than_shifted():
    r = rng("ch-r").normal(size=(64, 20))
    f_same = challenge_score(rng("ch-u").normal(size=(64, 20)), r).forget_score
    f_shift = challenge_score(rng("ch-u").normal(size=(64, 20)) + 1.5, r).forget_score
    assert f_same > f_shift + 0.1


# ----------------------------------------------------------------------------- privacy score
def test_threshold_attack_hand_computed():
    pos, neg = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 2.0, 3.0])
    # t = 2.5: TPR = 1/2, FPR = 1/4, FNR = 1/2 -> eps = min(log(1.5 - 2 delta), log(2 - 4 delta))
    eps = math.log(1 - DELTA - 0.25) - math.log(0.5)
    assert threshold_attack_scores(pos, neg, np.array([2.5]))[0] == pytest.approx(1 - 2.0 ** -eps)
    # t = 10: nothing predicted positive -> FNR = 1 >= 1 - delta -> fq = 1, score 0
    assert threshold_attack_scores(pos, neg, np.array([10.0]))[0] == 0.0
    # perfect split -> score 1
    assert threshold_attack_scores(pos + 10, neg, np.array([5.0]))[0] == 1.0


def test_privacy_score_identical_and_separable():
    logits = rng("ps").normal(size=(200, 10)) * 3
    same = privacy_score(logits, logits.copy())
    assert same["ps"] == pytest.approx(1.0)
    confident = np.zeros((200, 10))
    confident[:, 0] = 20.0  # entropy ~0, confidence clipped at 10
    uniform = np.zeros((200, 10))  # entropy log 10, confidence log(1/9)
    assert privacy_score(confident, uniform)["ps"] == 0.0
    with pytest.raises(DataError, match="same K"):
        privacy_score(np.zeros((3, 4)), np.zeros((3, 5)))


# ----------------------------------------------------------------------------- LiRA / U-LiRA
def test_gaussian_lr_hand_computed():
    pos = np.array([[1.0], [3.0]])  # median 2, std 1
    neg = np.array([[-1.0], [1.0]])  # median 0, std 1
    x = np.array([[1.0], [2.0], [0.0]])
    np.testing.assert_allclose(gaussian_lr_scores(x, pos, neg)[:, 0], [0.0, 2.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(gaussian_lr_scores(x, None, neg)[:, 0],
                               [math.log(0.8413447460685429), math.log(0.9772498680518208), math.log(0.5)])
    np.testing.assert_allclose(gaussian_lr_scores(x, None, neg, offline="pdf")[2, 0], 0.5 * math.log(2 * math.pi))


def _membership_world(shift: float, n_shadow: int = 64, n_target: int = 100, n_ex: int = 30):
    g = rng(f"lira-{shift}")
    base = g.normal(0.0, 3.0, size=n_ex)
    keep = g.random((n_shadow + n_target, n_ex)) < 0.5
    stats = base + shift * keep + g.normal(size=keep.shape)
    return stats[:n_shadow], keep[:n_shadow], stats[n_shadow:], keep[n_shadow:]


@pytest.mark.parametrize("online", [True, False])
def test_lira_separates_members_and_is_chance_without_signal(online):
    s, k, t, tk = _membership_world(3.0)
    strong = attack_metrics(lira_scores(t, s, k, online=online), tk)
    assert strong["auc"] > 0.9 and strong["tpr@0.01"] > 0.2
    s, k, t, tk = _membership_world(0.0)
    null = attack_metrics(lira_scores(t, s, k, online=online), tk)
    assert 0.42 < null["auc"] < 0.58


def test_ulira_uses_unlearned_vs_retrained_shadows():
    g = rng("ulira")
    unl, ret = g.normal(1.0, 1.0, size=(40, 10)), g.normal(0.0, 1.0, size=(40, 10))
    t_unl, t_ret = g.normal(1.0, 1.0, size=(50, 10)), g.normal(0.0, 1.0, size=(50, 10))
    scores = ulira_scores(np.vstack([t_unl, t_ret]), unl, ret)
    labels = np.vstack([np.ones((50, 10)), np.zeros((50, 10))])
    assert attack_metrics(scores, labels)["auc"] > 0.65
    offline = ulira_scores(np.vstack([t_unl, t_ret]), unl, ret, online=False)
    assert attack_metrics(offline, labels)["auc"] > 0.65
    vuln = per_example_auc(scores, labels)
    assert vuln.shape == (10,) and np.all(vuln > 0.5)


def test_attack_metrics_hand_computed():
    m = attack_metrics(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 1, 0, 0]))
    assert m == {"auc": 1.0, "accuracy": 1.0, "tpr@0.01": 1.0, "tpr@0.001": 1.0}
    m = attack_metrics(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0]))
    assert m["auc"] == pytest.approx(0.75) and m["tpr@0.01"] == 0.5  # last point with FPR < 1%
    np.testing.assert_allclose(per_example_auc(np.array([[0.9], [0.5], [0.5]]), np.array([[1], [0], [1]])), [0.75])
    with pytest.raises(DataError, match="both classes"):
        attack_metrics(np.zeros(3), np.ones(3))


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_seeded_and_covering():
    v = rng("boot").normal(5.0, 1.0, size=200)
    a = bootstrap_interval(np.mean, [v], n_resamples=500, seed=3)
    assert a == bootstrap_interval(np.mean, [v], n_resamples=500, seed=3)
    assert a["ci_low"] < a["value"] < a["ci_high"] and a["ci_high"] - a["ci_low"] < 0.5
    u, r = rng("bu").normal(size=(32, 8)), rng("br").normal(size=(32, 8))
    ci = bootstrap_interval(lambda x, y: challenge_score(x, y).forget_score, [u, r], paired=False,
                            n_resamples=5, seed=0)
    assert 0.0 <= ci["ci_low"] <= ci["ci_high"] <= 1.0
    with pytest.raises(DataError, match="paired resampling"):
        bootstrap_interval(np.mean, [np.zeros(3), np.zeros(4)])
