"""Budgeted tuning: search spaces in configs, the disjoint val: forget set, selection on it only, the CLI."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from unlearnlab import api
from unlearnlab import config as C
from unlearnlab.data.scenarios import forget_indices, parse_forget, validation_indices
from unlearnlab.errors import ConfigError, DataError, UnknownNameError
from unlearnlab.methods import METHODS
from unlearnlab.store import Store

pytest.importorskip("optuna")

SPEC = {"dataset": "blobs", "model": "mlp", "forget": "random:10%", "seeds": 1, "recipe": {"epochs": 3}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module: originals, oracles and trials are computed once and then reused."""
    return Store(tmp_path_factory.mktemp("tune-store"))


# ---- search spaces declared in configs -------------------------------------------------------------------------

def _inside(value, s) -> bool:
    kind, *vals = s
    return value in vals if kind == "choice" else vals[0] <= value <= vals[1]


def test_every_method_declares_a_search_space_that_holds_its_default():
    for name, m in METHODS.items():
        space = C.search_space(m.config)
        if name == "retrain":
            assert space == {}
            continue
        assert space, f"{name} declares no search space"
        defaults = {f.name: f.default for f in dataclasses.fields(m.config)}
        for field, s in space.items():
            assert s[0] in C.SEARCH_KINDS
            assert _inside(defaults[field], s), f"{name}.{field}: default {defaults[field]} outside {s}"
        described = {d["name"]: d for d in C.describe(m.config)}
        assert all(described[f]["search"] == list(s) for f, s in space.items())
        assert all("search" not in d for f, d in described.items() if f not in space)


def test_param_search_is_validated():
    assert C.param(0.1, "x", search=("log", 1e-3, 1.0)).metadata["search"] == ("log", 1e-3, 1.0)
    assert C.param(1, "x").metadata["search"] is None
    for bad in [("log", 0.0, 1.0), ("float", 2.0, 1.0), ("int", 1.5, 3), ("grid", 1, 2), ("choice",), "log"]:
        with pytest.raises(ConfigError):
            C.param(1.0, "x", search=bad)
    with pytest.raises(ConfigError, match="valid range"):
        C.param(0.5, "x", low=0.0, high=1.0, search=("float", 0.5, 2.0))
    with pytest.raises(ConfigError, match="choices"):
        C.param("sgd", "x", choices=("sgd", "adam"), search=("choice", "sgd", "lion"))


# ---- the validation forget set -------------------------------------------------------------------------------

LABELS = np.repeat(np.arange(5), 40)


@pytest.mark.parametrize("spec", ["random:10%", "class:2", "class:4", "subclass:1:25%", "subclass:1:75%"])
def test_val_forget_set_is_disjoint_same_size_and_deterministic(spec):
    reported = forget_indices(spec, LABELS, 7, num_classes=5)
    val = forget_indices(f"val:{spec}", LABELS, 7, num_classes=5)
    assert len(val) == len(reported) and np.intersect1d(val, reported).size == 0
    assert np.array_equal(val, forget_indices(f"val:{spec}", LABELS, 7, num_classes=5))
    assert np.array_equal(val, validation_indices(spec, LABELS, 7, num_classes=5))
    assert str(parse_forget(f"val:{spec}")) == f"val:{parse_forget(spec)}"
    if spec.startswith("class:"):  # a different class of the same scenario type
        assert set(LABELS[val]) == {(int(spec[6:]) + 1) % 5}
    if spec == "subclass:1:25%":  # the rest of class 1 has enough examples
        assert set(LABELS[val]) == {1}
    if spec == "subclass:1:75%":  # it has not: the next class
        assert set(LABELS[val]) == {2}


