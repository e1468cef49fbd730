"""Budgeted tuning of language-model runs: the disjoint val: forget set of each LM source, and a tiny-LM tune."""
from __future__ import annotations

import json
import math

import pytest

from unlearnlab.data.corpus import validation_documents
from unlearnlab.data.lm_sources import forget_percent, lm_source, split_validation
from unlearnlab.data.qa import forget_authors, generate_qa, validation_authors
from unlearnlab.data.tofu import QA_PER_AUTHOR, validation_rows
from unlearnlab.errors import ConfigError, DataError


def _built(src):
    from unlearnlab.models.lm import load_lm

    _, tok = load_lm("tiny", texts=src.texts)
    return src.build(tok, 64, {})


def _authors(rows) -> set[str]:
    return {r["author"] for r in rows}


# ---- val: of generated QA ----------------------------------------------------------------------------------------

def test_forget_spec_val_prefix():
    assert split_validation("val:10%") == (True, "10%") and split_validation("random:10%") == (False, "random:10%")
    assert forget_percent("val:random:5%") == forget_percent("val:5%") == forget_percent("authors:5%") == "5%"


@pytest.mark.parametrize("pct,seed", [("10%", 0), ("20%", 3), ("35%", 1)])
def test_qa_val_authors_disjoint_same_size_deterministic(pct, seed):
    qa = generate_qa(20, facts=2, seed=seed, style="short")
    gone, val = forget_authors(qa.authors, pct, seed), validation_authors(qa.authors, pct, seed)
    assert len(val) == len(gone) and len(set(val)) == len(val)
    assert not set(val) & set(gone) and not set(val) & set(qa.holdout_authors) and set(val) <= set(qa.authors)
    assert validation_authors(qa.authors, pct, seed) == val


def test_qa_val_source_forgets_other_authors_and_retains_the_reported_ones():
    ds = "qa:authors=10,facts=2"
    rep, val = _built(lm_source(ds, "10%", 2)), _built(lm_source(ds, "val:10%", 2))
    rows = val.extra["rows"]
    assert _authors(rows["forget"]) == set(val.extra["forget_authors"])
    assert set(val.extra["reported_forget_authors"]) == _authors(rep.extra["rows"]["forget"])
    assert not _authors(rows["forget"]) & _authors(rep.extra["rows"]["forget"])
    assert _authors(rep.extra["rows"]["forget"]) <= _authors(rows["retain"])  # reported D_f is retained in val:
    assert not _authors(rows["forget"]) & _authors(rows["holdout"])
    assert len(val.forget_idx) == len(rep.forget_idx) and len(val.train) == len(rep.train)
    assert val.scenario == "val:authors:10%" and val.fingerprint() != rep.fingerprint()
    # the digest keys stored records: the val: form never answers for the reported one
    assert lm_source(ds, "10%", 2).digest != lm_source(ds, "val:10%", 2).digest
    assert lm_source(ds, "val:10%", 2).digest == lm_source(ds, "val:random:10%", 2).digest
    assert lm_source(ds, "val:10%", 2).digest != lm_source(ds, "val:20%", 2).digest
    with pytest.raises(DataError, match="validation author"):
        lm_source("qa:authors=2,facts=2", "val:40%")


# ---- val: of TOFU files ------------------------------------------------------------------------------------------

def _write(path, rows, keys=("question", "answer", "author")):
    path.write_text("\n".join(json.dumps({k: r[k] for k in keys if k in r}) for r in rows))


PERT = ("question", "answer", "paraphrased_answer", "perturbed_answer")


@pytest.fixture(scope="module")
def tofu_dir(tmp_path_factory):
    """A TOFU folder of 12 authors: forget10 = the last 2 (forget05 = the last one: nested), retain_perturbed = the
    first 6, holdout10 = 2 other authors; full.json rows carry an 'author' field."""
    qa = generate_qa(12, facts=2, seed=0, style="short")
    d = tmp_path_factory.mktemp("tofu")
    of = {a: [r for r in qa.rows if r["author"] == a] for a in qa.authors}
    _write(d / "full.json", qa.rows)
    _write(d / "forget10_perturbed.json", of[qa.authors[10]] + of[qa.authors[11]], PERT)
    _write(d / "forget05_perturbed.json", of[qa.authors[11]], PERT)
    _write(d / "retain_perturbed.json", [r for a in qa.authors[:6] for r in of[a]], PERT)
    _write(d / "holdout10.json", qa.holdout_rows, PERT)
    return d, qa


