"""Population privacy audits from stacked per-example outputs (pure functions of audit.populations' arrays).

Every metric comes with calibration rows computed the same way at the same population size: the floor (oracle vs
oracle: two disjoint halves of the retrained population, or the attack played on the retrained models themselves)
and the ceiling (original vs oracle: no unlearning at all). A method's number means something only against them.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..eval import lira as L
from ..eval import population as P
from ..eval.privacy_score import privacy_score
from ..seeding import numpy_rng
from .populations import Fixed, Shadows

KLOM_QUANTILES = (0.5, 0.95, 0.99)
PER_EXAMPLE_VARIANCE_MIN = 16  # LiRA: fewer in/out shadows per example -> one pooled (global) variance


def _halves(n: int) -> tuple[slice, slice]:
    h = n // 2
    return slice(0, h), slice(h, 2 * h)


def _two_fold(f: Callable[[np.ndarray, np.ndarray], np.ndarray], a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Mean of f(a[first half], r[second half]) and f(a[second], r[first]): disjoint oracle halves, equal sizes."""
    s1, s2 = _halves(len(r))
    return (np.asarray(f(a[s1], r[s2]), dtype=np.float64) + np.asarray(f(a[s2], r[s1]), dtype=np.float64)) / 2


def _summary(values: np.ndarray) -> dict[str, float]:
    return P.quantile_summary(values, None, KLOM_QUANTILES)["all"]


def klom_audit(pop: Fixed, *, estimator: str = "auto", direction: str = "paper") -> dict:
    """KLoM per split (forget / retain / test) at upper quantiles; method at N and N/2, floor and ceiling at N/2."""
    n = len(pop.seeds)
    bins = 20 if n >= 50 else 10
    estimator = estimator if estimator != "auto" else ("binned" if n >= 50 else "gaussian")
    fn = lambda a, b: P.klom(a, b, estimator=estimator, direction=direction, bins=bins)  # noqa: E731
    out: dict = {"n_models": n, "calibration_models": n // 2, "estimator": estimator, "bins": bins,
                 "direction": "KL(unlearned || oracle)" if direction == "paper" else "KL(oracle || unlearned)",
                 "splits": {}, "notes": []}
    if n < 50:
        out["notes"].append(f"N = {n} models per side (the reference uses 100): "
                            + ("a Gaussian KL per example instead of 20-bin histograms, which are empty at this N; "
                               if estimator == "gaussian" else "10 bins instead of 20; ")
                            + "read the method against the floor row (oracle halves), whose KLoM is > 0 at small N.")
    for split in ("forget", "retain", "test"):
        if split not in pop.labels:
            continue
        m = {role: P.margins(pop.logits[role][split], pop.labels[split]) for role in pop.logits}
        row = {"method": _summary(fn(m["unlearned"], m["retrain"]))}
        if n >= 8:
            row["method@N/2"] = _summary(_two_fold(fn, m["unlearned"], m["retrain"]))
            row["floor"] = _summary(_two_fold(fn, m["retrain"], m["retrain"]))
            row["ceiling"] = _summary(_two_fold(fn, m["original"], m["retrain"]))
        out["splits"][split] = row
    if n < 8:
        out["notes"].append("Fewer than 8 models per side: no floor / ceiling rows (they need two halves of >= 4).")
    return out


def _ratio(metrics: list[dict], ref: list[dict], key: str) -> float:
    a = [m.get(key) for m in metrics if isinstance(m.get(key), (int, float))]
    b = [m.get(key) for m in ref if isinstance(m.get(key), (int, float))]
    return float(np.mean(a) / np.mean(b)) if a and b and np.mean(b) > 0 else math.nan


def challenge_audit(pop: Fixed) -> dict:
    """NeurIPS'23 challenge score F (and F x RA/TA ratios) on the forget set; calibration at N/2."""
    conf = {role: P.logit_scaled_confidence(pop.logits[role]["forget"], pop.labels["forget"]) for role in pop.logits}
    ra = _ratio(pop.metrics["unlearned"], pop.metrics["retrain"], "RA")
    ta = _ratio(pop.metrics["unlearned"], pop.metrics["retrain"], "TA")
    n = len(pop.seeds)
    out: dict = {"n_models": n, "notes": []}
    if n < 3:
        out["notes"].append(f"The challenge score needs >= 3 models per side; got {n}. Raise --population.")
        return out
    full = P.challenge_score(conf["unlearned"], conf["retrain"], ra_ratio=ra, ta_ratio=ta)
    out.update({"F": full.forget_score, "score": full.final_score, "ra_ratio": ra, "ta_ratio": ta,
                "max_epsilon": full.max_epsilon, "epsilon": _summary(np.nan_to_num(full.epsilons, nan=50.0)),
                "notes": list(full.notes)})
    if n >= 6:
        f_of = lambda a, b: np.array(P.challenge_score(a, b).forget_score)  # noqa: E731
        out["calibration_models"] = n // 2
        out["F@N/2"] = float(_two_fold(f_of, conf["unlearned"], conf["retrain"]))
        out["floor"] = float(_two_fold(f_of, conf["retrain"], conf["retrain"]))
        out["ceiling"] = float(_two_fold(f_of, conf["original"], conf["retrain"]))
    else:
        out["notes"].append("Fewer than 6 models per side: no floor / ceiling rows (halves need >= 3 models).")
    return out


