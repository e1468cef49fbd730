"""Population audits on synthetic populations with a known answer (no training)."""
import numpy as np
import pytest

from unlearnlab.audit import parse_attacks
from unlearnlab.audit.populations import Fixed, Shadows
from unlearnlab.audit.privacy import challenge_audit, klom_audit, membership_audit, privacy_score_audit, ulira_audit
from unlearnlab.audit.render import reading, summary_rows
from unlearnlab.errors import ConfigError
from unlearnlab.eval.lira import rmia_scores

K = 4


def _logits(rng, n_models, n, margin):
    """Logits whose true-class margin is `margin` (per example, broadcast) plus model noise; labels all 0."""
    z = rng.normal(0, 0.3, (n_models, n, K))
    z[..., 0] += margin
    return z


def _fixed(rng, n_models=8, n=24, gap=0.0):
    labels = np.zeros(n, dtype=int)
    base = rng.normal(2.0, 1.0, n)
    logits = {"retrain": {}, "unlearned": {}, "original": {}}
    for split in ("forget", "retain", "test"):
        logits["retrain"][split] = _logits(rng, n_models, n, base)
        logits["unlearned"][split] = _logits(rng, n_models, n, base + gap)
        logits["original"][split] = _logits(rng, n_models, n, base + 4.0)
    metrics = {r: [{"RA": 99.0, "TA": 95.0}] * n_models for r in logits}
    return Fixed(list(range(n_models)), logits, {s: labels for s in ("forget", "retain", "test")}, metrics)


def test_klom_floor_and_ceiling_bracket_the_method():
    rng = np.random.default_rng(0)
    same = klom_audit(_fixed(rng, gap=0.0))["splits"]["forget"]
    far = klom_audit(_fixed(rng, gap=4.0))["splits"]["forget"]
    # an unlearned population drawn like the oracle's sits at the floor; one drawn like the original at the ceiling
    assert same["method@N/2"]["q50"] < 3 * same["floor"]["q50"] + 0.5
    assert far["method@N/2"]["q50"] > 10 * far["floor"]["q50"]
    assert far["ceiling"]["q50"] > 10 * far["floor"]["q50"]


def test_challenge_score_identical_vs_separated():
    rng = np.random.default_rng(1)
    same, far = challenge_audit(_fixed(rng, n=30, gap=0.0)), challenge_audit(_fixed(rng, n=30, gap=6.0))
    # at N = 8 finite-sample threshold rules find some epsilon even between identical populations: the floor row
    # (oracle halves) says how much, and an identical method matches it while a separated one falls far below
    assert abs(same["F@N/2"] - same["floor"]) < 0.15
    assert far["F"] < same["F"] and far["F@N/2"] < far["floor"] - 0.2 and far["ceiling"] < far["floor"] - 0.2
    assert same["ra_ratio"] == pytest.approx(1.0)


def test_privacy_score_rows():
    rng = np.random.default_rng(2)
    res = privacy_score_audit(_fixed(rng, gap=5.0))
    assert res["method"]["value"] < res["floor"]["value"]
    assert res["method"]["ci_low"] <= res["method"]["value"] <= res["method"]["ci_high"]


def _shadows(rng, leak, n=12, t=80):
    """Shadow population where the unlearned model keeps `leak` of a canary's membership boost."""
    forgotten = rng.random((n, t)) < 0.5
    base = rng.normal(1.0, 1.0, t)
    member_boost = 2.0
    def model(boost_forgotten):
        m = base + member_boost * np.where(forgotten, boost_forgotten, 1.0)
        return _logits(rng, n, t, m)
    test = {r: _logits(rng, n, 50, rng.normal(1.0, 1.0, 50)) for r in ("retrain", "unlearned", "original")}
    return Shadows(np.arange(t), np.zeros(t, dtype=int), forgotten,
                   {"retrain": model(0.0), "unlearned": model(leak), "original": model(1.0)}, test,
                   np.zeros(50, dtype=int))


def test_ulira_separates_a_leaky_method_and_not_an_exact_one():
    rng = np.random.default_rng(3)
    exact, leaky = ulira_audit(_shadows(rng, 0.0)), ulira_audit(_shadows(rng, 1.0))
    assert abs(exact["method"]["auc"] - 0.5) < 0.1
    assert leaky["method"]["auc"] > 0.8 and leaky["ceiling"]["auc"] > 0.8
    assert abs(leaky["floor"]["auc"] - 0.5) < 0.12  # the permutation null stays at chance
    assert leaky["method"]["auc_ci"][0] <= leaky["method"]["auc"] <= leaky["method"]["auc_ci"][1]
    assert leaky["method"]["most_vulnerable"]


