"""SalUn: global saliency mask of the requested size; masked-out weights stay bitwise unchanged; forgets."""
from __future__ import annotations

import copy

import pytest
import torch

from unlearnlab import config as C
from unlearnlab.eval.outputs import split_outputs
from unlearnlab.methods import MethodContext, get_method, run_method
from unlearnlab.methods.random_label import relabel_train
from unlearnlab.methods.salun import SalUnConfig, saliency_mask


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _flat_grad_abs(model, ds, task):
    m = copy.deepcopy(model).eval()
    m.zero_grad()
    task.loss(m, (ds.x, ds.y)).backward()
    return torch.cat([p.grad.abs().flatten() for p in m.parameters()])


def test_config_defaults_cite_paper():
    cfg = C.build(get_method("salun").config)
    assert (cfg.threshold, cfg.epochs, cfg.lr) == (0.5, 10, 0.013)
    assert all(f["help"] for f in C.describe(SalUnConfig))


@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_mask_fraction_and_global_ranking(trained_mlp, blobs_data, task4, threshold):
    model = copy.deepcopy(trained_mlp)
    mask = saliency_mask(model, blobs_data.forget, task4, threshold, batch_size=1000)
    flat = torch.cat([m.flatten() for m in mask.values()])
    total = sum(p.numel() for p in model.parameters())
    assert flat.dtype == torch.bool and len(flat) == total
    assert flat.sum().item() == int(total * threshold)
    g = _flat_grad_abs(trained_mlp, blobs_data.forget, task4)  # one batch = the whole forget set
    assert g[flat].min() >= g[~flat].max()  # the top-k by |grad|, chosen across all layers at once
    assert _same(_state(model), _state(trained_mlp))  # computing the mask does not move the model


@pytest.mark.parametrize("overrides", [{}, {"optimizer": "adamw", "lr": 1e-3}, {"momentum": 0.0}])
def test_masked_out_weights_bitwise_frozen(trained_mlp, blobs_data, task4, overrides):
    out = run_method("salun", trained_mlp, blobs_data, task4, dict(overrides, epochs=3))
    mask = saliency_mask(copy.deepcopy(trained_mlp), blobs_data.forget, task4, 0.5)
    orig, new = dict(trained_mlp.named_parameters()), dict(out.named_parameters())
    moved = 0
    for n, keep in mask.items():
        assert torch.equal(new[n][~keep], orig[n][~keep]), n  # incl. weight decay and momentum
        moved += (new[n][keep] != orig[n][keep]).sum().item()
    assert moved > 0.5 * sum(k.sum().item() for k in mask.values())


def test_frozen_on_batchnorm_model(trained_cnn, blobs_data, task4):
    before = _state(trained_cnn)
    out = run_method("salun", trained_cnn, blobs_data, task4, {"epochs": 3, "threshold": 0.3})
    assert _same(before, _state(trained_cnn))
    mask = saliency_mask(copy.deepcopy(trained_cnn), blobs_data.forget, task4, 0.3)
    orig, new = dict(trained_cnn.named_parameters()), dict(out.named_parameters())
    for n, keep in mask.items():
        assert torch.equal(new[n][~keep], orig[n][~keep]), n


def test_forgets_keeps_retain_and_leaves_input(trained_mlp, blobs_data, task4):
    before = _state(trained_mlp)
    out = run_method("salun", trained_mlp, blobs_data, task4)
    assert _same(before, _state(trained_mlp))
    f0 = split_outputs(trained_mlp, blobs_data.forget, task4)
    f1 = split_outputs(out, blobs_data.forget, task4)
    assert f1["correct"].mean() < f0["correct"].mean() - 0.2
    assert split_outputs(out, blobs_data.retain, task4)["correct"].mean() > 0.9


def test_full_mask_is_plain_random_label(trained_mlp, blobs_data, task4):
    cfg = C.build(SalUnConfig, {"epochs": 2, "threshold": 1.0})
    a = run_method("salun", trained_mlp, blobs_data, task4, {"epochs": 2, "threshold": 1.0})
    b = relabel_train(copy.deepcopy(trained_mlp), blobs_data, cfg, task4, MethodContext(), key="salun")
    sa, sb = _state(a), _state(b)
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)  # masking-in-place == SGD's coupled decay
    c = run_method("salun", trained_mlp, blobs_data, task4, {"epochs": 2, "threshold": 0.0})
    assert _same(_state(c), _state(trained_mlp))  # empty mask: nothing may move


def test_same_seed_same_weights(trained_mlp, blobs_data, task4):
    a = run_method("salun", trained_mlp, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=1))
    b = run_method("salun", trained_mlp, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=1))
    assert _same(_state(a), _state(b))


def test_masked_decay_reproduces_paper_code(trained_mlp, blobs_data, task4):
    """masked_decay=True: the gradient is masked but SGD's weight decay still shrinks masked-out weights (the code
    behind the paper's table); the default keeps them bitwise at θ0."""
    assert C.build(SalUnConfig).masked_decay is False
    out = run_method("salun", trained_mlp, blobs_data, task4, {"epochs": 2, "masked_decay": True})
    mask = saliency_mask(copy.deepcopy(trained_mlp), blobs_data.forget, task4, 0.5)
    orig, new = dict(trained_mlp.named_parameters()), dict(out.named_parameters())
    for n, keep in mask.items():
        o, w = orig[n][~keep], new[n][~keep]
        nz = o != 0
        if nz.any():  # pure decay with momentum: every masked-out weight shrinks toward 0, never changes sign
            assert (w[nz].abs() < o[nz].abs()).all() and (torch.sign(w[nz]) == torch.sign(o[nz])).all(), n
    without = run_method("salun", trained_mlp, blobs_data, task4, {"epochs": 2, "masked_decay": True,
                                                                    "weight_decay": 0.0})
    no_decay = dict(without.named_parameters())
    for n, keep in mask.items():  # without weight decay the two codes agree: masked-out weights do not move
        assert torch.equal(no_decay[n][~keep], orig[n][~keep]), n
