"""The approximate (empirical) deletion scheme: unlearning on deletion, audit evidence, crash safety, ledger."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.svm import SVC

from unlearnlab.errors import ConfigError, DataError
from unlearnlab.eval.mia import shadow_member_indices
from unlearnlab.exact import SCHEMES, UnknownRecordError, load_scheme
from unlearnlab.exact.approximate import ApproximateScheme
from unlearnlab.exact.base import read_json
from unlearnlab.train import TrainConfig

RECIPE = TrainConfig(epochs=10, lr=0.05, batch_size=64)


class Crash(RuntimeError):
    """Stands in for a kill at a chosen point of a deletion."""


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits: train rows with record ids, and the test split as the audit holdout."""
    from unlearnlab.data import load_dataset

    b = load_dataset("digits")
    ids = [f"digit-{i:04d}" for i in range(len(b.train.y))]
    return b.train.x, b.train.y.numpy(), ids, b.test.x, b.test.y.numpy()


@pytest.fixture(scope="module")
def fitted(digits, tmp_path_factory):
    """One scheme fitted once (MLP, retrain reference on); tests work on copies of its directory."""
    x, y, ids, hx, hy = digits
    root = tmp_path_factory.mktemp("approx") / "base"
    return ApproximateScheme(root, "salun", None, "mlp:hidden=64", RECIPE, (hx, hy), reference="retrain").fit(x, y, ids)


def copy_of(fitted, path) -> ApproximateScheme:
    """A private copy of the fitted scheme, opened from disk."""
    fitted.save(path)
    return ApproximateScheme.load(path)


def forget_ids(ids, n=30, seed=0):
    """A seeded random batch of record ids to delete."""
    return [ids[i] for i in np.random.default_rng(seed).choice(len(ids), n, replace=False)]


def acc(probs, y):
    """Accuracy in percent."""
    return 100.0 * float(np.mean(probs.argmax(1) == y))


def test_registered_as_empirical():
    assert SCHEMES.get("approximate") is ApproximateScheme and ApproximateScheme.guarantee == "empirical"


def test_delete_forgets_and_audit_is_on_the_right_sets(fitted, digits, tmp_path):
    x, y, ids, hx, hy = digits
    s = copy_of(fitted, tmp_path / "s")
    gone = forget_ids(ids)
    rows = np.array([ids.index(r) for r in gone])
    p_before = s.predict_proba(x[rows])
    ev = s.delete(gone)
    p_after = s.predict_proba(x[rows])
    loss = lambda p: float(F.nll_loss(torch.log(torch.as_tensor(p)), torch.as_tensor(y[rows])))  # noqa: E731
    assert loss(p_after) > loss(p_before) + 0.05 and acc(p_after, y[rows]) <= acc(p_before, y[rows])
    assert ev["guarantee"] == "empirical" and "nothing proves" in ev["guarantee_statement"]
    assert ev["deleted"] == gone and ev["method"] == "salun" and ev["model_version"] == {"from": 0, "to": 1}
    a = ev["audit"]
    assert a["sets"]["forget"]["rows"] == 30 and a["sets"]["retain"]["rows"] == len(ids) - 30
    assert a["sets"]["test"]["rows"] == len(hy)
    # hand-check: UA on the deleted rows, RA on the kept rows, TA on the holdout, before and after
    keep = np.setdiff1d(np.arange(len(ids)), rows)
    assert a["after"]["UA"] == pytest.approx(100 - acc(p_after, y[rows]))
    assert a["before"]["UA"] == pytest.approx(100 - acc(p_before, y[rows]))
    assert a["after"]["forget_loss"] == pytest.approx(loss(p_after), rel=1e-4)
    assert a["after"]["RA"] == pytest.approx(acc(s.predict_proba(x[keep]), y[keep]))
    assert a["after"]["TA"] == pytest.approx(acc(s.predict_proba(hx), hy))
    # hand-check MIA-Eff: SVC on true-label confidence, |holdout| kept rows (members) vs holdout (non-members)
    conf = lambda p, t: np.take_along_axis(p, t[:, None], 1)  # noqa: E731
    shadow = keep[shadow_member_indices(len(keep), len(hy))]
    feats = np.concatenate([conf(s.predict_proba(x[shadow]), y[shadow]), conf(s.predict_proba(hx), hy)])
    svc = SVC(C=3, gamma="auto").fit(feats, np.r_[np.ones(len(shadow)), np.zeros(len(hy))])
    assert a["after"]["MIA-Eff"] == pytest.approx(100 * np.mean(svc.predict(conf(p_after, y[rows])) == 0))
    # the retrained reference and the gaps to it
    ref, gap = a["reference"], a["gap_to_reference"]
    assert ref["kind"] == "retrain" and ref["TA"] > 85
    gaps = [abs(a["after"][k] - ref[k]) for k in ("UA", "RA", "TA", "MIA-Eff")]
    assert gap["Avg.Gap"] == pytest.approx(np.mean(gaps))
    assert all(gap[f"KL-{k}"] >= 0 and 0 <= gap[f"JS-{k}"] <= np.log(2) for k in ("forget", "retain", "test"))
    # the strict attacks that need no population ride along with an empirical certificate
    st = a["strict"]
    assert 0.0 <= st["ps"]["method"] <= 1.0 and 0.0 <= st["ps"]["ceiling"] <= 1.0
    assert set(st["cka"]["splits"]) == {"forget", "retain"}
    assert st["relearn"]["known"] + st["relearn"]["unseen"] == 30
    assert 0.0 <= st["head"]["method"]["after"] <= 100.0 and st["probe"]["probe"]["oracle"]["forget"] >= 0.0
    assert any("Population attacks" in n for n in st["notes"])
    json.dumps(ev)
    # lineage now names the new version; the old one is purged and listed
    assert s.lineage([ids[keep[0]]])[ids[keep[0]]][0] == "approximate/model-v000001"
    assert sorted(p.name for p in (tmp_path / "s" / "models").iterdir()) == ["model-v000001.safetensors"]
    assert any(f.endswith("model-v000000.safetensors") for f in ev["purged_files"])
    assert set(gone).isdisjoint(s.records) and len(s.records) == len(ids) - 30


