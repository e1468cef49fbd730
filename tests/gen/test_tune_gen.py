"""Tuning a diffusion method: trials run on val:class:K, which forgets class (K + 1) mod 10 (class K is retained
there), the floor is on RA, and the chosen setting is then run on class:K."""
from __future__ import annotations

import pytest

from unlearnlab import api
from unlearnlab.errors import ConfigError

pytest.importorskip("optuna")

SPEC = {"dataset": "digits-gen", "forget": "class:3", "model": "ddpm:tiny,timesteps=50",
        "recipe": {"epochs": 1, "batch_size": 128}, "options": {"samples": 3, "sample_steps": 3, "size": 8, "grid": 2},
        "overrides": {"ga_gen": {"iterations": 2, "batch_size": 8}}}


def test_validation_scenario_forgets_the_next_class():
    from unlearnlab.data import make_split
    from unlearnlab.tasks.diffusion import forget_classes
    from unlearnlab.tasks.diffusion_data import gen_bundle

    assert forget_classes("val:class:3", 10) == [4]
    assert forget_classes("val:class:9", 10) == [0]
    b = gen_bundle("digits-gen", 8)
    val = make_split(b.train, b.test, "val:class:3", 0, num_classes=10)
    assert set(val.forget.y.tolist()) == {4} and 3 in set(val.retain.y.tolist())


def test_tune_selects_on_the_validation_class(tmp_path):
    from unlearnlab.store import Store

    store = Store(tmp_path)
    # floor 100 points of RA: every trial is feasible, so a best setting always exists (a 1-epoch DDPM draws noise)
    res = api.tune(SPEC, "ga_gen", budget=2, store=store, sampler="random", utility_floor=100.0,
                   spaces={"ga_gen": {"lr": ("log", 1e-5, 1e-3)}}, run_kwargs={"backend": "serial"})
    assert res["task"] == "diffusion" and res["validation_forget"] == "val:class:3"
    assert res["objective"] == "Avg.Gap" and res["floor_kind"] == "points"
    entry = res["methods"]["ga_gen"]
    assert len(entry["trials"]) == 2 and all(t["error"] is None and t["utility"] == ["RA"] for t in entry["trials"])
    val_runs = [r for r in store.list_runs() if r["spec"]["forget"] == "val:class:3"]
    assert {r["spec"]["method"] for r in val_runs} == {"original", "retrain", "ga_gen"}
    oracle = next(r for r in val_runs if r["spec"]["method"] == "retrain")
    assert oracle["details"]["per_class_sample_acc"] is not None
    assert all(t["feasible"] for t in entry["trials"]) and entry["best"] is not None
    final = [r for r in res["records"] if r["spec"]["method"] == "ga_gen"]  # the reported run: class 3, best setting
    assert final and all(r["spec"]["forget"] == "class:3" for r in final)
    assert final[0]["spec"]["config"]["lr"] == entry["best"]["params"]["lr"]
    assert entry["reported"] is not None and "Avg.Gap" in entry["reported"]


def test_diffusion_defaults():
    from unlearnlab.engine.tune import DEFAULTS, NEAR_BEST

    assert DEFAULTS["diffusion"] == ("Avg.Gap", 10.0) and NEAR_BEST["diffusion"] == 1.0


def test_tune_refuses_a_validation_forget_set_and_classifier_methods():
    with pytest.raises(ConfigError, match="not 'val:class:3'"):
        api.tune({**SPEC, "forget": "val:class:3"}, "ga_gen", budget=1)
    with pytest.raises(ConfigError, match="cannot be tuned"):
        api.tune(SPEC, "ssd", budget=1)


def test_two_factor_validation_forgets_the_next_style_or_object_and_floors_ira_cra(tmp_path):
    from unlearnlab.store import Store
    from unlearnlab.tasks.diffusion import forget_classes
    from unlearnlab.tasks.diffusion_canvas import Factors

    f = Factors(tuple("0123456789"), ("plain", "negative", "thick", "stripes"))
    assert forget_classes("val:style:thick", 40, f) == forget_classes("style:stripes", 40, f)
    assert forget_classes("val:style:3", 40, f) == forget_classes("style:plain", 40, f)  # wraps around
    assert forget_classes("val:object:9", 40, f) == forget_classes("object:0", 40, f)
    spec = {"dataset": "digits-canvas-gen", "forget": "style:negative", "model": "ddpm:tiny,timesteps=50,factors=10x4",
            "recipe": {"epochs": 1, "batch_size": 128},
            "options": {"samples": 2, "sample_steps": 2, "size": 8, "grid": 4},
            "overrides": {"esd": {"iterations": 2, "ddim_steps": 3, "lr": 1e-3}}}
    res = api.tune(spec, "esd", budget=1, store=Store(tmp_path), utility_floor=100.0, warm_start=True,
                   spaces={"esd": {"lr": ("log", 1e-5, 1e-2)}}, run_kwargs={"backend": "serial"}, final=False)
    assert res["validation_forget"] == "val:style:negative"
    (trial,) = res["methods"]["esd"]["trials"]
    assert trial["error"] is None and trial["utility"] == ["IRA", "CRA"]
    assert trial["params"] == {"lr": 1e-3}  # warm start: the user's setting is the first trial
    assert {"oracle_IRA", "oracle_CRA", "IRA", "CRA"} <= set(trial)
    with pytest.raises(ConfigError, match="not 'val:style:negative'"):
        api.tune({**spec, "forget": "val:style:negative"}, "esd", budget=1)
