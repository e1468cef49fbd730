"""RL (random labels): relabels are seeded and uniform over all K classes (SalUn's code; wrong-only as an option);
forgets on a tiny model; never mutates its input."""
from __future__ import annotations

import torch

from unlearnlab import config as C
from unlearnlab.eval.outputs import split_outputs
from unlearnlab.methods import MethodContext, get_method, run_method
from unlearnlab.methods.random_label import RandomLabelConfig, random_wrong_labels, relabel_train
from unlearnlab.seeding import torch_generator


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_defaults_cite_paper():
    cfg = C.build(get_method("random_label").config)
    assert (cfg.epochs, cfg.lr, cfg.order, cfg.wrong_only) == (10, 0.01, "sequential", False)
    assert all(f["help"] for f in C.describe(RandomLabelConfig))


def test_forgets_keeps_retain_and_leaves_input(trained_mlp, blobs_data, task4):
    before = _state(trained_mlp)
    out = run_method("random_label", trained_mlp, blobs_data, task4)
    assert _same(before, _state(trained_mlp))
    assert not _same(before, _state(out))
    f0 = split_outputs(trained_mlp, blobs_data.forget, task4)
    f1 = split_outputs(out, blobs_data.forget, task4)
    assert f1["correct"].mean() < f0["correct"].mean() - 0.2
    assert f1["loss"].mean() > f0["loss"].mean()
    assert split_outputs(out, blobs_data.retain, task4)["correct"].mean() > 0.9


def test_same_seed_same_weights(trained_mlp, blobs_data, task4):
    a = run_method("random_label", trained_mlp, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=3))
    b = run_method("random_label", trained_mlp, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=3))
    c = run_method("random_label", trained_mlp, blobs_data, task4, {"epochs": 2}, ctx=MethodContext(seed=4))
    assert _same(_state(a), _state(b))
    assert not _same(_state(a), _state(c))


def test_relabels_uniform_by_default_wrong_only_on_request(trained_mlp, blobs_data, task4):
    import copy

    y = blobs_data.forget.y
    for wrong_only in (False, True):
        cfg = C.build(RandomLabelConfig, {"epochs": 3, "wrong_only": wrong_only})
        seen: list[torch.Tensor] = []
        relabel_train(copy.deepcopy(trained_mlp), blobs_data, cfg, task4, MethodContext(), key="t", labels_out=seen)
        assert len(seen) == 3
        kept = torch.stack([lab == y for lab in seen]).float().mean()
        for lab in seen:
            assert lab.shape == y.shape and lab.min() >= 0 and lab.max() < 4
        assert not torch.equal(seen[0], seen[1])  # fresh labels every epoch, as in SalUn's code
        if wrong_only:
            assert kept == 0
        else:  # SalUn's uniform draw over K=4 classes keeps ~1/4 of the true labels
            assert 0.1 < kept < 0.4


def test_wrong_labels_uniform_over_other_classes():
    y = torch.arange(40000) % 5
    lab = random_wrong_labels(y, 5, torch_generator(0, "x"))
    assert not (lab == y).any()
    shift = (lab - y) % 5
    counts = torch.bincount(shift, minlength=5)[1:].float() / len(y)
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.01)
    anyk = random_wrong_labels(y, 5, torch_generator(0, "x"), wrong_only=False)
    assert 0.17 < (anyk == y).float().mean() < 0.23  # SalUn code's variant keeps ~1/K true labels


def test_joint_order_on_batchnorm_model(trained_cnn, blobs_data, task4):
    before = _state(trained_cnn)
    out = run_method("random_label", trained_cnn, blobs_data, task4, {"order": "joint", "epochs": 5})
    assert _same(before, _state(trained_cnn))
    f0 = split_outputs(trained_cnn, blobs_data.forget, task4)
    f1 = split_outputs(out, blobs_data.forget, task4)
    assert f1["loss"].mean() > f0["loss"].mean()


def test_generic_map_style_dataset(trained_mlp, blobs_data, task4):
    """A plain torch Dataset (not ArrayDataset) works in both orders and gives the same relabels as arrays."""
    from torch.utils.data import TensorDataset

    from unlearnlab.data import UnlearnData
    from unlearnlab.methods.random_label import materialise

    tr = blobs_data.train
    generic = UnlearnData(TensorDataset(tr.x, tr.y), blobs_data.test, blobs_data.forget_idx, blobs_data.retain_idx, 4)
    x, y = materialise(generic.forget)
    assert torch.equal(x, blobs_data.forget.x) and torch.equal(y, blobs_data.forget.y)
    f0 = split_outputs(trained_mlp, blobs_data.forget, task4)["correct"].mean()
    for order in ("sequential", "joint"):
        out = run_method("random_label", trained_mlp, generic, task4, {"order": order})
        assert split_outputs(out, blobs_data.forget, task4)["correct"].mean() < f0 - 0.1
