"""Audit forget scenarios (issue 14): spellings, worst-case selection, memorisation ranking, corrective poisoning and
sequential requests, directly and through the engine."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unlearnlab import api
from unlearnlab.cli import app
from unlearnlab.data import load_dataset, make_split, memorisation, parse_forget, worst_case
from unlearnlab.data.memorisation import per_example_loss
from unlearnlab.data.scenarios import forget_indices, sequence_steps
from unlearnlab.errors import DataError

FAST = {"recipe": {"epochs": 3}, "model": "mlp", "seeds": [0]}


@pytest.mark.parametrize("text,canon", [
    ("hard:10%", "hard:10%"), ("easy:5", "easy:5%"), ("worst:10%", "worst:10%:ft"), ("worst:2%:ga", "worst:2%:ga"),
    ("seq:random:5%x4", "seq:random:5%x4"), ("seq:sample:20x3", "seq:sample:20x3"),
    ("poison:patch:100", "poison:patch:100:known=10%:target=0"),
    ("poison:swap:4%:classes=1-7:known=50%", "poison:swap:4%:known=50%:classes=1-7"),
])
def test_spellings_round_trip(text, canon):
    assert str(parse_forget(text)) == canon and parse_forget(canon) == parse_forget(text)


@pytest.mark.parametrize("text,needle", [
    ("worst:10%:salun", "lower level must be one of ft, ga, rl"), ("seq:class:3x2", "random:<pct> or sample:<n>"),
    ("seq:random:5%", "seq:<request>x<k>"), ("poison:patch", "poison:patch:<n>"),
    ("poison:swap:40:target=1", "classes=<a>-<b>"), ("val:val:hard:10%", "val: can be given once"),
    ("hard:150%", "(0, 100)"),
])
def test_bad_spellings_say_what_to_write(text, needle):
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_forget(text)


@pytest.mark.parametrize("forget,needle", [("worst:10%:xx", "lower level"), ("seq:random:40%x3", "nothing to retain"),
                                           ("poison:patch:1000", "more than half")])
def test_cli_exit_2_on_bad_scenario(forget, needle, tmp_path):
    r = CliRunner().invoke(app, ["run", "--results", str(tmp_path), "--dataset", "digits", "--forget", forget])
    assert r.exit_code == 2, r.output
    assert needle in r.output


def test_model_chosen_scenarios_refuse_label_only_selection(blobs_data):
    with pytest.raises(DataError, match="trained model"):
        forget_indices("hard:10%", blobs_data.train.y.numpy(), 0)
    with pytest.raises(DataError, match="selector"):
        make_split(blobs_data.train, blobs_data.test, "worst:10%", 0, num_classes=4)


def test_projection_onto_the_capped_simplex():
    w = torch.tensor([3.0, -1.0, 0.5, 0.2, 0.9], dtype=torch.float64)
    p = worst_case.project(w, 2.0)
    assert abs(float(p.sum()) - 2.0) < 1e-4 and float(p.min()) >= 0 and float(p.max()) <= 1
    assert p[0] == 1.0 and p[1] == 0.0 and p[2] > p[3]  # order-preserving, capped at 1


def test_worst_case_set_is_harder_to_forget_than_a_random_set(trained_mlp, blobs_data):
    """GA minimises the forget loss -CE(D_f): after GA the worst-case set's forget loss is higher (its CE lower: the
    model still fits it) than a random set's of the same size."""
    size = 60
    rows = worst_case.select(trained_mlp, blobs_data, "ga", size, seed=0)
    assert len(rows) == size and np.array_equal(rows, worst_case.select(trained_mlp, blobs_data, "ga", size, seed=0))
    rand = np.sort(np.random.default_rng(0).choice(len(blobs_data.train), size, replace=False))
    ga_forget_loss = {}
    for name, f in (("worst", rows), ("random", rand)):
        from unlearnlab.tasks.scenario_split import with_forget

        d = with_forget(blobs_data, f)
        out = api.unlearn(trained_mlp, d, "ga", lr=1e-3, batch_size=16)
        ga_forget_loss[name] = -float(per_example_loss(out, d.forget).mean())
    assert ga_forget_loss["worst"] > ga_forget_loss["random"], ga_forget_loss


