"""IU: WoodFisher inverse vs torch.linalg.inv, per-example gradients vs autograd, forgetting on blobs."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnlab import config as C
from unlearnlab.errors import ConfigError
from unlearnlab.methods import run_method
from unlearnlab.methods.influence import InfluenceConfig, per_example_grads, sample_count, woodfisher_solve
from unlearnlab.models import ClassifierTask


def test_config_builds_with_defaults():
    cfg = C.build(InfluenceConfig)
    assert 1.0 <= cfg.alpha <= 20.0 and cfg.samples == 1000 and cfg.damping == 1.0
    assert all(f.metadata["help"] for f in dataclasses.fields(InfluenceConfig))


def test_woodfisher_matches_dense_inverse_on_logistic_regression():
    gen = torch.Generator().manual_seed(0)
    model = nn.Linear(5, 3).double()
    task = ClassifierTask(3)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    g = per_example_grads(model.eval(), x, y, task, chunk_size=16)
    torch.testing.assert_close(per_example_grads(model, x, y, task), g)  # chunk_size 0: the device's (CPU: 8)
    # per-example gradients equal plain autograd on each example
    for i in (0, 17, 39):
        gi = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        torch.testing.assert_close(g[i], torch.cat([t.flatten() for t in gi]))
    v = torch.randn(g.shape[1], generator=gen, dtype=torch.float64)
    for damping in (1.0, 1e-2):
        fisher = damping * torch.eye(g.shape[1], dtype=torch.float64) + g.T @ g / len(g)
        torch.testing.assert_close(woodfisher_solve(g, v, damping), torch.linalg.inv(fisher) @ v)


def test_woodfisher_equals_sequential_rank_one_updates():
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(12, 7, generator=gen, dtype=torch.float64)
    v = torch.randn(7, generator=gen, dtype=torch.float64)
    inv = torch.eye(7, dtype=torch.float64) / 0.5  # (λI)^-1, then Sherman-Morrison with g_i/sqrt(m)
    for gi in g / len(g) ** 0.5:
        u = inv @ gi
        inv = inv - torch.outer(u, u) / (1 + gi @ u)
    torch.testing.assert_close(woodfisher_solve(g, v, 0.5), inv @ v)


def test_input_unchanged_and_forgets(trained_mlp, blobs_data, task4, acc_loss):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    out = run_method("influence", trained_mlp, blobs_data, task4)
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    f0, lf0 = acc_loss(trained_mlp, blobs_data.forget)
    f1, lf1 = acc_loss(out, blobs_data.forget)
    assert lf1 > lf0 + 0.1 and f1 < f0
    assert acc_loss(out, blobs_data.retain)[0] > 0.95


def test_deterministic(assert_deterministic):
    assert_deterministic("influence", {"samples": 100}, seed=2)


def test_memory_cap_limits_samples():
    cfg = C.build(InfluenceConfig, {"max_memory_mb": 1.0, "samples": 1000})
    assert sample_count(cfg, 5000, 2**18 // 4) == 4  # 1 MB holds four 256 KB gradients
    with pytest.raises(ConfigError, match="max_memory_mb"):
        sample_count(cfg, 5000, 2**20)


def test_batchnorm_model(trained_cnn, blobs_data, task4, acc_loss):
    out = run_method("influence", trained_cnn, blobs_data, task4, {"samples": 64, "chunk_size": 32})
    assert any(not torch.equal(a, b) for a, b in zip(trained_cnn.parameters(), out.parameters()))
    assert acc_loss(out, blobs_data.forget)[1] > acc_loss(trained_cnn, blobs_data.forget)[1]
    for (k, a), b in zip(trained_cnn.state_dict().items(), out.state_dict().values()):
        if "running" in k:
            assert torch.equal(a, b)  # eval mode throughout: BatchNorm statistics untouched
