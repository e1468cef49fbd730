"""Helpers shared by the per-method tests: accuracy/loss of a model on a split, and the determinism check."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(scope="session")
def acc_loss():
    """acc_loss(model, ds) -> (accuracy, mean cross-entropy) over the whole split in one batch."""
    from unlearnlab.data import batches

    @torch.no_grad()
    def measure(model, ds):
        model.eval()
        x, y = next(batches(ds, len(ds)))
        logits = model(x)
        return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()

    return measure


@pytest.fixture
def assert_deterministic(trained_mlp, blobs_data, task4):
    """assert_deterministic(name, overrides, seed): two runs with the same seed give bit-identical weights."""
    from unlearnlab.methods import run_method
    from unlearnlab.methods.base import MethodContext

    def check(name, overrides=None, seed=0):
        a = run_method(name, trained_mlp, blobs_data, task4, overrides or {}, ctx=MethodContext(seed=seed))
        b = run_method(name, trained_mlp, blobs_data, task4, overrides or {}, ctx=MethodContext(seed=seed))
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    return check