@pytest.mark.parametrize("kind", ["lira", "rmia"])
def test_membership_games_match_the_oracle_only_when_forgotten(kind):
    rng = np.random.default_rng(4)
    exact, leaky = membership_audit(_shadows(rng, 0.0), kind), membership_audit(_shadows(rng, 1.0), kind)
    assert exact["oracle"]["auc"] > 0.75  # kept canaries are members, forgotten ones are not: detectable
    assert exact["gap_to_oracle"] < 0.1
    assert abs(leaky["method"]["auc"] - 0.5) < 0.1  # nothing forgotten: kept and forgotten look alike
    assert leaky["gap_to_oracle"] > 0.2


def test_rmia_hand_computed():
    # ratios x: 0.5/0.25 = 2 and 0.1/0.5 = 0.2; population ratios z: 0.4/0.4 = 1, 0.9/0.3 = 3
    s = rmia_scores(np.array([0.5, 0.1]), np.array([[0.2, 0.4], [0.3, 0.6]]), np.array([0.4, 0.9]),
                    np.array([[0.4, 0.3], [0.4, 0.3]]))
    assert s.tolist() == [0.5, 0.0]  # LR(x, z) >= 1 for z with ratio <= ratio_x
    with pytest.raises(ConfigError):
        rmia_scores(np.array([0.5]), np.array([[0.2]]), np.array([0.4]), np.array([[0.4]]), gamma=0)


def test_parse_attacks_and_reading():
    assert parse_attacks("ulira, klom") == ("ulira", "klom")
    assert "rmia" in parse_attacks("all")
    with pytest.raises(ConfigError, match="Did you mean 'ulira'"):
        parse_attacks("ulria")
    assert reading(0.0, 0.0, 1.0).startswith("near floor")
    assert reading(1.0, 0.0, 1.0).startswith("near ceiling")
    assert "50%" in reading(0.5, 0.0, 1.0)
    assert "cannot show" in reading(0.5, 1.0, 1.0)


def test_summary_rows_cover_each_attack():
    rng = np.random.default_rng(5)
    pop, sh = _fixed(rng, gap=1.0), _shadows(rng, 0.5)
    res = {"attacks": {"klom": klom_audit(pop), "eps": challenge_audit(pop), "ps": privacy_score_audit(pop),
                       "ulira": ulira_audit(sh), "lira": membership_audit(sh, "lira")}}
    rows = summary_rows(res)
    assert {r[0] for r in rows} == {"klom", "eps", "ps", "ulira", "lira"}
    assert all(len(r) == 6 for r in rows)


def test_rank_auc_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    from unlearnlab.audit.privacy import rank_auc

    rng = np.random.default_rng(6)
    s = np.round(rng.normal(size=300), 1)  # ties included
    y = rng.random(300) < 0.4
    assert rank_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_klom_at_the_reference_size_uses_20_bin_histograms():
    """N = 64 models per side (>= 50): the binned estimator of the reference with 20 bins, no small-N note; the
    floor and ceiling still bracket an identical and a separated method."""
    rng = np.random.default_rng(5)
    same, far = klom_audit(_fixed(rng, n_models=64, gap=0.0)), klom_audit(_fixed(rng, n_models=64, gap=4.0))
    assert same["estimator"] == "binned" and same["bins"] == 20 and not same["notes"]
    s, f = same["splits"]["forget"], far["splits"]["forget"]
    assert s["method@N/2"]["q50"] < 2 * s["floor"]["q50"] + 0.1
    assert f["method@N/2"]["q50"] > 5 * f["floor"]["q50"] and f["ceiling"]["q50"] > 5 * f["floor"]["q50"]


def test_ulira_with_enough_shadows_fits_a_variance_per_canary():
    """64 shadows, each canary forgotten by about half of them (~31 of the other 63, well above 16 for every
    canary), so LiRA's per-example Gaussians are fitted (no pooled-variance note) and the game still separates a
    leaky method from an exact one."""
    rng = np.random.default_rng(6)
    exact, leaky = ulira_audit(_shadows(rng, 0.0, n=64, t=60)), ulira_audit(_shadows(rng, 1.0, n=64, t=60))
    assert not any("pooled variance" in n for n in exact["notes"] + leaky["notes"])
    assert abs(exact["method"]["auc"] - 0.5) < 0.08
    assert leaky["method"]["auc"] > 0.85 and abs(leaky["floor"]["auc"] - 0.5) < 0.08
