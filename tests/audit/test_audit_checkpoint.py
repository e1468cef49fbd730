"""`unlearnlab audit PATH`: a model unlearned outside unlearnlab, saved as a checkpoint, audited with the model
attacks against the original and the oracle of the same forget set."""
import json

import pytest
from typer.testing import CliRunner

from unlearnlab import api
from unlearnlab.cli import app
from unlearnlab.errors import CheckpointError, ConfigError
from unlearnlab.models import build_model, load_checkpoint, save_checkpoint
from unlearnlab.spec import from_dict
from unlearnlab.store import Store
from unlearnlab.tasks.classifier import ClassifierTask

FORGET = "class:3"
RECIPE = {"epochs": 3}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """The user's original (unlearnlab train), a GA-unlearned copy of it and the retrained oracle, as checkpoints."""
    root = tmp_path_factory.mktemp("ckpt")
    meta = api.train_original(dataset="blobs", out=root / "orig")
    store = Store(root / "results")
    spec = from_dict({"dataset": "blobs", "forget": FORGET, "methods": [], "seeds": [0],
                      "original": str(root / "orig")})
    sc = ClassifierTask().context(spec, 0, store)
    unl = api.unlearn(sc.original, sc.data, "ga", lr=0.05, epochs=5)
    save_checkpoint(root / "unlearned", unl, {"arch": meta["arch"], "dataset": "blobs"})
    save_checkpoint(root / "oracle", sc.oracle, {"arch": meta["arch"], "dataset": "blobs"})
    return root, store, meta


def test_checkpoint_audit_has_floor_and_ceiling(ckpts):
    root, store, _ = ckpts
    res = api.audit_checkpoint(root / "unlearned.safetensors", forget=FORGET, original=root / "orig", store=store,
                               attacks="cka,probe,relearn,head")
    assert set(res["attacks"]) == {"cka", "probe", "relearn", "head"}
    assert res["method"] == "checkpoint" and len(res["checkpoint_sha256"]) == 64
    rows = {r["attack"]: r for r in res["rows"]}
    assert set(rows) == {"cka", "probe", "relearn", "head"}
    # the original remembers class 3 and the oracle does not: head recovery separates them
    head = res["attacks"]["head"]
    assert head["original"]["after"] > head["oracle"]["after"] + 20
    # gradient ascent hides the class from the head, not from the representation: k-NN on frozen features still
    # finds it far more often than in the oracle's
    knn = res["attacks"]["probe"]["knn"]
    assert knn["method"]["forget"] > knn["oracle"]["forget"] + 20
    assert store.count_runs() == 0  # nothing was stored as a run


def test_the_oracle_audited_as_a_checkpoint_sits_on_the_floor(ckpts):
    """Auditing the oracle itself: its CKA to the oracle is 1 and its recovered forget accuracy is the floor's."""
    root, store, _ = ckpts
    res = api.audit_checkpoint(root / "oracle", forget=FORGET, original=root / "orig", store=store,
                               attacks="cka,head")
    cka = res["attacks"]["cka"]["splits"]["forget"]["unlearned~oracle"]
    assert all(v == pytest.approx(1.0, abs=1e-5) for v in cka.values())
    head = res["attacks"]["head"]
    assert head["method"]["after"] == pytest.approx(head["oracle"]["after"], abs=1e-6)


def test_checkpoint_audit_refuses_what_it_cannot_do(ckpts):
    root, store, _ = ckpts
    with pytest.raises(ConfigError, match="carries no method"):
        api.audit_checkpoint(root / "unlearned", forget=FORGET, store=store, attacks="ulira")
    with pytest.raises(ConfigError, match="forget set it was unlearned on"):
        api.audit_checkpoint(root / "unlearned", forget="", store=store)
    with pytest.raises(CheckpointError):
        api.audit_checkpoint(root / "unlearned", forget=FORGET, dataset="digits", store=store)


def test_a_changed_checkpoint_is_read_again(ckpts, tmp_path):
    """The same path audited before and after its weights change: the second audit sees the new weights."""
    import torch

    root, store, meta = ckpts
    net = build_model(meta["arch"], (1, 8, 8), 4)
    load_checkpoint(root / "unlearned", net)
    kw = {"forget": FORGET, "original": root / "orig", "store": store, "attacks": "probe"}
    save_checkpoint(tmp_path / "copy", net, {"arch": meta["arch"], "dataset": "blobs"})
    first = api.audit_checkpoint(tmp_path / "copy", **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.0)
    save_checkpoint(tmp_path / "copy", net, {"arch": meta["arch"], "dataset": "blobs"})
    second = api.audit_checkpoint(tmp_path / "copy", **kw)
    assert second["checkpoint_sha256"] != first["checkpoint_sha256"]
    # all-zero weights: every feature is the same, so the probe falls to chance on held-out test data
    before, after = (r["attacks"]["probe"]["probe"]["method"]["test"] for r in (first, second))
    assert after <= 100 / 4 + 1e-6 < before - 20


def test_cli_audits_a_checkpoint(ckpts):
    root, store, _ = ckpts
    runner = CliRunner()
    base = ["audit", str(root / "unlearned"), "--forget", FORGET, "--original", str(root / "orig"),
            "--results", str(store.root)]
    r = runner.invoke(app, [*base, "--attacks", "head,probe", "--json"])
    assert r.exit_code == 0, r.output
    assert {row["attack"] for row in json.loads(r.stdout)["rows"]} == {"head", "probe"}
    r = runner.invoke(app, [*base, "--attacks", "head"])
    assert r.exit_code == 0 and "audit of checkpoint" in r.stdout and "head retrain" in r.stdout
    r = runner.invoke(app, [*base, "--attacks", "klom"])
    assert r.exit_code == 2 and "carries no method" in r.output
    r = runner.invoke(app, ["audit", "ffff", "--forget", FORGET, "--results", str(store.root)])
    assert r.exit_code == 2 and "not a checkpoint path" in r.output
