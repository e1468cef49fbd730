"""NegGrad+: β·CE(D_r) − (1−β)·CE(D_f) on seeded paired batches; forgets; never mutates its input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearnlab import config as C
from unlearnlab.data import UnlearnData
from unlearnlab.errors import DataError
from unlearnlab.eval.outputs import split_outputs
from unlearnlab.methods import MethodContext, get_method, run_method
from unlearnlab.methods.neggrad_plus import NegGradPlusConfig, _cycle, neggrad_plus_loss
from unlearnlab.seeding import torch_generator


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _forget_loss(model, data, task):
    return split_outputs(model, data.forget, task)["loss"].mean()


def test_config_defaults_cite_paper():
    cfg = C.build(get_method("neggrad_plus").config)
    assert cfg.beta == 0.99
    assert all(f["help"] for f in C.describe(NegGradPlusConfig))


def test_loss_is_weighted_difference(trained_mlp, blobs_data, task4):
    r = (blobs_data.retain.x[:9], blobs_data.retain.y[:9])
    f = (blobs_data.forget.x[:4], blobs_data.forget.y[:4])
    got = neggrad_plus_loss(trained_mlp.eval(), task4, r, f, 0.9)
    want = 0.9 * F.cross_entropy(trained_mlp(r[0]), r[1]) - 0.1 * F.cross_entropy(trained_mlp(f[0]), f[1])
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_cycle_reshuffles_and_covers_every_example(blobs_data):
    forget = blobs_data.forget
    it = _cycle(forget, 16, torch_generator(0, "t"), False)
    n_batches = -(-len(forget) // 16)
    first = torch.cat([next(it)[1] for _ in range(n_batches)])
    second = torch.cat([next(it)[1] for _ in range(n_batches)])
    assert torch.equal(first.sort().values, forget.y.sort().values)
    assert torch.equal(second.sort().values, forget.y.sort().values)
    it2 = _cycle(forget, 16, torch_generator(0, "t"), False)
    xs = torch.cat([next(it2)[0] for _ in range(n_batches)])
    assert torch.allclose(xs.sum(0), forget.x.sum(0), atol=1e-4)
    assert not torch.equal(first, second)  # a fresh permutation on each pass


def test_forgets_keeps_retain_and_leaves_input(trained_mlp, blobs_data, task4):
    before = _state(trained_mlp)
    out = run_method("neggrad_plus", trained_mlp, blobs_data, task4)
    assert _same(before, _state(trained_mlp))
    assert not _same(before, _state(out))
    assert _forget_loss(out, blobs_data, task4) > _forget_loss(trained_mlp, blobs_data, task4)
    assert split_outputs(out, blobs_data.retain, task4)["correct"].mean() > 0.9


def test_smaller_beta_forgets_more(trained_mlp, blobs_data, task4):
    losses = [_forget_loss(run_method("neggrad_plus", trained_mlp, blobs_data, task4, {"beta": b}), blobs_data, task4)
              for b in (1.0, 0.99, 0.9)]
    assert losses[0] < losses[1] < losses[2]
    strong = run_method("neggrad_plus", trained_mlp, blobs_data, task4, {"beta": 0.7, "epochs": 10})
    f0 = split_outputs(trained_mlp, blobs_data.forget, task4)["correct"].mean()
    assert split_outputs(strong, blobs_data.forget, task4)["correct"].mean() < f0


def test_same_seed_same_weights_and_batchnorm(trained_cnn, blobs_data, task4):
    before = _state(trained_cnn)
    a = run_method("neggrad_plus", trained_cnn, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=1))
    b = run_method("neggrad_plus", trained_cnn, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=1))
    c = run_method("neggrad_plus", trained_cnn, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=2))
    assert _same(before, _state(trained_cnn))
    assert _same(_state(a), _state(b)) and not _same(_state(a), _state(c))


def test_empty_retain_set_is_a_clear_error(trained_mlp, blobs_data, task4):
    data = UnlearnData(blobs_data.train, blobs_data.test, np.arange(len(blobs_data.train)), np.array([], dtype=int),
                       4)
    with pytest.raises(DataError, match="non-empty"):
        run_method("neggrad_plus", trained_mlp, data, task4)


def test_separate_forward_passes_by_default_on_batchnorm(trained_cnn, blobs_data, task4):
    """The reference runs retain and forget batches through the model separately: in train mode BatchNorm then
    uses each batch's own statistics, which one joint pass (the joint_forward option) does not."""
    cfg = C.build(NegGradPlusConfig)
    assert (cfg.schedule, cfg.joint_forward, cfg.l2_pull) == ("constant", False, 0.0)
    r = (blobs_data.retain.x[:16], blobs_data.retain.y[:16])
    f = (blobs_data.forget.x[:8], blobs_data.forget.y[:8])
    m = trained_cnn.train()
    sep = neggrad_plus_loss(m, task4, r, f, 0.9)
    want = 0.9 * F.cross_entropy(m(r[0]), r[1]) - 0.1 * F.cross_entropy(m(f[0]), f[1])
    assert sep.item() == pytest.approx(want.item(), rel=1e-5)
    assert neggrad_plus_loss(m, task4, r, f, 0.9, joint=True).item() != pytest.approx(sep.item(), rel=1e-6)
    trained_cnn.eval()


def test_l2_pull_keeps_weights_closer_to_original(trained_mlp, blobs_data, task4):
    def dist(model):
        return sum((p - q).pow(2).sum() for p, q in zip(model.parameters(), trained_mlp.parameters())).item()

    free = run_method("neggrad_plus", trained_mlp, blobs_data, task4, {"epochs": 3, "beta": 0.9})
    pulled = run_method("neggrad_plus", trained_mlp, blobs_data, task4, {"epochs": 3, "beta": 0.9, "l2_pull": 5.0})
    assert 0 < dist(pulled) < 0.8 * dist(free)
