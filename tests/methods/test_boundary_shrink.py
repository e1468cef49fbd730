"""Boundary Shrink: FGSM neighbour labels from the frozen original; forgets; never mutates its input."""
from __future__ import annotations

import copy

import torch

from unlearnlab import config as C
from unlearnlab.eval.outputs import split_outputs
from unlearnlab.methods import MethodContext, get_method, run_method
from unlearnlab.methods.boundary_shrink import BoundaryShrinkConfig, boundary_labels, fgsm_point


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_defaults_cite_paper():
    cfg = C.build(get_method("boundary_shrink").config)
    assert (cfg.epsilon, cfg.epochs) == (0.1, 10)  # bound = 0.1 on [0,1] pixels, as the paper and code
    assert all(f["help"] for f in C.describe(BoundaryShrinkConfig))


def test_fgsm_step_on_pixel_scale_clamps_and_rounds():
    mean, std = (0.5, 0.25), (0.2, 0.5)
    pix = torch.tensor([[[[0.0, 0.95]], [[0.5, 1.0]]]])  # 1 x 2 channels x 1 x 2, on [0,1]
    m, s = torch.tensor(mean).view(1, 2, 1, 1), torch.tensor(std).view(1, 2, 1, 1)
    x = (pix - m) / s
    g = torch.tensor([[[[-1.0, 1.0]], [[2.0, 3.0]]]])
    got = fgsm_point(x, g, 0.1, (mean, std)) * s + m  # back to pixels
    # 0.0 - 0.1 clamps to 0; 0.95 + 0.1 clamps to 1; 0.5 + 0.1 = 0.6 -> round(153)/255; 1.0 + 0.1 clamps to 1
    want = torch.tensor([[[[0.0, 1.0]], [[round(0.6 * 255) / 255, 1.0]]]])
    assert torch.allclose(got, want, atol=1e-6)
    # without a pixel normalisation the step is taken in input units, unclamped
    assert torch.allclose(fgsm_point(x, g, 0.1), x + 0.1 * g.sign())


def test_neighbour_labels_are_mostly_wrong_classes(trained_mlp, blobs_data, task4):
    model = copy.deepcopy(trained_mlp)
    y = blobs_data.forget.y
    y_adv = boundary_labels(model, blobs_data.forget, task4, 0.4)
    assert y_adv.shape == y.shape
    assert (y_adv != y).float().mean() > 0.6
    assert _same(_state(model), _state(trained_mlp))  # the attack does not touch the original
    # ε = 0 gives the original's own predictions; a larger step flips more labels.
    with torch.no_grad():
        pred = trained_mlp(blobs_data.forget.x).argmax(1)
    assert torch.equal(boundary_labels(model, blobs_data.forget, task4, 0.0), pred)
    assert (boundary_labels(model, blobs_data.forget, task4, 1.0) != y).float().mean() >= (y_adv != y).float().mean()


def test_neighbour_label_is_the_argmax_at_the_fgsm_point(trained_mlp, blobs_data, task4):
    x, y = blobs_data.forget.x[:5].clone().requires_grad_(True), blobs_data.forget.y[:5]
    torch.nn.functional.cross_entropy(trained_mlp(x), y).backward()
    with torch.no_grad():
        expected = trained_mlp(x + 0.4 * x.grad.sign()).argmax(1)
    trained_mlp.zero_grad(set_to_none=True)
    got = boundary_labels(trained_mlp, blobs_data.forget, task4, 0.4)[:5]
    assert torch.equal(got, expected)


def test_forgets_keeps_retain_and_leaves_input(trained_mlp, blobs_data, task4):
    before = _state(trained_mlp)
    out = run_method("boundary_shrink", trained_mlp, blobs_data, task4, {"epsilon": 0.4})  # blobs: input units
    assert _same(before, _state(trained_mlp))
    f0 = split_outputs(trained_mlp, blobs_data.forget, task4)
    f1 = split_outputs(out, blobs_data.forget, task4)
    assert f1["loss"].mean() > 1.2 * f0["loss"].mean()
    assert f1["correct"].mean() <= f0["correct"].mean()
    assert split_outputs(out, blobs_data.retain, task4)["correct"].mean() > 0.9
    stronger = run_method("boundary_shrink", trained_mlp, blobs_data, task4, {"lr": 0.01, "epsilon": 0.4})
    assert split_outputs(stronger, blobs_data.forget, task4)["correct"].mean() < f0["correct"].mean() - 0.2


def test_same_seed_same_weights_and_batchnorm(trained_cnn, blobs_data, task4):
    before = _state(trained_cnn)
    a = run_method("boundary_shrink", trained_cnn, blobs_data, task4, ctx=MethodContext(seed=2))
    b = run_method("boundary_shrink", trained_cnn, blobs_data, task4, ctx=MethodContext(seed=2))
    assert _same(before, _state(trained_cnn))
    assert _same(_state(a), _state(b))
    f0 = split_outputs(trained_cnn, blobs_data.forget, task4)["loss"].mean()
    assert split_outputs(a, blobs_data.forget, task4)["loss"].mean() > f0
