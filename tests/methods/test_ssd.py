"""SSD: selection/dampening rule checked against an independent hand computation."""
from __future__ import annotations

import dataclasses

import torch

from unlearnlab import config as C
from unlearnlab.methods import run_method
from unlearnlab.methods.base import mean_grad_sq
from unlearnlab.methods.ssd import SSDConfig


def test_config_builds_with_defaults():
    cfg = C.build(SSDConfig)
    assert (cfg.dampening_constant, cfg.selection_weighting, cfg.batch_size) == (1.0, 10.0, 128)
    assert all(f.metadata["help"] for f in dataclasses.fields(SSDConfig))


def test_input_unchanged_and_forgets(trained_mlp, blobs_data, task4, acc_loss):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    out = run_method("ssd", trained_mlp, blobs_data, task4)
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    f0, lf0 = acc_loss(trained_mlp, blobs_data.forget)
    f1, lf1 = acc_loss(out, blobs_data.forget)
    r1, _ = acc_loss(out, blobs_data.retain)
    assert lf1 > lf0 + 0.05 and f1 < f0  # defaults λ=1, α=10 already forget on blobs
    assert r1 > 0.9


def test_deterministic(assert_deterministic):
    assert_deterministic("ssd", None, seed=3)


def _check_rule(model, data, task, alpha, lam):
    """Only entries with I_f > α·I_D change, each by exactly min(λ·I_D/I_f, 1) (importances via base.mean_grad_sq)."""
    out = run_method("ssd", model, data, task, {"selection_weighting": alpha, "dampening_constant": lam,
                                                "order": "dataset"})
    i_d = mean_grad_sq(model, data.train, task, batch_size=128)
    i_f = mean_grad_sq(model, data.forget, task, batch_size=128)
    new = dict(out.named_parameters())
    n_selected = 0
    for name, p in model.named_parameters():
        sel = i_f[name] > alpha * i_d[name]
        n_selected += int(sel.sum())
        expect = p.detach().clone()
        expect[sel] = p.detach()[sel] * torch.clamp(lam * i_d[name][sel] / i_f[name][sel], max=1.0)
        torch.testing.assert_close(new[name].detach(), expect, rtol=1e-4, atol=1e-7)
        assert torch.equal(new[name].detach()[~sel], p.detach()[~sel])
    assert n_selected > 0
    return out


def test_selection_and_dampening_match_hand_computation(trained_mlp, blobs_data, task4):
    _check_rule(trained_mlp, blobs_data, task4, alpha=10.0, lam=1.0)
    _check_rule(trained_mlp, blobs_data, task4, alpha=3.0, lam=0.5)


def test_batchnorm_model(trained_cnn, blobs_data, task4):
    out = _check_rule(trained_cnn, blobs_data, task4, alpha=10.0, lam=1.0)
    # buffers (BatchNorm running stats) are left alone: SSD only touches parameters
    for (k, a), b in zip(trained_cnn.state_dict().items(), out.state_dict().values()):
        if "running" in k:
            assert torch.equal(a, b)


def test_shuffled_order_mixes_class_sorted_batches(blobs_data, task4, recipe):
    """On a class-sorted train set, dataset-order batches are single-class, which keeps I_D large wherever the forget
    class has gradient (no cancellation across classes inside a batch), so far fewer parameters pass I_f > α·I_D;
    the default seeded shuffle mixes classes in every batch as the authors' CIFAR loaders do."""
    from unlearnlab.data import make_split
    from unlearnlab.data.core import ArrayDataset
    from unlearnlab.models import build_model
    from unlearnlab.train import train

    tr = blobs_data.train
    order = torch.argsort(tr.y, stable=True)
    sorted_train = ArrayDataset(tr.x[order], tr.y[order])
    data = make_split(sorted_train, blobs_data.test, "class:0", 0, num_classes=4)
    model = train(build_model("mlp", (1, 8, 8), 4, seed=0), sorted_train, recipe, task4, seed=0)

    def changed(order_name):
        out = run_method("ssd", model, data, task4, {"selection_weighting": 10.0, "order": order_name})
        return sum(int((a != b).sum()) for a, b in zip(model.parameters(), out.parameters()))

    assert changed("shuffled") > 2 * changed("dataset")  # measured: 4383 vs 1245 entries


def test_selected_fraction_recorded_and_zero_selection_warned(trained_mlp, blobs_data, task4):
    from unlearnlab.methods import MethodContext

    ctx = MethodContext(seed=0)
    run_method("ssd", trained_mlp, blobs_data, task4, ctx=ctx)
    total = sum(p.numel() for p in trained_mlp.parameters())
    assert ctx.info["total_params"] == total and 0 < ctx.info["selected_params"] < total
    assert ctx.info["selected_fraction"] == ctx.info["selected_params"] / total and not ctx.warnings
    ctx = MethodContext(seed=0)
    out = run_method("ssd", trained_mlp, blobs_data, task4, {"selection_weighting": 1e12}, ctx=ctx)
    assert ctx.info["selected_params"] == 0 and ctx.info["selected_fraction"] == 0.0
    assert len(ctx.warnings) == 1 and "unchanged" in ctx.warnings[0]
    assert all(torch.equal(a, b) for a, b in zip(out.state_dict().values(), trained_mlp.state_dict().values()))