def test_tofu_val_takes_retain_authors_with_their_perturbations(tofu_dir):
    d, qa = tofu_dir
    rep, val = _built(lm_source(f"tofu:{d}", "10%")), _built(lm_source(f"tofu:{d}", "val:10%"))
    vf = val.extra["rows"]["forget"]
    assert len({r["author"] for r in vf}) == 2 and len(vf) == len(rep.extra["rows"]["forget"])
    assert _authors(vf) <= set(qa.authors[:6])  # retain authors with perturbed rows: never forget10's or holdout's
    assert all(r["perturbed_answer"] and r["paraphrased_answer"] for r in vf)
    retained = {r["question"]: r for r in val.extra["rows"]["retain"]}
    assert all(retained[r["question"]]["perturbed_answer"] for r in rep.extra["rows"]["forget"])
    assert val.scenario.startswith("val:") and set(val.forget_idx).isdisjoint(rep.forget_idx)
    again = lm_source(f"tofu:{d}", "val:10%")
    assert [r["question"] for r in _built(again).extra["rows"]["forget"]] == [r["question"] for r in vf]
    assert again.digest != lm_source(f"tofu:{d}", "10%").digest
    assert lm_source(f"tofu:{d}", "val:10%", 1).digest != again.digest  # split_seed draws the authors
    # val:5% avoids forget10's authors too (TOFU's forget sets are nested)
    v5 = _built(lm_source(f"tofu:{d}", "val:5%", 4)).extra["rows"]["forget"]
    assert len(_authors(v5)) == 1 and _authors(v5) <= set(qa.authors[:6])


def test_tofu_val_missing_perturbations_and_layout(tofu_dir, tmp_path):
    d, qa = tofu_dir
    for name in ("full.json", "forget10_perturbed.json", "holdout10.json"):
        (tmp_path / name).write_text((d / name).read_text())
    with pytest.raises(DataError, match="retain_perturbed.json"):
        lm_source(f"tofu:{tmp_path}", "val:10%")
    # a forget file without perturbations needs none: any retain author will do
    (tmp_path / "forget10_perturbed.json").unlink()
    _write(tmp_path / "forget10.json", [r for r in qa.rows if r["author"] in qa.authors[10:]])
    rows = _built(lm_source(f"tofu:{tmp_path}", "val:10%")).extra["rows"]["forget"]
    assert len(_authors(rows)) == 2 and not _authors(rows) & set(qa.authors[10:])
    # without an 'author' field: TOFU's layout of 20 consecutive questions per author
    train = [{"question": f"Q{a}-{i}?", "answer": f"A{a}-{i}."} for a in range(4) for i in range(QA_PER_AUTHOR)]
    val = validation_rows(train, train[-QA_PER_AUTHOR:], seed=0, exclude=train[:QA_PER_AUTHOR])
    assert len(val) == QA_PER_AUTHOR and {r["question"].split("-")[0] for r in val} <= {"Q1", "Q2"}
    with pytest.raises(DataError, match="some questions of author"):
        validation_rows(train, train[-5:])
    with pytest.raises(DataError, match="'author' field"):
        validation_rows(train[:-1], train[:QA_PER_AUTHOR])


# ---- val: of a document corpus -----------------------------------------------------------------------------------

def test_corpus_val_forgets_retain_documents(tmp_path):
    for split, n in (("forget", 2), ("retain", 7), ("holdout", 2)):
        (tmp_path / split).mkdir()
        for i in range(n):
            (tmp_path / split / f"{i}.txt").write_text(f"The {split} document number {i} tells a story about {i}.")
    rep, val = _built(lm_source(f"corpus:{tmp_path}", "10%")), _built(lm_source(f"corpus:{tmp_path}", "val:10%"))
    rd, vd = rep.extra["docs"], val.extra["docs"]
    assert len(vd["forget"]) == len(rd["forget"]) == 2 and set(vd["forget"]) <= set(rd["retain"])
    assert set(rd["forget"]) <= set(vd["retain"]) and not set(vd["forget"]) & set(vd["retain"])
    assert len(vd["retain"]) == len(rd["retain"]) and vd["holdout"] == rd["holdout"]
    assert val.train.docs == rep.train.docs  # the same training documents, in the same order
    assert lm_source(f"corpus:{tmp_path}", "val:10%").digest != lm_source(f"corpus:{tmp_path}", "10%").digest
    assert list(validation_documents(2, 7, 5)) == list(validation_documents(2, 7, 5))
    with pytest.raises(DataError, match="retain corpus has only"):
        validation_documents(3, 3)


