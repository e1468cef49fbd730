"""The diffusion Task on the engine: digits-gen picks it, originals and oracles are cached, records hold the
judge metrics, per-class details and a sample grid."""
from __future__ import annotations

import pytest

from unlearnlab import api
from unlearnlab.errors import ConfigError
from unlearnlab.spec import from_dict

SPEC = {"dataset": "digits-gen", "forget": "class:3", "model": "ddpm:tiny,timesteps=50", "methods": ["esd"],
        "recipe": {"epochs": 1, "batch_size": 128}, "options": {"samples": 3, "sample_steps": 3, "size": 8, "grid": 2},
        "overrides": {"esd": {"iterations": 2, "ddim_steps": 3, "lr": 1e-3}}}


def test_a_gen_dataset_selects_the_diffusion_task():
    assert from_dict({"dataset": "digits-gen", "forget": "class:3"}).task == "diffusion"
    assert from_dict({"dataset": "digits-gen"}).model_spec() == "ddpm"
    with pytest.raises(ConfigError, match="unknown diffusion options"):
        from_dict({"dataset": "digits-gen", "options": {"smaples": 3}})


def test_diffusion_runs_forget_a_class():
    with pytest.raises(ConfigError, match="class:K"):
        api.run({**SPEC, "forget": "random:10%"}, store=None, backend="serial")


def test_classifier_methods_are_refused():
    from unlearnlab.errors import UnlearnLabError

    with pytest.raises(UnlearnLabError, match="does not apply"):
        api.run({**SPEC, "methods": ["ssd"]}, store=None, backend="serial")


def test_run_records_and_cache(tmp_path):
    pytest.importorskip("PIL")
    from unlearnlab.store import Store

    store = Store(tmp_path)
    res = api.run(SPEC, store=store, backend="serial")
    assert not res["errors"], res["errors"]
    recs = {r["spec"]["method"]: r for r in res["records"]}
    assert set(recs) == {"original", "retrain", "esd"}
    for r in recs.values():
        assert {"UA", "RA", "FD", "FD_forget", "Avg.Gap", "judge_acc_real"} <= set(r["metrics"])
        assert r["details"]["samples_per_class"] == [3] * 10
        assert store.artifact_path(r["artifacts"]["samples_png"]).read_bytes()[:4] == b"\x89PNG"
    assert recs["retrain"]["metrics"]["Avg.Gap"] == 0.0
    assert recs["esd"]["timings"]["opt_steps"] == 2
    assert recs["original"]["spec"]["eval"]["samples"] == 3
    again = api.run({**SPEC, "methods": ["esd", "ga_gen", "sfd"], "overrides": {**SPEC["overrides"], "ga_gen": {
        "iterations": 1, "batch_size": 8}, "sfd": {"iterations": 2, "batch_size": 4, "lr": 1e-3, "ema": 0}}},
        store=store, backend="serial")
    built = {r["spec"]["method"]: r for r in again["records"] if r["spec"]["method"] in ("ga_gen", "sfd")}
    assert len(built) == 2 and not again["errors"], again["errors"]
    assert store.count_runs() == 5  # original, retrain, esd reused; only ga_gen and sfd ran
    # SFD's one-step generator goes through the same sampler, metrics, record and grid as any model
    sfd = built["sfd"]
    assert sfd["details"]["samples_per_class"] == [3] * 10 and "UA" in sfd["metrics"]
    assert sfd["timings"]["opt_steps"] == 4  # fake-score and generator updates alternate
    assert sfd["method_info"]["sfd_t_init"] == 22  # 440 of 1000 on T = 50
    assert store.artifact_path(sfd["artifacts"]["samples_png"]).read_bytes()[:4] == b"\x89PNG"


def test_report_embeds_sample_grids(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    from unlearnlab.store import Store

    store = Store(tmp_path / "store")
    api.run(SPEC, store=store, backend="serial")
    out = api.report(store=store, out=tmp_path / "rep")
    grids = [p for p in out["figures"] if "-samples-" in str(p)]
    assert {p.name.rsplit("-samples-", 1)[1] for p in grids} >= {"original.png", "retrain.png", "esd.png"}
    assert "samples of esd" in out["markdown"].read_text() and "samples of esd" in out["html"].read_text()

