"""Sanity warnings of LM runs: the target did not learn D_f, Forget Quality takes too few values, a method changed
nothing; each stored in the record and emitted as a warning event."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.stats import ks_2samp

from unlearnlab.tasks.lm import run_lm
from unlearnlab.tasks.lm_checks import (
    ks_distinct_values,
    not_learned_warning,
    small_forget_warning,
    unchanged_warning,
)


def test_ks_distinct_values_bounds_the_p_values_scipy_gives():
    assert ks_distinct_values(40, 40) == 41 and ks_distinct_values(2, 3) == 6  # {0,1,2,3,4,6}/6
    for n, m in ((3, 3), (2, 4), (4, 5)):
        pvalues = set()
        for left in itertools.combinations(range(n + m), n):  # every interleaving of two samples without ties
            a = np.array(left, float)
            b = np.array([i for i in range(n + m) if i not in left], float)
            pvalues.add(round(ks_2samp(a, b).pvalue, 12))
        assert 1 < len(pvalues) <= ks_distinct_values(n, m)
    assert small_forget_warning(18) and "19 distinct" in small_forget_warning(18)[0]
    assert not small_forget_warning(19) and not small_forget_warning(400)


def test_not_learned_threshold_is_half_way_to_the_trained_level():
    oracle = {"forget_ROUGE": 0.30, "forget_Prob": 0.10}
    learned = {"forget_ROUGE": 0.90, "retain_ROUGE": 0.95, "forget_Prob": 0.80, "retain_Prob": 0.85}
    assert not not_learned_warning(learned, oracle)
    barely = {**learned, "forget_ROUGE": 0.55}  # (0.55 - 0.30) / (0.95 - 0.30) = 0.38 < 0.5
    (w,) = not_learned_warning(barely, oracle)
    assert "forget_ROUGE 0.550" in w and "forget_Prob" not in w
    assert not_learned_warning({**learned, "retain_Prob": 0.05}, oracle)  # knows nothing better than the oracle


def test_unchanged_warning_on_weights_or_forget_metrics():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    metrics = {"forget_ROUGE": 0.5, "forget_Prob": 0.2, "retain_ROUGE": 0.9}
    assert "exactly as the target's" in unchanged_warning("ga", a, a, metrics, lambda: None)[0]
    assert "every forget metric" in unchanged_warning("ga", a, b, metrics, lambda: {**metrics, "retain_ROUGE": 0.1})[0]
    assert not unchanged_warning("ga", a, b, metrics, lambda: {**metrics, "forget_Prob": 0.19})


def test_a_tiny_run_records_and_emits_each_warning(monkeypatch):
    from unlearnlab.engine import events

    emitted: list[str] = []
    real = events.emit
    monkeypatch.setattr("unlearnlab.tasks.lm_task.emit",
                        lambda kind, **kw: emitted.append(kw["text"]) if kind == "warning" else real(kind, **kw))
    # recipe epochs 0: the target is the untrained base (it learned nothing); GA at 0 epochs changes nothing
    spec = {"task": "qa", "model": "tiny", "dataset": "qa:authors=6,facts=4", "forget": "random:10%",
            "methods": ["ga"], "seeds": [0], "recipe": {"epochs": 0}, "overrides": {"ga": {"epochs": 0}},
            "device": "cpu", "eval": {"max_new_tokens": 16}}  # an untrained model never stops: short answers
    by = {r["spec"]["method"]: r for r in run_lm(spec)}
    orig = " ".join(by["original"]["warnings"])
    assert "did not learn the forget set" in orig and "Forget Quality cannot separate methods" in orig
    assert "exactly as the target's" in by["ga"]["warnings"][0] and "warnings" not in by["retrain"]
    assert set(emitted) == set(by["original"]["warnings"] + by["ga"]["warnings"])