def test_out_of_fold_loss_ranks_hard_above_easy(blobs_data, recipe, task4):
    from unlearnlab.data.core import subset
    from unlearnlab.models import build_model
    from unlearnlab.train import train

    calls = []

    def fit(rows, fold):
        calls.append(rows)
        return train(build_model("mlp", blobs_data.input_shape, 4, seed=fold), subset(blobs_data.train, rows),
                     recipe, task4, seed=fold)

    scores = memorisation.out_of_fold_loss(blobs_data.train, fit, folds=3, seed=0)
    assert len(calls) == 3 and sum(len(blobs_data.train) - len(c) for c in calls) == len(blobs_data.train)
    hard = memorisation.rank_select(scores, 30, hardest=True)
    easy = memorisation.rank_select(scores, 30, hardest=False)
    assert not set(hard) & set(easy) and scores[hard].min() >= scores[easy].max()


def test_hard_forget_set_through_the_engine_is_memorised(tmp_path):
    """The oracle (never trained on them) misclassifies hard rows far more often than easy rows; rows recorded."""
    ua = {}
    for kind in ("hard", "easy"):
        res = api.run({"dataset": "digits", "forget": f"{kind}:5%", "methods": ["ga"], "recipe": {"epochs": 10},
                       "seeds": [0]})
        assert not res["errors"]
        rec = {r["spec"]["method"]: r for r in res["records"]}
        fs = rec["ga"]["forget_set"]
        assert len(fs["forget"]) == 72 and fs["selector"].startswith("out-of-fold") and fs["scenario"] == f"{kind}:5%"
        ua[kind] = rec["retrain"]["metrics"]["UA"]
    assert ua["hard"] > ua["easy"] + 20, ua


def test_worst_case_through_the_engine_records_its_rows():
    res = api.run({"dataset": "blobs", "forget": "worst:5%:ft", "methods": ["ga"], **FAST})
    assert not res["errors"]
    fs = res["records"][0]["forget_set"]
    assert len(fs["forget"]) == 30 and "worst-case" in fs["selector"] and fs["config"]["w_lr"] == 0.01


def test_patch_poison_splits_and_labels():
    b = load_dataset("digits")
    s = parse_forget("poison:patch:60:known=25%:target=2")
    d = make_split(b.train, b.test, s, 0, num_classes=10)
    bad = np.asarray(d.extra["oracle_forget"])
    assert len(bad) == 60 and len(d.forget_idx) == 15 and set(d.forget_idx) <= set(bad)
    assert (d.train.y[bad] == 2).all() and (b.train.y[bad] != 2).any()  # relabelled to the target
    top = float(b.train.x.max())
    assert (d.train.x[bad][..., -3:, -3:] == top).all()
    assert torch.equal(d.train.x[:, :, :5, :5], b.train.x[:, :, :5, :5])  # nothing outside the patch changes
    sp = d.splits()
    assert (sp["attack_target"].y == 2).all() and len(sp["attack_target"]) == int((b.test.y != 2).sum())
    assert torch.equal(sp["attack"].y, b.test.y) and (sp["attack"].x[..., -3:, -3:] == top).all()
    assert torch.equal(sp["poisoned"].y, b.train.y[bad])


def test_label_swap_poison():
    b = load_dataset("digits")
    d = make_split(b.train, b.test, "poison:swap:40:known=50%", 0, num_classes=10)
    bad = np.asarray(d.extra["oracle_forget"])
    orig, now = b.train.y[bad].numpy(), d.train.y[bad].numpy()
    assert sorted(np.bincount(orig, minlength=10)[[3, 5]]) == [20, 20] and ((orig == 3) == (now == 5)).all()
    assert set(d.splits()["attack"].y.tolist()) == {3, 5}


def test_corrective_run_original_is_backdoored_and_oracle_is_clean():
    res = api.run({"dataset": "digits", "forget": "poison:patch:100:known=20%", "methods": ["ga"],
                   "recipe": {"epochs": 15}, "seeds": [0]})
    assert not res["errors"]
    rec = {r["spec"]["method"]: r for r in res["records"]}
    orig, oracle = rec["original"]["metrics"], rec["retrain"]["metrics"]
    assert orig["ASR"] > 80 and oracle["ASR"] < 20 and oracle["Poison-Acc"] > orig["Poison-Acc"] + 40
    assert len(rec["ga"]["forget_set"]["poisoned"]) == 100 and len(rec["ga"]["forget_set"]["forget"]) == 20
    # the oracle was retrained without all 100 poisoned rows: it misfits the 80 unknown ones kept in D_r
    assert oracle["RA"] < 99 < orig["RA"]


