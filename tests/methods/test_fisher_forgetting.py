"""FF: Fisher vs a naive per-example loop, noise scale sqrt(α/F) per Golatkar's rules, seeding, class rule."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnlab import config as C
from unlearnlab.data import make_split
from unlearnlab.data.core import ArrayDataset
from unlearnlab.methods import run_method
from unlearnlab.methods.base import MethodContext
from unlearnlab.methods.fisher_forgetting import (
    FisherForgettingConfig,
    forgotten_class,
    noise_moments,
    output_layer,
    true_fisher,
)
from unlearnlab.models import ClassifierTask


def test_config_builds_with_defaults():
    cfg = C.build(FisherForgettingConfig)
    assert 1e-9 <= cfg.alpha <= 1e-6
    assert all(f.metadata["help"] for f in dataclasses.fields(FisherForgettingConfig))


def test_the_automatic_chunk_is_one_example_on_a_cpu():
    """chunk_size 0: one example per Jacobian on a CPU (vmap's batched per-example convolution gradients were 2x
    slower there), 32 on an accelerator; an explicit size is kept."""
    from unlearnlab.methods.fisher_forgetting import fisher_chunk

    assert FisherForgettingConfig().chunk_size == 0
    assert fisher_chunk(0, "cpu") == 1 and fisher_chunk(0, "cuda") == 32 and fisher_chunk(5, "cpu") == 5


def test_true_fisher_matches_naive_loop():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    ds = ArrayDataset(torch.randn(10, 4, generator=gen), torch.randint(0, 3, (10,), generator=gen))
    got = true_fisher(model, ds, ClassifierTask(3), chunk_size=4)
    want = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(10):
        logp = F.log_softmax(model(ds.x[i:i + 1]), dim=1)[0]
        for c in range(3):
            g = torch.autograd.grad(logp[c], list(model.parameters()), retain_graph=True)
            for w, gi in zip(want, g):
                w += logp[c].exp().detach() * gi**2 / 10
    tiny = true_fisher(model, ds, ClassifierTask(3), chunk_size=8, max_memory_mb=1e-4)  # the cap forces chunks of 1
    auto = true_fisher(model, ds, ClassifierTask(3))  # the default on a CPU: one example per chunk
    for w, a in zip(want, auto.values()):
        torch.testing.assert_close(a, w, rtol=1e-4, atol=1e-9)
    for w, g, t in zip(want, got.values(), tiny.values()):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(t, w, rtol=1e-4, atol=1e-9)


def _naive_fisher(model, x, k):
    """Golatkar's loop: one example at a time, Σ_y p_y·(∂ log p_y/∂θ)², averaged over examples."""
    want = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(x)):
        logp = F.log_softmax(model(x[i:i + 1]), dim=1)[0]
        for c in range(k):
            g = torch.autograd.grad(logp[c], list(model.parameters()), retain_graph=True)
            for w, gi in zip(want, g):
                w += logp[c].exp().detach() * gi**2 / len(x)
    return want


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on the test's own layer
def test_the_layerwise_fisher_matches_the_per_example_loop(monkeypatch):
    """how='layerwise' (K whole-batch backward passes, per-example gradients of Conv2d / BatchNorm / Linear
    from their inputs and output gradients) gives the naive loop's values: strided and unpadded convolutions, an
    even kernel with 'same' padding (asymmetric), bias-free layers, BatchNorm1d/2d in eval mode, an in-place ReLU."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(inplace=True),
                          nn.Conv2d(5, 4, 2, padding="same", bias=False), nn.BatchNorm2d(4), nn.GELU(),
                          nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 6),
                          nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3, bias=False))
    model.train()
    model(torch.randn(32, 3, 8, 8, generator=gen))  # running statistics that are not the identity
    model.eval()
    ds = ArrayDataset(torch.randn(12, 3, 8, 8, generator=gen), torch.randint(0, 3, (12,), generator=gen))
    want = _naive_fisher(model, ds.x, 3)
    fast = true_fisher(model, ds, ClassifierTask(3), how="layerwise", max_memory_mb=1e-3)  # chunks of one example
    assert list(fast) == [n for n, _ in model.named_parameters()]
    for w, f in zip(want, fast.values()):
        torch.testing.assert_close(f, w, rtol=1e-4, atol=1e-10)
    import unlearnlab.methods.fisher_forgetting as ff

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).eval()
    calls, real = [], ff.layerwise_fisher
    monkeypatch.setattr(ff, "layerwise_fisher", lambda *a, **k: calls.append(1) or real(*a, **k))
    auto = true_fisher(mlp, ds, ClassifierTask(3))  # 'auto': the layerwise pass on a model without convolutions
    true_fisher(model, ds, ClassifierTask(3))  # ... only (with them the per-example Jacobian is the faster one)
    assert len(calls) == 1
    for w, a in zip(_naive_fisher(mlp, ds.x, 3), auto.values()):
        torch.testing.assert_close(a, w, rtol=1e-4, atol=1e-10)


def test_a_model_the_layerwise_pass_cannot_handle_takes_the_jacobian():
    """FastCNN with flip test-time augmentation applies its head twice per forward: 'auto' falls back to the
    per-example Jacobian (same values as the loop), 'layerwise' says what to use instead."""
    from unlearnlab.errors import ConfigError
    from unlearnlab.models.zoo import FastCNN

    gen = torch.Generator().manual_seed(1)
    ds = ArrayDataset(torch.randn(4, 3, 16, 16, generator=gen), torch.randint(0, 10, (4,), generator=gen))
    model = FastCNN((3, 16, 16), 10, width=4, tta=1)
    model.data_init(ds)
    model.eval()
    got = true_fisher(model, ds, ClassifierTask(10))
    for w, g in zip(_naive_fisher(model, ds.x, 10), got.values()):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-10)
    with pytest.raises(ConfigError, match="how='auto'"):
        true_fisher(model, ds, ClassifierTask(10), how="layerwise")


def test_noise_scale_follows_sqrt_alpha_over_fisher():
    p = torch.zeros(3, 4)
    fisher = torch.tensor([[1e-2, 1e-3, 1e-4, 1e-5]] * 3)
    _, std = noise_moments("body.w", p, fisher, 1e-6, head=set(), cls=None)
    var = 1e-6 * torch.clamp(1 / (fisher + 1e-8), max=1e3)  # sqrt(α/F), F clamped at 1e-3
    torch.testing.assert_close(std, var.mean(1, keepdim=True).sqrt().expand(3, 4))  # averaged over inputs
    _, std_b = noise_moments("body.b", torch.zeros(2), torch.tensor([1.0, 1e-2]), 1e-6, head=set(), cls=None)
    torch.testing.assert_close(std_b, (10 * 1e-6 / (torch.tensor([1.0, 1e-2]) + 1e-8)).sqrt())  # 1-D: var x 10
    mu, std_h = noise_moments("head.w", torch.ones(3, 4), fisher, 1e-6, head={"head.w"}, cls=1)
    assert torch.equal(mu[1], torch.zeros(4)) and torch.equal(mu[0], torch.ones(4))
    torch.testing.assert_close(std_h[1], torch.full((4,), (10 * 1e-4) ** 0.5))


def test_applied_noise_has_that_scale(trained_mlp, blobs_data, task4):
    alpha = 1e-6
    out = run_method("fisher_forgetting", trained_mlp, blobs_data, task4, {"alpha": alpha})
    fisher = true_fisher(trained_mlp, blobs_data.retain, task4)
    head = output_layer(trained_mlp, 4)
    z = []
    for (n, p), q in zip(trained_mlp.named_parameters(), out.parameters()):
        _, std = noise_moments(n, p.detach(), fisher[n], alpha, head, None)
        z.append(((q - p) / std).detach().flatten())
    z = torch.cat(z)
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05  # ε ~ N(0, 1), ~17k draws


def test_input_unchanged_seeded_and_forgets(trained_mlp, blobs_data, task4, acc_loss):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    a = run_method("fisher_forgetting", trained_mlp, blobs_data, task4, ctx=MethodContext(seed=5))
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    b = run_method("fisher_forgetting", trained_mlp, blobs_data, task4, ctx=MethodContext(seed=5))
    c = run_method("fisher_forgetting", trained_mlp, blobs_data, task4, ctx=MethodContext(seed=6))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
    # FF is noise, not targeted: at the default α it only nudges the forget loss up on random forgetting
    assert acc_loss(a, blobs_data.forget)[1] > acc_loss(trained_mlp, blobs_data.forget)[1]
    assert acc_loss(a, blobs_data.retain)[0] > 0.95
    strong = run_method("fisher_forgetting", trained_mlp, blobs_data, task4, {"alpha": 1e-5})
    assert acc_loss(strong, blobs_data.forget)[0] < acc_loss(trained_mlp, blobs_data.forget)[0]


def test_full_class_rule_and_batchnorm(trained_cnn, blobs_data, task4):
    data = make_split(blobs_data.train, blobs_data.test, "class:2", 0, num_classes=4)
    assert forgotten_class(data) == 2 and forgotten_class(blobs_data) is None
    out = run_method("fisher_forgetting", trained_cnn, data, task4)
    assert (out(data.forget.x).argmax(1) != 2).float().mean() > 0.9  # the forgotten class's logit is gone
    assert output_layer(trained_cnn, 4) == {"head.weight", "head.bias"}


def test_the_retain_fisher_is_computed_once_for_trials_that_vary_alpha(monkeypatch):
    import unlearnlab.methods.fisher_forgetting as ff

    calls = []
    real = ff.true_fisher
    monkeypatch.setattr(ff, "true_fisher", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(ff, "_FISHERS", type(ff._FISHERS)())
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    ds = ArrayDataset(torch.randn(30, 4, generator=gen), torch.randint(0, 3, (30,), generator=gen))
    data = make_split(ds, ds, "random:20%", 0, num_classes=3, name="toy")
    task, ctx = ClassifierTask(3), MethodContext(seed=0)
    a = run_method("fisher_forgetting", model, data, task, {"alpha": 1e-6}, ctx)
    assert ctx.info["fisher_reused"] is False
    b = run_method("fisher_forgetting", model, data, task, {"alpha": 1e-8}, ctx)
    assert len(calls) == 1 and ctx.info["fisher_reused"] is True  # the second α reused the first trial's Fisher
    fresh = ff.true_fisher(model, data.retain, task)
    torch.testing.assert_close(ff.cached_fisher(model, data.retain, task, 32, 1024.0), fresh)
    assert not torch.equal(a[0].weight, b[0].weight)  # different α, different noise scale
    with torch.no_grad():
        model[0].weight.add_(0.1)  # other weights: a new Fisher
    run_method("fisher_forgetting", model, data, task, {"alpha": 1e-8}, ctx)
    assert len(calls) == 3  # (the direct true_fisher call above counted once)
