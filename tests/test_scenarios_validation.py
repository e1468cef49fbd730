"""Validation forms (val:) of the audit forget scenarios (issue 14): each is the same kind and size as the reported
scenario, disjoint from it, deterministic, and tune() selects on it."""
from __future__ import annotations

import numpy as np
import pytest

from unlearnlab import api
from unlearnlab.data import load_dataset, make_split, worst_case
from unlearnlab.data.poison import poisoned_indices
from unlearnlab.data.scenarios import forget_indices, parse_forget, sequence_steps
from unlearnlab.errors import DataError

FAST = {"recipe": {"epochs": 3}, "model": "mlp", "seeds": [0]}


def test_val_seq_is_the_next_requests_of_the_same_order():
    y = np.arange(400) % 4
    rep, val = sequence_steps("seq:sample:20x3", y, 5), sequence_steps("val:seq:sample:20x3", y, 5)
    assert [len(r) for r in val] == [20, 20, 20]
    assert np.intersect1d(np.concatenate(rep), np.concatenate(val)).size == 0
    assert np.array_equal(forget_indices("val:seq:sample:20x3", y, 5), np.sort(np.concatenate(val)))
    assert all(np.array_equal(a, b) for a, b in zip(val, sequence_steps("val:seq:sample:20x3", y, 5)))
    # the reported sequence alone fits; with its validation sequence it would not
    sequence_steps("seq:sample:100x3", y, 0)
    with pytest.raises(DataError, match="validation sequence"):
        sequence_steps("val:seq:sample:100x3", y, 0)


@pytest.mark.parametrize("spec", ["poison:patch:60:known=25%:target=2", "poison:swap:40:known=50%:classes=1-7"])
def test_val_poison_poisons_other_rows_of_the_same_kind(spec):
    b = load_dataset("digits")
    y = b.train.y.numpy()
    rep, val = parse_forget(spec), parse_forget("val:" + spec)
    bad, vbad = poisoned_indices(rep, y, 0, 10), poisoned_indices(val, y, 0, 10)
    assert len(vbad) == len(bad) and np.intersect1d(bad, vbad).size == 0
    if rep.method == "swap":  # the same confused pair, half from each class
        assert sorted(np.bincount(y[vbad], minlength=10)[[1, 7]]) == [20, 20]
    d, dv = (make_split(b.train, b.test, s, 0, num_classes=10) for s in (rep, val))
    assert np.array_equal(dv.extra["oracle_forget"], vbad) and set(dv.forget_idx) <= set(vbad)
    assert len(dv.forget_idx) == len(d.forget_idx) and dv.scenario == "val:" + str(rep)
    # the validation train set is manipulated at its own rows only, so its original is another model
    changed = np.flatnonzero((dv.train.y != b.train.y).numpy())
    assert set(changed) <= set(vbad) and not set(changed) & set(bad)
    assert dv.train.fingerprint() != d.train.fingerprint()


def test_val_worst_excludes_the_reported_rows(trained_mlp, blobs_data):
    rep = worst_case.select(trained_mlp, blobs_data.train, "ft", 30, seed=0)
    val = worst_case.select(trained_mlp, blobs_data.train, "ft", 30, seed=0, exclude=rep)
    assert len(val) == 30 and np.intersect1d(rep, val).size == 0
    with pytest.raises(DataError, match="selectable"):
        worst_case.select(trained_mlp, blobs_data.train, "ft", len(blobs_data.train) - 20, seed=0,
                          exclude=np.arange(20))


def test_val_hard_and_easy_through_build_split_share_one_ranking(monkeypatch):
    from unlearnlab.data import memorisation
    from unlearnlab.spec import from_dict
    from unlearnlab.tasks import scenario_split

    scenario_split._MEMO.clear()
    scored = []
    real = memorisation.out_of_fold_loss
    monkeypatch.setattr(memorisation, "out_of_fold_loss", lambda *a, **k: scored.append(1) or real(*a, **k))
    b = load_dataset("blobs")
    got = {f: scenario_split.build_split(from_dict({"dataset": "blobs", "forget": f, **FAST}), b)
           for f in ("hard:5%", "val:hard:5%", "easy:5%", "val:easy:5%")}
    assert len(scored) == 1  # one out-of-fold ranking serves all four sets
    for kind in ("hard", "easy"):
        rep, val = got[f"{kind}:5%"], got[f"val:{kind}:5%"]
        assert len(val.forget_idx) == len(rep.forget_idx) == 30
        assert np.intersect1d(val.forget_idx, rep.forget_idx).size == 0
        rs, vs = rep.extra["forget_record"]["scores"], val.extra["forget_record"]["scores"]
        # the next 5% of the same ranking: a little less extreme than the reported set, never more
        assert (min(rs) >= max(vs)) if kind == "hard" else (max(rs) <= min(vs))
        assert "ranks 31-60" in val.extra["forget_record"]["selector"]
    with pytest.raises(DataError, match="nothing to retain"):
        scenario_split.build_split(from_dict({"dataset": "blobs", "forget": "val:hard:60%", **FAST}), b)


def test_tune_on_an_audit_scenario_selects_on_its_validation_form(monkeypatch):
    calls = []
    real_run = api.run

    def spy(spec, **kw):
        calls.append(spec["forget"])
        return real_run(spec, **kw)

    monkeypatch.setattr(api, "run", spy)
    r = api.tune({"dataset": "blobs", "forget": "seq:random:5%x2", "model": "mlp", "seeds": 1,
                  "recipe": {"epochs": 3}}, ["ga"], budget=2, seed=0)
    assert calls == ["val:seq:random:5%x2"] * 2 + ["seq:random:5%x2"]
    assert r["validation_forget"] == "val:seq:random:5%x2" and len(r["methods"]["ga"]["trials"]) == 2
    final = [x for x in r["records"] if x["spec"]["method"] == "ga"][0]
    val_rows = forget_indices("val:seq:random:5%x2", load_dataset("blobs").train.y.numpy(), 0)
    assert np.intersect1d(final["forget_set"]["forget"], val_rows).size == 0 and len(final["steps"]) == 2


@pytest.mark.parametrize("forget", ["poison:swap:20:classes=0-1", "val:poison:swap:20:classes=0-1"])
def test_poison_scenarios_refuse_a_clean_original_checkpoint(forget, tmp_path, trained_mlp):
    from unlearnlab.errors import ConfigError
    from unlearnlab.models import save_checkpoint

    b = load_dataset("blobs")
    ck = tmp_path / "orig"
    save_checkpoint(ck, trained_mlp, {"arch": "mlp", "dataset": "blobs", "data_hash": b.train.fingerprint()})
    with pytest.raises(ConfigError, match="cannot be the poisoned model"):
        api.run({"dataset": "blobs", "forget": forget, "original": str(ck), "methods": ["ga"], **FAST})