def test_redelete_is_idempotent_and_unknown_ids_fail(fitted, digits, tmp_path):
    _, _, ids, _, _ = digits
    s = copy_of(fitted, tmp_path / "s")
    s.delete(ids[:3])
    again = s.delete([ids[0], ids[1]])
    assert again["deleted"] == [] and again["already_deleted"] == ids[:2] and s.version == 1
    mixed = s.delete([ids[2], ids[3]])
    assert mixed["deleted"] == [ids[3]] and mixed["already_deleted"] == [ids[2]] and s.version == 2
    with pytest.raises(UnknownRecordError) as e:
        s.delete(["never-seen", ids[5]])
    assert e.value.unknown == ["never-seen"] and s.version == 2
    with pytest.raises(UnknownRecordError):
        s.lineage([ids[0]])
    assert s.cost_estimate(ids[10:12])["samples_to_retrain"] > 0


def test_crash_before_switch_keeps_old_model_and_restart_deletes_once(fitted, digits, tmp_path):
    x, _, ids, _, _ = digits
    gone = forget_ids(ids, 10, seed=1)
    clean = copy_of(fitted, tmp_path / "clean")
    ev_clean = clean.delete(gone)
    s = copy_of(fitted, tmp_path / "s")
    before = s.predict_proba(x)

    def crash(stage):
        if stage == "written":
            raise Crash(stage)

    s.on_stage = crash
    with pytest.raises(Crash):
        s.delete(gone)
    assert (tmp_path / "s" / "models" / "model-v000001.safetensors").exists()      # written ...
    assert read_json(tmp_path / "s" / "scheme.json")["version"] == 0                 # ... not switched
    assert s.version == 0 and set(gone) <= set(s.records) and np.array_equal(s.predict_proba(x), before)
    back = ApproximateScheme.load(tmp_path / "s")                                    # restart
    assert back.recovered is not None and back.recovered["deleted"] == gone and back.version == 1
    assert back.records == clean.records
    assert np.allclose(back.predict_proba(x), clean.predict_proba(x), atol=1e-6)     # applied once, not twice
    assert back.recovered["audit"]["after"] == pytest.approx(ev_clean["audit"]["after"])
    assert sorted(p.name for p in (tmp_path / "s" / "models").iterdir()) == ["model-v000001.safetensors"]
    again = ApproximateScheme.load(tmp_path / "s")
    assert again.recovered is None and again.version == 1 and not (tmp_path / "s" / "journal.json").exists()