def privacy_score_audit(pop: Fixed) -> dict:
    """Unlearning Comparator's PS per seed (unlearned vs its own seed's oracle, forget set), with a 95% bootstrap
    interval over seeds; floor: oracle of the next seed vs the oracle; ceiling: original vs oracle."""
    fl = pop.logits
    n = len(pop.seeds)
    rows = {"method": [privacy_score(fl["unlearned"]["forget"][i], fl["retrain"]["forget"][i])["ps"]
                       for i in range(n)],
            "floor": [privacy_score(fl["retrain"]["forget"][(i + 1) % n], fl["retrain"]["forget"][i])["ps"]
                      for i in range(n)],
            "ceiling": [privacy_score(fl["original"]["forget"][i], fl["retrain"]["forget"][i])["ps"]
                        for i in range(n)]}
    out: dict = {"n_models": n, "notes": ["PS = 1 is indistinguishable from the oracle (Comparator's reference is "
                                          "one retrained model and the forget class; here the forget set)."]}
    for k, v in rows.items():
        arr = np.asarray(v)
        out[k] = P.bootstrap_interval(np.mean, [arr], n_resamples=500) if n >= 2 else {"value": float(arr.mean())}
    return out


# ----------------------------------------------------------------------------- shadow attacks
def rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half): equal to sklearn's roc_auc_score, ~100x faster
    for the thousands of bootstrap resamples an audit draws."""
    from scipy.stats import rankdata

    r = rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc_ci(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, reps: int = 200) -> tuple[float, float]:
    """95% bootstrap interval of the AUC, resampling canaries (all of a canary's scores move together)."""
    rng = numpy_rng(0, "audit-auc-bootstrap")
    uniq = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in uniq}
    stats = []
    for _ in range(reps):
        idx = np.concatenate([members[g] for g in rng.choice(uniq, len(uniq))])
        if labels[idx].all() or not labels[idx].any():
            continue
        stats.append(rank_auc(scores[idx], labels[idx]))
    return (float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))) if stats else (math.nan, math.nan)


def _game_result(scores: np.ndarray, labels: np.ndarray, canary: np.ndarray, pool: np.ndarray) -> dict:
    """Attack metrics (AUC with a bootstrap interval, TPR at low FPR) and per-canary vulnerability."""
    res = L.attack_metrics(scores, labels)
    res["auc_ci"] = list(_auc_ci(scores, labels, canary))
    res["n_scores"], res["n_negatives"] = int(len(scores)), int((~labels).sum())
    vul = np.full(len(pool), np.nan)
    for i in range(len(pool)):
        sel = canary == i
        pos, neg = scores[sel & labels], scores[sel & ~labels]
        if len(pos) and len(neg):
            vul[i] = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    res["vulnerability"] = _summary(vul[~np.isnan(vul)]) if (~np.isnan(vul)).any() else {}
    top = np.argsort(-np.nan_to_num(vul, nan=-1.0))[:10]
    res["most_vulnerable"] = [{"train_index": int(pool[i]), "auc": float(vul[i])} for i in top if not np.isnan(vul[i])]
    return res


def _low_fpr_notes(n_neg: int) -> list[str]:
    return [f"TPR@{f:g} rests on {n_neg} negative scores: fewer than {int(1 / f)} cannot resolve that FPR."
            for f in L.LOW_FPRS if n_neg * f < 1]