def test_sequential_requests_metrics_after_each_step():
    res = api.run({"dataset": "blobs", "forget": "seq:random:5%x3", "methods": ["ga"], **FAST})
    assert not res["errors"]
    rec = {r["spec"]["method"]: r for r in res["records"]}
    steps = rec["ga"]["steps"]
    assert [s["forgotten"] for s in steps] == [30, 60, 90] and [s["request"] for s in steps] == [30, 30, 30]
    final = steps[-1]["metrics"]
    for k in ("UA", "RA", "TA", "Avg.Gap"):
        assert final[k] == pytest.approx(rec["ga"]["metrics"][k])
    fs = rec["ga"]["forget_set"]
    assert "steps" not in rec["original"] and len(fs["forget"]) == 90 and sum(fs["class_counts"]) == 90
    assert sorted(sum(fs["requests"], [])) == fs["forget"] and len(fs["requests"]) == 3


def test_sequence_steps_are_disjoint_and_deterministic():
    y = np.arange(200) % 4
    a, b = sequence_steps("seq:sample:20x4", y, 3), sequence_steps("seq:sample:20x4", y, 3)
    assert all(np.array_equal(x, z) for x, z in zip(a, b))
    assert len(np.unique(np.concatenate(a))) == 80


def test_bring_your_own_model_worst_case_split(trained_mlp, blobs_data):
    sel = worst_case.selector(trained_mlp, seed=0)
    d = make_split(blobs_data.train, blobs_data.test, "worst:5%:ga", 0, num_classes=4, selector=sel)
    direct = worst_case.select(trained_mlp, blobs_data.train, "ga", 30, seed=0)
    assert np.array_equal(d.forget_idx, direct) and d.extra["forget_record"]["scenario"] == "worst:5%:ga"


def test_model_chosen_rows_are_deterministic_per_split_seed():
    from unlearnlab.spec import from_dict
    from unlearnlab.tasks import scenario_split

    b = load_dataset("blobs")
    rows = []
    for split_seed in (0, 0, 1):
        scenario_split._MEMO.clear()  # recompute: the same split seed must give the same rows
        spec = from_dict({"dataset": "blobs", "forget": "hard:5%", "split_seed": split_seed, **FAST})
        rows.append(scenario_split.build_split(spec, b).forget_idx)
    assert np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[0], rows[2])


def test_worst_case_uses_the_users_original_checkpoint(tmp_path, trained_mlp):
    from unlearnlab.models import save_checkpoint
    from unlearnlab.spec import from_dict
    from unlearnlab.tasks.scenario_split import build_split

    b = load_dataset("blobs")
    ck = tmp_path / "orig"
    save_checkpoint(ck, trained_mlp, {"arch": "mlp", "dataset": "blobs", "data_hash": b.train.fingerprint()})
    spec = from_dict({"dataset": "blobs", "forget": "worst:5%:ga", "original": str(ck), **FAST})
    assert np.array_equal(build_split(spec, b).forget_idx, worst_case.select(trained_mlp, b.train, "ga", 30, seed=0))


def test_cli_poison_run_shows_the_corrective_columns():
    r = CliRunner().invoke(app, ["run", "--dataset", "digits", "--forget", "poison:patch:100", "--methods", "ga",
                                 "--epochs", "5", "--no-store", "--backend", "serial"])
    assert r.exit_code == 0, r.output
    assert "ASR" in r.output and "Corrected-Acc" in r.output


def test_cli_seq_run_prints_each_request():
    r = CliRunner().invoke(app, ["run", "--dataset", "blobs", "--forget", "seq:random:5%x2", "--methods", "ga",
                                 "--epochs", "3", "--no-store", "--backend", "serial"])
    assert r.exit_code == 0, r.output
    assert re.search(r"after each request: ga seed 0 Avg\.Gap \d+\.\d\d, \d+\.\d\d", r.output), r.output


def test_random_label_lower_level(trained_mlp, blobs_data):
    a = worst_case.select(trained_mlp, blobs_data, "rl", 30, seed=1)
    assert len(a) == 30 and np.array_equal(a, worst_case.select(trained_mlp, blobs_data, "rl", 30, seed=1))