def test_crash_after_switch_finishes_the_purge(fitted, digits, tmp_path):
    _, _, ids, _, _ = digits
    s = copy_of(fitted, tmp_path / "s")

    def crash(stage):
        if stage == "switched":
            raise Crash(stage)

    s.on_stage = crash
    with pytest.raises(Crash):
        s.delete(ids[:2])
    assert (tmp_path / "s" / "models" / "model-v000000.safetensors").exists()
    back = ApproximateScheme.load(tmp_path / "s")
    assert back.version == 1 and back.recovered["deleted"] == ids[:2]
    assert any(f.endswith("model-v000000.safetensors") for f in back.recovered["purged_files"])
    assert not (tmp_path / "s" / "models" / "model-v000000.safetensors").exists()
    assert back.recovered["audit"]["sets"]["forget"]["rows"] == 2


def test_save_load_round_trip(fitted, digits, tmp_path):
    x, _, ids, hx, _ = digits
    s = copy_of(fitted, tmp_path / "s")
    s.delete(ids[:4])
    s.save(tmp_path / "saved")
    back = load_scheme(tmp_path / "saved")
    assert type(back) is ApproximateScheme and back.records == s.records and back.version == 1
    assert back.cfg == s.cfg and back.recipe == s.recipe and back.method_overrides == s.method_overrides
    assert np.allclose(back.predict_proba(x), s.predict_proba(x)) and np.array_equal(back._hx, hx)
    assert back.delete([ids[0]])["already_deleted"] == [ids[0]]


def test_bad_configuration_and_input(digits, tmp_path):
    x, y, ids, hx, hy = digits
    small = dict(model="mlp:hidden=8", recipe=TrainConfig(epochs=1, batch_size=64))
    with pytest.raises(ConfigError, match="holdout"):
        ApproximateScheme(tmp_path / "a", **small).fit(x[:50], y[:50], ids[:50])
    with pytest.raises(DataError, match="never trained"):
        ApproximateScheme(tmp_path / "b", **small).fit(x[:50], y[:50], ids[:50], holdout=(x[40:60], y[40:60]))
    with pytest.raises(ConfigError, match="salun"):
        ApproximateScheme(tmp_path / "c", method="salunn")
    with pytest.raises(ConfigError):
        ApproximateScheme(tmp_path / "d", method_overrides={"threshold": 2.0})
    s = ApproximateScheme(tmp_path / "e", method="ga", audit_holdout=(hx, hy), **small).fit(x[:20], y[:20], ids[:20])
    with pytest.raises(DataError, match="no training records"):
        s.delete(ids[:20])
    with pytest.raises(ConfigError, match="not empty"):
        ApproximateScheme(tmp_path / "e", audit_holdout=(hx, hy), **small).fit(x[:20], y[:20], ids[:20])


def test_empirical_guarantee_reaches_ledger_and_certificate(fitted, digits, tmp_path):
    from unlearnlab.ledger import DeletionService, create_deployment, verify_certificate

    _, _, ids, _, _ = digits
    dep = create_deployment(tmp_path / "dep", fitted)
    svc = DeletionService(dep)
    st = svc.submit("r1", "alice", [ids[1], ids[40]])
    assert st["artefacts"] and all(a.startswith("approximate/") for a in st["artefacts"])
    assert svc.process_pending()[0]["state"] == "committed"
    cert = svc.certificate("r1")["certificate"]
    assert cert["guarantee"]["level"] == "empirical"
    ev = cert["evidence"]
    assert ev["deleted"] == [ids[1], ids[40]] and "nothing proves" in ev["guarantee_statement"]
    assert ev["audit"]["sets"]["forget"]["rows"] == 2 and {"UA", "RA", "TA", "MIA-Eff"} <= set(ev["audit"]["after"])
    assert "Avg.Gap" in ev["audit"]["gap_to_reference"]
    assert any(f.startswith("scheme/000000-initial/") for f in ev["purged_files"])
    assert any(f.endswith("model-v000000.safetensors") for f in ev["purged_files"])
    assert {ids[1], ids[40]}.isdisjoint(dep.load_scheme().records)
    done = [e for e in dep.ledger.entries("r1") if e.status == "completed"]
    assert len(done) == 1 and done[0].body["guarantee"] == {"level": "empirical"}
    assert done[0].body["evidence"]["audit"] == ev["audit"] and done[0].hash == cert["ledger"]["hash"]
    assert verify_certificate(dep.certificate_path("r1"), dep.public_key_path).ok and svc.verify().ok