# ---- tune on a tiny LM -------------------------------------------------------------------------------------------

SPEC = {"task": "qa", "model": "tiny", "dataset": "qa:authors=6,facts=2", "forget": "10%", "seeds": [0],
        "recipe": {"epochs": 30}, "epochs": 1, "eval_rows": 4, "device": "cpu"}


def test_lm_tune_selects_on_val_then_reports_on_the_forget_set(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from unlearnlab import api
    from unlearnlab.store import Store

    calls, real_run = [], api.run

    def spy(spec, **kw):
        res = real_run(spec, **kw)
        calls.append((dict(spec), res))
        return res

    monkeypatch.setattr(api, "run", spy)
    r = api.tune(SPEC, "ga,npo", budget=2, store=Store(tmp_path / "store"), utility_floor=0.5)
    assert r["task"] == "qa" and r["objective"] == "Forget.Gap" and r["direction"] == "minimize"
    assert [c["forget"] for c, _ in calls] == ["val:10%", "val:10%", "10%"] * 2
    for spec, res in calls:  # trials only ever saw val: records; the final run only the reported forget set
        assert {x["spec"]["forget"] for x in res["records"]} == {spec["forget"]}
    for method in ("ga", "npo"):
        e = r["methods"][method]
        assert len(e["trials"]) == 2 and e["best"] is not None
        for t in e["trials"]:
            assert t["error"] is None and math.isfinite(t["value"]) and "forget_ROUGE" in t["gap_over"]
            assert t["utility"] and t["feasible"] == (t["violation"] <= 0)
        assert e["best"]["value"] == min(t["value"] for t in e["trials"] if t["feasible"])
        assert math.isfinite(e["reported_score"]["value"]) and e["record_ids"]
    finals = [x for x in r["records"] if x["spec"]["method"] in ("ga", "npo")]
    assert {x["spec"]["forget"] for x in finals} == {"10%"}
    assert finals[0]["spec"]["config"]["lr"] == pytest.approx(r["methods"]["ga"]["best"]["params"]["lr"])
    # the validation authors are disjoint from the reported ones (and from the holdout)
    rep, val = _built(lm_source(SPEC["dataset"], "10%")), _built(lm_source(SPEC["dataset"], "val:10%"))
    assert not set(val.extra["forget_authors"]) & set(rep.extra["forget_authors"])
    assert not set(val.extra["forget_authors"]) & _authors(rep.extra["rows"]["holdout"])


def _fake_lm_run(metrics_of, oracle):
    """An api.run stand-in for LM specs: the method's metrics are a function of its sampled config."""

    def run(spec, **kw):
        method = spec["methods"][0]
        recs = [{"spec": {"method": "retrain", "seed": 0, "forget": spec["forget"]}, "metrics": dict(oracle)},
                {"spec": {"method": method, "seed": 0, "forget": spec["forget"]},
                 "metrics": metrics_of(spec["overrides"][method])}]
        return {"records": recs, "errors": [], "table": []}

    return run


ORACLE = {"forget_ROUGE": 0.2, "forget_Prob": 0.1, "forget_TruthRatio": 0.7, "Model Utility": 0.5,
          "retain_Prob": 0.9, "Forget Quality": 1.0}


def test_lm_objective_floor_and_forget_quality_direction(monkeypatch):
    from unlearnlab import api

    pytest.importorskip("optuna")

    def metrics(p):  # a higher lr forgets more (ROUGE falls toward the oracle's) but costs utility
        lr = p["lr"]
        return {"forget_ROUGE": 1.0 - 8000 * lr, "forget_Prob": 0.1, "forget_TruthRatio": 0.7,
                "Model Utility": 0.5 - 1000 * lr, "retain_Prob": 0.9, "Forget Quality": 1000 * lr}

    monkeypatch.setattr(api, "run", _fake_lm_run(metrics, ORACLE))
    space = {"ga": {"lr": ("float", 0.0, 1e-4)}}
    r = api.tune(SPEC, "ga", budget=8, spaces=space, seed=1, sampler="random")
    assert r["utility_floor"] == 0.1 and r["floor_kind"] == "fraction"
    e = r["methods"]["ga"]
    for t in e["trials"]:
        gap = abs(1.0 - 8000 * t["params"]["lr"] - 0.2) / 3  # the other two forget terms sit on the oracle's
        assert t["value"] == pytest.approx(gap) and t["gap_over"] == ["forget_ROUGE", "forget_Prob",
                                                                       "forget_TruthRatio"]
        # infeasible iff Model Utility falls more than 10% (relative) below the oracle's 0.5
        assert t["utility"] == ["Model Utility"] and t["feasible"] == (1000 * t["params"]["lr"] <= 0.05 + 1e-12)
    assert e["best"]["value"] == min(t["value"] for t in e["trials"] if t["feasible"])
    # Forget Quality is maximised as it stands
    r = api.tune(SPEC, "ga", budget=8, spaces=space, seed=1, sampler="random", objective="Forget Quality",
                 utility_floor=1.0)
    e = r["methods"]["ga"]
    assert r["direction"] == "maximize" and e["best"]["value"] == max(t["value"] for t in e["trials"])
    assert e["sensitivity"]["best"] == e["best"]["value"]
    # no Model Utility in the oracle (a tiny model): the floor falls back to retain_Prob
    tiny = _fake_lm_run(lambda p: {**metrics(p), "retain_Prob": 0.5}, {**ORACLE, "Model Utility": 0.0})
    monkeypatch.setattr(api, "run", tiny)
    t = api.tune(SPEC, "ga", budget=1, spaces=space)["methods"]["ga"]["trials"][0]
    assert t["utility"] == ["retain_Prob"] and not t["feasible"] and t["violation"] == pytest.approx(4 / 9 - 0.1)


def test_lm_tune_rejects_bad_requests():
    from unlearnlab import api

    pytest.importorskip("optuna")
    with pytest.raises(ConfigError, match="derives the disjoint validation set"):
        api.tune({**SPEC, "forget": "val:10%"}, ["npo"], budget=2)
    with pytest.raises(ConfigError, match="fraction of the oracle's Model Utility"):
        api.tune(SPEC, ["npo"], budget=2, utility_floor=5.0)
    with pytest.raises(ConfigError, match="Forget.Gap"):
        api.tune(SPEC, ["npo"], budget=2, objective="Avg.Gap")
    with pytest.raises(ConfigError, match="applies to"):
        api.tune(SPEC, ["ssd"], budget=2)


def test_cli_tune_qa(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from unlearnlab import api
    from unlearnlab.cli import app

    pytest.importorskip("optuna")
    seen = []
    fake = _fake_lm_run(lambda p: {**ORACLE, "forget_ROUGE": 0.2 + p["lr"] * 1e3, "Model Utility": 0.49}, ORACLE)
    monkeypatch.setattr(api, "run", lambda spec, **kw: seen.append(spec) or fake(spec, **kw))
    args = ["tune", "--task", "qa", "--model", "tiny", "--dataset", "qa:authors=8,facts=4", "--method", "ga,npo",
            "--budget", "2", "--set", "ga.epochs=1", "--results", str(tmp_path)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "ga: 2 trials on val:random:10% (Forget.Gap, lower is better)" in r.stdout
    assert "reported Forget.Gap" in r.stdout and "Model Utility" in r.stdout
    assert [s["forget"] for s in seen] == ["val:random:10%", "val:random:10%", "random:10%"] * 2
    assert seen[0]["task"] == "qa" and seen[0]["overrides"]["ga"]["epochs"] == "1"
    r = CliRunner().invoke(app, [*args, "--json", "--objective", "Forget Quality"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["direction"] == "maximize"
    r = CliRunner().invoke(app, [*args, "--floor", "5"])
    assert r.exit_code == 2 and "fraction" in r.output