def test_val_forget_set_for_indices_files_and_errors(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("\n".join(map(str, range(0, 60, 3))))
    val = forget_indices(f"val:indices:{f}", LABELS, 0)
    assert len(val) == 20 and np.intersect1d(val, np.arange(0, 60, 3)).size == 0
    assert not np.array_equal(val, forget_indices(f"val:indices:{f}", LABELS, 1))  # seeded by the split seed
    # random:50% and above: the rest is no bigger than the forget set, so the validation set is half of the rest
    big, val_big = forget_indices("random:60%", LABELS, 0), forget_indices("val:random:60%", LABELS, 0)
    rest = np.setdiff1d(np.arange(len(LABELS)), big)
    assert len(val_big) == len(rest) // 2 and np.intersect1d(val_big, big).size == 0
    assert len(forget_indices("sample:7", LABELS, 0)) == 7
    val7 = forget_indices("val:sample:7", LABELS, 0)
    assert len(val7) == 7 and np.intersect1d(val7, forget_indices("sample:7", LABELS, 0)).size == 0
    with pytest.raises(DataError, match="positive whole number"):
        parse_forget("sample:x")
    with pytest.raises(DataError, match="once"):
        parse_forget("val:val:random:10%")


# ---- tune() end to end on real runs --------------------------------------------------------------------------

def test_tune_selects_on_val_only_then_reports(store, monkeypatch):
    calls = []
    real_run = api.run

    def spy(spec, **kw):
        calls.append(dict(spec))
        return real_run(spec, **kw)

    monkeypatch.setattr(api, "run", spy)
    r = api.tune(SPEC, ["ft", "ga"], budget=3, store=store, seed=0)
    # per method: exactly `budget` trials on val:, then one run on the reported forget set
    assert [c["forget"] for c in calls] == ["val:random:10%"] * 3 + ["random:10%"] + ["val:random:10%"] * 3 + [
        "random:10%"]
    assert [c["methods"] for c in calls] == [["ft"]] * 4 + [["ga"]] * 4
    assert calls[3]["name"] == "tune:ft" and calls[0]["name"] == calls[4]["name"] == "tune:val"
    # the validation original and oracle are evaluated once for both methods' studies (shared records)
    val_refs = [r for r in store.list_runs() if r["spec"]["forget"] == "val:random:10%"
                and r["spec"]["method"] in ("original", "retrain")]
    assert sorted(r["spec"]["method"] for r in val_refs) == ["original", "retrain"], val_refs
    for method in ("ft", "ga"):
        e = r["methods"][method]
        assert len(e["trials"]) == 3 and [t["number"] for t in e["trials"]] == [0, 1, 2]
        # SPEC's model has no BatchNorm: GA's declared bn_stats choice is left out (both values train the same)
        assert set(e["space"]) == set(C.search_space(METHODS.get(method).config)) - {"bn_stats"}
        feasible = [t for t in e["trials"] if t["feasible"]]
        assert e["best"]["params"] in [t["params"] for t in feasible]
        assert e["best"]["value"] == min(t["value"] for t in feasible)
        for t in e["trials"]:  # the floor: feasible iff TA within 2 points of the validation oracle's
            assert t["feasible"] == (t["oracle_TA"] - t["TA"] <= 2.0) and "RA" not in t["utility"]
        s = e["sensitivity"]
        assert s["n_trials"] == 3 and s["frac_feasible"] == len(feasible) / 3
        assert s["min"] <= s["median"] <= s["max"] and s["iqr"] >= 0 and 0 < s["frac_near_best"] <= 1
        assert s["best"] == e["best"]["value"]
        assert e["reported"]["Avg.Gap"]["n"] == 1 and math.isfinite(e["reported"]["Avg.Gap"]["mean"])
        assert e["record_ids"]
    finals = [x for x in r["records"] if x["spec"]["method"] in ("ft", "ga")]
    assert {x["spec"]["forget"] for x in r["records"]} == {"random:10%"}
    assert finals[0]["spec"]["config"]["lr"] == pytest.approx(r["methods"]["ft"]["best"]["params"]["lr"])
    # the summary is persisted in the store, content-addressed
    stored = json.loads(store.artifact_path(r["summary_digest"]).read_text())
    assert stored["methods"]["ft"]["best"] == r["methods"]["ft"]["best"] and stored["budget"] == 3
    # the validation examples never overlap the reported forget set
    from unlearnlab.data import load_dataset

    labels = load_dataset("blobs", seed=0).train.y.numpy()
    assert np.intersect1d(forget_indices("val:random:10%", labels, 0, num_classes=4),
                          forget_indices("random:10%", labels, 0, num_classes=4)).size == 0
    # same seed, same trials (and every run is answered from the store)
    again = api.tune(SPEC, ["ft"], budget=3, store=store, seed=0)
    assert again["methods"]["ft"]["trials"] == r["methods"]["ft"]["trials"]
    assert again["summary_digest"] != r["summary_digest"]  # fewer methods, another summary


# ---- feasibility and failures, on a fake api.run ---------------------------------------------------------------

def _fake_run(value_of, ta_of, fail_if=lambda p: False):
    """An api.run stand-in: metrics of the method are functions of its sampled config (the utility floor applies to
    test accuracy, TA)."""

    def run(spec, **kw):
        method = spec["methods"][0]
        params = spec["overrides"][method]
        oracle = {"spec": {"method": "retrain", "seed": 0}, "metrics": {"Avg.Gap": 0.0, "RA": 100.0, "TA": 90.0}}
        if fail_if(params):
            return {"records": [oracle], "errors": [{"method": method, "seed": 0, "error": "diverged"}], "table": []}
        rec = {"spec": {"method": method, "seed": 0},
               "metrics": {"Avg.Gap": value_of(params), "RA": 50.0, "TA": ta_of(params)}}
        return {"records": [oracle, rec], "errors": [], "table": api.compare([oracle, rec])}

    return run


def test_infeasible_trials_are_never_selected(monkeypatch):
    # lower objective comes with lower TA: the best raw value is infeasible under the floor (RA does not count)
    monkeypatch.setattr(api, "run", _fake_run(lambda p: 10 - 100 * p["lr"], lambda p: 90 - 100 * p["lr"]))
    r = api.tune(SPEC, "ft", budget=8, spaces={"ft": {"lr": ("float", 0.0, 0.1)}}, utility_floor=5.0, seed=3)
    e = r["methods"]["ft"]
    assert len(e["trials"]) == 8 and r["summary_digest"] is None  # no store: nothing persisted
    assert {t["feasible"] for t in e["trials"]} == {True, False}
    assert all(t["feasible"] == (t["params"]["lr"] <= 0.05) for t in e["trials"])
    assert e["best"]["params"]["lr"] <= 0.05
    assert e["best"]["value"] == min(t["value"] for t in e["trials"] if t["feasible"])
    assert e["sensitivity"]["frac_feasible"] == sum(t["feasible"] for t in e["trials"]) / 8


def test_failed_and_all_infeasible_trials(monkeypatch):
    monkeypatch.setattr(api, "run", _fake_run(lambda p: 1.0, lambda p: 50.0, fail_if=lambda p: p["lr"] > 0.05))
    r = api.tune(SPEC, ["ft"], budget=4, spaces={"ft": {"lr": ("float", 0.0, 0.1)}}, sampler="random")
    e = r["methods"]["ft"]
    assert e["best"] is None and e["reported"] is None and "no feasible trial" in e["note"]
    assert r["records"] == [] and e["sensitivity"]["n_feasible"] == 0
    failed = [t for t in e["trials"] if t["error"]]
    assert failed and all("diverged" in t["error"] and not t["feasible"] for t in failed)


def test_warm_start_tries_the_default_first(monkeypatch):
    # the objective is best exactly at the default lr (and the user's fixed epochs): only a warm start tries it
    default_lr = METHODS.get("ft").config().lr
    seen = []

    def value(p):
        seen.append(dict(p))
        return abs(math.log10(p["lr"]) - math.log10(default_lr))

    monkeypatch.setattr(api, "run", _fake_run(value, lambda p: 90.0))
    spec = {**SPEC, "overrides": {"ft": {"epochs": 2}}}
    space = {"ft": {"lr": ("log", 1e-3, 1e-1), "epochs": ("int", 1, 10)}}
    cold = api.tune(spec, "ft", budget=3, seed=1, final=False, spaces=space)["methods"]["ft"]
    seen.clear()
    r = api.tune(spec, "ft", budget=3, seed=1, final=False, spaces=space, warm_start=True)
    warm = r["methods"]["ft"]
    assert r["warm_start"] is True and len(warm["trials"]) == 3
    assert warm["trials"][0]["params"]["lr"] == default_lr and warm["trials"][0]["params"]["epochs"] == 2
    assert seen[0]["epochs"] == 2  # the user's override is the default of a searched field
    assert warm["best"]["trial"] == 0 and warm["best"]["value"] == 0.0
    assert cold["best"]["value"] > 0.0 and default_lr not in [t["params"]["lr"] for t in cold["trials"]]
    # the other trials still come from the sampler (not the default again)
    assert all(t["params"]["lr"] != default_lr for t in warm["trials"][1:])


def test_stratify_tries_every_categorical_value_before_repeating_one(monkeypatch):
    """SSD's selection weighting has 6 values; 6 plain draws repeated some and missed others (100 and 1, in every
    scenario, the sampler being seeded per method). Stratified, 6 trials try each value once, the continuous field
    still varies, and a method with no categorical field gets exactly its plain trials."""
    from unlearnlab.engine.tune import stratified_choices

    monkeypatch.setattr(api, "run", _fake_run(lambda p: 1.0, lambda p: 90.0))
    alphas = (0.1, 1.0, 10.0, 50.0, 100.0, 500.0)
    space = {"ssd": {"selection_weighting": ("choice", *alphas), "dampening_constant": ("log", 0.1, 10.0)}}
    kw = {"budget": 6, "seed": 0, "final": False, "spaces": space}
    plain = [t["params"] for t in api.tune(SPEC, "ssd", **kw)["methods"]["ssd"]["trials"]]
    r = api.tune(SPEC, "ssd", stratify=True, **kw)
    strat = [t["params"] for t in r["methods"]["ssd"]["trials"]]
    assert r["stratify"] is True and len(strat) == 6
    assert sorted(p["selection_weighting"] for p in strat) == list(alphas)
    assert len({p["selection_weighting"] for p in plain}) < 6  # the plain draws repeat (seed 0, as the benchmark)
    assert len({p["dampening_constant"] for p in strat}) == 6
    # a larger budget starts with the same trials (stored runs answer them when the budget is raised)
    more = api.tune(SPEC, "ssd", **{**kw, "budget": 12}, stratify=True)["methods"]["ssd"]["trials"]
    more = [t["params"] for t in more]
    assert more[:6] == strat
    lr_only = {"ft": {"lr": ("log", 1e-3, 1e-1)}}
    same = [api.tune(SPEC, "ft", budget=4, seed=0, final=False, spaces=lr_only, stratify=st)["methods"]["ft"]["trials"]
            for st in (False, True)]
    assert [t["params"] for t in same[0]] == [t["params"] for t in same[1]]
    # past the start-up the sampler is free again; several fields are permuted independently; none: nothing fixed
    many = stratified_choices({"a": ("choice", 1, 2), "b": ("choice", "x", "y", "z"), "c": ("log", 1, 2)}, 6, 7)
    assert [sorted(str(m["a"]) for m in many[i:i + 2]) for i in (0, 2, 4)] == [["1", "2"]] * 3
    assert sorted(m["b"] for m in many[:3]) == ["x", "y", "z"] and all("c" not in m for m in many)
    assert stratified_choices({"c": ("log", 1, 2)}, 6, 7) == []


def test_tune_rejects_bad_requests():
    with pytest.raises(ConfigError, match="budget"):
        api.tune(SPEC, ["ft"], budget=0)
    with pytest.raises(UnknownNameError, match="Did you mean"):
        api.tune(SPEC, ["fx"], budget=2)
    with pytest.raises(ConfigError, match="oracle"):
        api.tune(SPEC, ["retrain"], budget=2)
    with pytest.raises(ConfigError, match="derives the disjoint validation set"):
        api.tune({**SPEC, "forget": "val:random:10%"}, ["ft"], budget=2)
    with pytest.raises(ConfigError, match="derives the disjoint validation set"):  # LM runs: tests/lm/test_lm_tune.py
        api.tune({"task": "qa", "dataset": "qa", "forget": "val:10%"}, ["npo"], budget=2)
    with pytest.raises(ConfigError, match="applies to"):
        api.tune({"task": "qa", "dataset": "qa", "forget": "10%"}, ["ssd"], budget=2)
    with pytest.raises(ConfigError, match="not a config field"):
        api.tune(SPEC, ["ft"], budget=2, spaces={"ft": {"lrr": ("log", 1e-3, 1e-1)}})
    with pytest.raises(ConfigError, match="sampler"):
        api.tune(SPEC, ["ft"], budget=2, sampler="grid")


# ---- CLI -----------------------------------------------------------------------------------------------------

def test_cli_tune(store):
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    runner = CliRunner()
    args = ["tune", "--method", "ga", "--budget", "2", "--dataset", "blobs", "--model", "mlp", "--epochs", "3",
            "--results", str(store.root)]
    r = runner.invoke(app, [*args, "--json", "--backend", "serial"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert len(payload["methods"]["ga"]["trials"]) == 2 and payload["validation_forget"] == "val:random:10%"
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "ga: 2 trials on val:random:10%" in r.stdout and "reported Avg.Gap" in r.stdout
    r = runner.invoke(app, ["tune", "--method", "retrain", "--budget", "2", "--results", str(store.root)])
    assert r.exit_code == 2 and "oracle" in r.output
    r = runner.invoke(app, [*args, "--json", "--backend", "serial", "--warm-start", "--set", "ga.lr=0.004"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["warm_start"] and payload["methods"]["ga"]["trials"][0]["params"]["lr"] == 0.004


def test_cli_tune_from_a_spec_file(store, tmp_path):
    """--config takes every RunSpec key from a YAML file (what a diffusion run needs for its size / samples); its
    methods are replaced by --method."""
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    cfg = tmp_path / "spec.yaml"
    cfg.write_text("dataset: blobs\nmodel: mlp\nforget: random:10%\nmethods: [ft]\nrecipe: {epochs: 3}\n")
    r = CliRunner().invoke(app, ["tune", "--method", "ga", "--budget", "2", "--config", str(cfg), "--results",
                                 str(store.root), "--json", "--backend", "serial"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["spec"]["dataset"] == "blobs" and payload["spec"]["recipe"]["epochs"] == 3
    assert list(payload["methods"]) == ["ga"] and len(payload["methods"]["ga"]["trials"]) == 2
    r = CliRunner().invoke(app, ["tune", "--method", "ga", "--budget", "2", "--config", str(tmp_path / "no.yaml")])
    assert r.exit_code == 2
