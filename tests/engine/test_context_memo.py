"""The classifier task's per-process seed context is shared by specs that differ only in methods, their overrides
or the run name (tuning trials), so the original's and the oracle's outputs are computed once."""
from unlearnlab import api
from unlearnlab.models import save_checkpoint
from unlearnlab.spec import from_dict
from unlearnlab.store import Store
from unlearnlab.tasks import get_task

BASE = {"dataset": "blobs", "forget": "random:10%", "seeds": [0], "recipe": {"epochs": 2}}


def test_trials_share_one_context_and_one_reference_forward(tmp_path):
    store = Store(tmp_path / "r")
    task = get_task("classifier")
    api.run({**BASE, "methods": ["ga"], "overrides": {"ga": {"lr": 1e-3}}, "name": "t:ga:val"}, store=store)
    sc = task.context(from_dict({**BASE, "methods": ["ga"]}), 0, store)
    passes = sc.cache.passes
    api.run({**BASE, "methods": ["ga"], "overrides": {"ga": {"lr": 1e-2}}, "name": "t:ga:val"}, store=store)
    api.run({**BASE, "methods": ["ft"], "name": "other"}, store=store)
    assert task.context(from_dict({**BASE, "methods": ["ft"], "name": "x"}), 0, store) is sc
    # only the two new method models were forwarded (3 splits each); the original and the oracle were not again
    assert sc.cache.passes == passes + 2 * 3
    assert task.context(from_dict({**BASE, "forget": "class:1"}), 0, store) is not sc


def test_an_edited_original_checkpoint_gets_a_new_context(tmp_path):
    store = Store(tmp_path / "r")
    task = get_task("classifier")
    meta = api.train_original(dataset="blobs", epochs=2, out=tmp_path / "orig")
    spec = from_dict({**BASE, "methods": [], "original": str(tmp_path / "orig")})
    first = task.context(spec, 0, store)
    weights = first.original
    import torch

    with torch.no_grad():
        next(weights.parameters()).add_(1.0)
    save_checkpoint(tmp_path / "orig", weights, meta)
    assert task.context(spec, 0, store) is not first