def _lr_game(pos_pop: np.ndarray, pos_mask: np.ndarray, neg_pop: np.ndarray, neg_mask: np.ndarray,
             targets: list[tuple[np.ndarray, bool, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Leave-one-shadow-out likelihood-ratio game: for each shadow j, Gaussians per canary are fitted on the OTHER
    shadows (positive population where pos_mask, negative where neg_mask) and each target (stats [n, T], label,
    mask [n, T]) of shadow j is scored on the canaries its mask selects. Returns scores, labels, canaries, and
    whether any fit had enough shadows for a per-example variance."""
    n = len(pos_mask)
    scores, labels, canary = [], [], []
    per_example = False
    for j in range(n):
        others = np.arange(n) != j
        pm, nm = pos_mask[others], neg_mask[others]
        pos, neg = np.where(pm, pos_pop[others], np.nan), np.where(nm, neg_pop[others], np.nan)
        fit_ok = (pm.sum(0) >= 1) & (nm.sum(0) >= 1)
        for stats, lab, mask in targets:
            ok = mask[j] & fit_ok
            if not ok.any():
                continue
            fix = int(min(pm[:, ok].sum(0).min(), nm[:, ok].sum(0).min())) < PER_EXAMPLE_VARIANCE_MIN
            per_example |= not fix
            scores.append(L.gaussian_lr_scores(stats[j:j + 1, ok], pos[:, ok], neg[:, ok], fix_variance=fix)[0])
            labels.append(np.full(int(ok.sum()), lab))
            canary.append(np.flatnonzero(ok))
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(canary), per_example


def ulira_audit(sh: Shadows) -> dict:
    """U-LiRA (Hayes et al. 2024): "trained then unlearned" vs "retrained without the canary", per canary, leave
    one shadow out. Rows: the method; the floor (a permutation null: each shadow's unlearned and retrained models swap
    roles by a coin flip per canary, so both populations are exchangeable and AUC = 0.5 up to finite-population
    noise); the ceiling (the original, never unlearned, in the unlearned role)."""
    conf = {r: P.logit_scaled_confidence(v, sh.labels) for r, v in sh.logits.items()}
    f = sh.forgotten
    out: dict = {"n_shadows": int(len(f)), "canaries": int(len(sh.pool)), "notes": []}
    per_ex = False
    for row, pos in (("method", conf["unlearned"]), ("ceiling", conf["original"])):
        s, y, c, pe = _lr_game(pos, f, conf["retrain"], f, [(pos, True, f), (conf["retrain"], False, f)])
        out[row], per_ex = _game_result(s, y, c, sh.pool), per_ex or pe
    coin = numpy_rng(0, "audit-ulira-null").random(f.shape) < 0.5  # floor: a permutation null of the same game
    a, b = np.where(coin, conf["unlearned"], conf["retrain"]), np.where(coin, conf["retrain"], conf["unlearned"])
    s, y, c, _ = _lr_game(a, f, b, f, [(a, True, f), (b, False, f)])
    out["floor"] = _game_result(s, y, c, sh.pool)
    if not per_ex:
        out["notes"].append(f"Fewer than {PER_EXAMPLE_VARIANCE_MIN} shadows forgot each canary: one pooled variance "
                            "per population (LiRA's global variance), as its authors advise for few shadows.")
    out["notes"] += _low_fpr_notes(out["method"]["n_negatives"])
    return out


def _membership_game(sh: Shadows, target: np.ndarray, target_test: np.ndarray, kind: str) -> dict:
    """Members (canaries the target shadow kept) vs forgotten canaries, attacked with the other shadows' ORACLES as
    references (each canary is in about half of them): LiRA online, or RMIA with test points as population z."""
    conf_r = P.logit_scaled_confidence(sh.logits["retrain"], sh.labels)
    n = len(sh.forgotten)
    p_r = _p_true(sh.logits["retrain"], sh.labels)
    pz_r = _p_true(sh.test_logits["retrain"], sh.test_labels)
    scores, labels, canary = [], [], []
    for j in range(n):
        others = np.arange(n) != j
        keep = ~sh.forgotten[others]
        ok = (keep.sum(0) >= 1) & ((~keep).sum(0) >= 1)  # a canary needs IN and OUT references
        if kind == "lira":
            t = P.logit_scaled_confidence(target[j:j + 1], sh.labels)[:, ok]
            s = L.lira_scores(t, conf_r[others][:, ok], keep[:, ok], fix_variance=True)[0]
        else:
            s = L.rmia_scores(_p_true(target[j:j + 1], sh.labels)[0][ok], p_r[others][:, ok],
                              _p_true(target_test[j:j + 1], sh.test_labels)[0], pz_r[others])
        scores.append(s)
        labels.append(~sh.forgotten[j][ok])
        canary.append(np.flatnonzero(ok))
    return _game_result(np.concatenate(scores), np.concatenate(labels), np.concatenate(canary), sh.pool)


def _p_true(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    return np.take_along_axis(p, np.asarray(labels)[None, :, None], axis=2)[..., 0]


def membership_audit(sh: Shadows, kind: str) -> dict:
    """LiRA or RMIA membership game (kept canaries = members, forgotten = non-members) on the unlearned shadows,
    beside the same game on the oracles (the target: retraining) and on the originals (nothing forgotten)."""
    out: dict = {"n_shadows": len(sh.forgotten), "canaries": int(len(sh.pool)),
                 "notes": ["Read the method against the oracle row: equal AUC = forgotten canaries look like "
                           "never-seen ones; the original row (AUC ~ 0.5) is what no forgetting looks like."]}
    for row, role in (("method", "unlearned"), ("oracle", "retrain"), ("original", "original")):
        out[row] = _membership_game(sh, sh.logits[role], sh.test_logits[role], kind)
    out["gap_to_oracle"] = abs(out["method"]["auc"] - out["oracle"]["auc"])
    if kind == "lira":
        out["notes"].append("LiRA with one pooled variance (few shadows), online (IN and OUT references).")
    else:
        out["notes"].append("RMIA online with gamma = 1 and the test split as the population z.")
    out["notes"] += _low_fpr_notes(out["method"]["n_negatives"])
    return out


__all__ = ["challenge_audit", "klom_audit", "membership_audit", "privacy_score_audit", "ulira_audit"]
