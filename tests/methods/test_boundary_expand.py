"""Boundary Expand: shadow class added then pruned; the output has the input's architecture; forgets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unlearnlab import config as C
from unlearnlab.errors import ConfigError
from unlearnlab.eval.outputs import split_outputs
from unlearnlab.methods import MethodContext, get_method, run_method
from unlearnlab.methods.boundary_expand import BoundaryExpandConfig, find_head, widen


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_config_defaults_cite_paper():
    cfg = C.build(get_method("boundary_expand").config)
    assert cfg.epochs == 10
    assert all(f["help"] for f in C.describe(BoundaryExpandConfig))


def test_widen_keeps_original_units():
    layer = nn.Linear(6, 3)
    wide = widen(layer, seed=0)
    assert (wide.in_features, wide.out_features) == (6, 4)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    # the same weights, but a 4-wide GEMM may block the sums differently: equal up to float32 rounding
    assert torch.allclose(wide(x)[:, :3], layer(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(widen(layer, 0).weight, widen(layer, 0).weight)  # seeded shadow unit


@pytest.mark.parametrize("fixture", ["trained_mlp", "trained_cnn"])
def test_architecture_preserved_and_input_untouched(request, blobs_data, task4, fixture):
    model = request.getfixturevalue(fixture)
    before = _state(model)
    out = run_method("boundary_expand", model, blobs_data, task4)
    assert _same(before, _state(model))
    assert repr(out) == repr(model) and _shapes(out) == _shapes(model)
    assert isinstance(out.head, nn.Linear) and out.head.out_features == 4
    assert out(blobs_data.forget.x[:7]).shape == (7, 4)
    assert not _same(before, _state(out))


def test_forgets_and_keeps_retain(trained_mlp, blobs_data, task4):
    out = run_method("boundary_expand", trained_mlp, blobs_data, task4)
    f0 = split_outputs(trained_mlp, blobs_data.forget, task4)
    f1 = split_outputs(out, blobs_data.forget, task4)
    assert f1["loss"].mean() > 1.1 * f0["loss"].mean()
    assert split_outputs(out, blobs_data.retain, task4)["correct"].mean() > 0.9
    stronger = run_method("boundary_expand", trained_mlp, blobs_data, task4, {"lr": 0.01})
    assert split_outputs(stronger, blobs_data.forget, task4)["correct"].mean() < f0["correct"].mean() - 0.05


def test_generic_model_without_head(blobs_data, task4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    assert find_head(model)[0] == "3"
    out = run_method("boundary_expand", model, blobs_data, task4, {"epochs": 2})
    assert repr(out) == repr(model) and _shapes(out) == _shapes(model)
    assert not torch.equal(out[3].weight, model[3].weight)


def test_clear_errors_for_unsupported_models(blobs_data, task4):
    no_linear = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (4, 16)), nn.AdaptiveAvgPool1d(1), nn.Flatten())
    with pytest.raises(ConfigError, match="nn.Linear"):
        run_method("boundary_expand", no_linear, blobs_data, task4)
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(64, 7))
    with pytest.raises(ConfigError, match="7 outputs"):
        run_method("boundary_expand", wrong, blobs_data, task4)


def test_same_seed_same_weights(trained_mlp, blobs_data, task4):
    a = run_method("boundary_expand", trained_mlp, blobs_data, task4, ctx=MethodContext(seed=5))
    b = run_method("boundary_expand", trained_mlp, blobs_data, task4, ctx=MethodContext(seed=5))
    assert _same(_state(a), _state(b))


def test_keep_shadow_evaluates_like_salun_code(trained_mlp, blobs_data, task4):
    """keep_shadow=True returns the (K+1)-way model (SalUn's boundary_ex.py evaluates it): forget examples predicted
    as the shadow class count as wrong, and the oracle comparisons (KL/JS) still work on K-way oracle outputs."""
    from unlearnlab.eval import evaluate_model

    out = run_method("boundary_expand", trained_mlp, blobs_data, task4, {"keep_shadow": True, "lr": 0.01})
    assert out.head.out_features == 5
    f = split_outputs(out, blobs_data.forget, task4)
    assert f["logits"].shape[1] == 5 and (f["logits"].argmax(1) == 4).mean() > 0.2
    assert f["correct"].mean() == (f["logits"].argmax(1) == blobs_data.forget.y.numpy()).mean()
    m = evaluate_model(out, blobs_data, task4, reference=trained_mlp)
    assert all(np.isfinite(m[k]) and m[k] >= 0 for k in m if k.startswith(("KL", "JS")))
    dropped = run_method("boundary_expand", trained_mlp, blobs_data, task4, {"lr": 0.01})
    assert dropped.head.out_features == 4
