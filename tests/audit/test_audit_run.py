"""End to end: a stored run audited through the engine-trained populations, the store and the CLI."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from unlearnlab import api
from unlearnlab.audit.outputs import load_outputs
from unlearnlab.cli import app
from unlearnlab.errors import ConfigError, StoreError
from unlearnlab.store import Store

SPEC = {"dataset": "blobs", "forget": "random:10%", "methods": ["ft"], "seeds": [0], "recipe": {"epochs": 3}}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("audit"))
    res = api.run(SPEC, store=store)
    rid = next(r["id"] for r in res["records"] if r["spec"]["method"] == "ft")
    out = api.audit(rid, store=store, attacks="ps,ulira,lira,rmia,cka,probe,relearn,head", population=4,
                    canaries=40)
    return store, rid, out


def test_runs_store_their_per_example_outputs(audited):
    store, rid, _ = audited
    rec = store.get_run(rid)
    o = load_outputs(store, rec)
    assert set(o) >= {"forget", "retain", "test"}
    n_train = len(o["forget"]["index"]) + len(o["retain"]["index"])
    assert np.array_equal(np.sort(np.concatenate([o["forget"]["index"], o["retain"]["index"]])), np.arange(n_train))
    assert o["forget"]["logits"].shape == (len(o["forget"]["index"]), 4)
    # the stored UA (100 - forget accuracy) is the one the stored outputs give
    acc = 100 * np.mean(o["forget"]["logits"].argmax(1) == o["forget"]["labels"])
    assert 100 - acc == pytest.approx(rec["metrics"]["UA"], abs=1e-4)


def test_audit_joins_the_record_with_floor_and_ceiling_rows(audited):
    store, rid, out = audited
    rec = store.get_run(rid)
    assert set(rec["audit"]["attacks"]) == {"ps", "ulira", "lira", "rmia", "cka", "probe", "relearn", "head"}
    assert rec["audit"]["population"] == {"models_per_role": 4, "canaries": 40}
    assert out["rebuilt_max_logit_gap"] < 1e-4  # the re-run method reproduces the stored run
    u = out["attacks"]["ulira"]
    for row in ("method", "floor", "ceiling"):
        assert 0.0 <= u[row]["auc"] <= 1.0
    assert any("pooled variance" in n for n in u["notes"])  # 4 shadows: says it uses LiRA's global variance
    cka = out["attacks"]["cka"]["splits"]["forget"]
    assert all(0.0 <= v <= 1.0 + 1e-6 for v in cka["unlearned~original"].values())
    rel = out["attacks"]["relearn"]
    assert rel["known"] + rel["unseen"] == len(load_outputs(store, rec)["forget"]["index"])
    assert {r["attack"] for r in out["rows"]} == {"ps", "ulira", "lira", "rmia", "cka", "probe", "relearn", "head"}


def test_second_audit_reuses_the_population_and_merges(audited):
    store, rid, _ = audited
    n_runs = store.count_runs()
    api.audit(rid, store=store, attacks="ps", population=4, canaries=40)
    assert store.count_runs() == n_runs  # every population model came from the store
    assert "ulira" in store.get_run(rid)["audit"]["attacks"]  # earlier attacks kept


def test_audit_refuses_baselines_and_bad_input(audited):
    store, rid, _ = audited
    base = next(r["id"] for r in store.list_runs(method="retrain"))
    with pytest.raises(ConfigError, match="baseline"):
        api.audit(base, store=store, attacks="ps")
    with pytest.raises(StoreError):
        api.audit("ffffffffffff", store=store, attacks="ps")


def test_cli_audit(audited):
    store, rid, _ = audited
    runner = CliRunner()
    r = runner.invoke(app, ["audit", rid, "--attacks", "ps", "--population", "4", "--results", str(store.root),
                            "--backend", "serial", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"][0]["attack"] == "ps"
    r = runner.invoke(app, ["audit", rid, "--attacks", "ulria", "--results", str(store.root)])
    assert r.exit_code == 2 and "Did you mean 'ulira'" in r.output
    r = runner.invoke(app, ["audit", rid, "--attacks", "ps", "--population", "4", "--results", str(store.root),
                            "--backend", "serial"])
    assert r.exit_code == 0 and "privacy score" in r.stdout and "floor" in r.stdout


def test_dashboard_runs_table_shows_audit_columns(audited):
    from fastapi.testclient import TestClient

    from unlearnlab.web.dashboard import create_app

    store, rid, out = audited
    client = TestClient(create_app(store))
    res = client.get("/api/runs", params={"sort": "audit.ulira.auc"}).json()
    row = next(r for r in res["runs"] if r["id"] == rid)
    assert row["audit.ulira.auc"] == pytest.approx(out["attacks"]["ulira"]["method"]["auc"])
    assert row["audit.lira.gap"] == pytest.approx(out["attacks"]["lira"]["gap_to_oracle"])
    assert "audit.ulira.auc" in res["shown_metrics"] and "audit.cka.forget" in res["metrics"]
