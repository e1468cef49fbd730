"""Model zoo, checkpoints and the training loop."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from unlearnlab.errors import CheckpointError, ConfigError, DivergenceError, UnknownNameError
from unlearnlab.models import ClassifierTask, build_model, load_checkpoint, save_checkpoint
from unlearnlab.train import TrainConfig, lr_factor, resolve_device, train


@pytest.mark.parametrize("spec, shape", [("mlp", (1, 8, 8)), ("cnn:width=4", (3, 16, 16)),
                                         ("resnet18:width=0.0625", (3, 32, 32)), ("fastcnn:width=4", (3, 16, 16))])
def test_zoo_forward_and_features(spec, shape):
    m = build_model(spec, shape, 10, seed=0)
    x = torch.randn(2, *shape)
    assert m(x).shape == (2, 10)
    assert m.features(x).shape[0] == 2


def test_resnet18_standard_width_has_11m_params():
    m = build_model("resnet18", (3, 32, 32), 10)
    assert 11.1e6 < sum(p.numel() for p in m.parameters()) < 11.2e6  # the CIFAR ResNet-18 (11.17M)


def test_bad_model_specs():
    with pytest.raises(UnknownNameError):
        build_model("resnet19", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="C,H,W"):
        build_model("cnn", (64,), 10)
    with pytest.raises(ConfigError, match="key=value"):
        build_model("cnn:width", (3, 8, 8), 10)


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    m = build_model("mlp", (1, 8, 8), 4, seed=0)
    save_checkpoint(tmp_path / "m", m, {"arch": "mlp", "dataset": "blobs"})
    m2 = build_model("mlp", (1, 8, 8), 4, seed=1)
    load_checkpoint(tmp_path / "m", m2, expect={"arch": "mlp", "dataset": "blobs"})
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
    with pytest.raises(CheckpointError, match="dataset='blobs'"):
        load_checkpoint(tmp_path / "m", m2, expect={"dataset": "digits"})
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_checkpoint(tmp_path / "m", build_model("mlp", (1, 8, 8), 10), expect={})
    (tmp_path / "m.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="Cannot read weights"):
        load_checkpoint(tmp_path / "m", m2)
    assert json.loads((tmp_path / "m.json").read_text())["arch"] == "mlp"


def test_train_learns_and_is_deterministic(blobs_data, task4):
    cfg = TrainConfig(epochs=5, lr=0.05, batch_size=64)
    a = train(build_model("mlp", (1, 8, 8), 4, seed=0), blobs_data.train, cfg, task4, seed=0)
    b = train(build_model("mlp", (1, 8, 8), 4, seed=0), blobs_data.train, cfg, task4, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    x, y = blobs_data.train.x, blobs_data.train.y
    with torch.no_grad():
        assert (a(x).argmax(1) == y).float().mean() > 0.7  # chance is 0.25


def test_divergence_is_reported_with_step(blobs_data, task4):
    cfg = TrainConfig(epochs=3, lr=1e30, batch_size=64, schedule="constant")
    with pytest.raises(DivergenceError, match="at step"):
        train(build_model("mlp", (1, 8, 8), 4, seed=0), blobs_data.train, cfg, task4, seed=0)


def test_schedules_and_device():
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 10, 10) == pytest.approx(0.0)
    assert lr_factor("step", 5, 10) == pytest.approx(0.1) and lr_factor("constant", 9, 10) == 1.0
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_task_outputs(blobs_data, trained_mlp):
    t = ClassifierTask(4)
    o = t.outputs(trained_mlp, (blobs_data.test.x[:5], blobs_data.test.y[:5]))
    assert set(o) >= {"logits", "labels", "loss", "correct"} and o["loss"].shape == (5,)


def _images(n=96, shape=(3, 16, 16), classes=4, seed=0, signal=0.7):
    from unlearnlab.data.core import ArrayDataset

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    base = torch.randn(classes, *shape, generator=g)
    x = signal * base[y] + torch.randn(n, *shape, generator=g)
    x[:, 1] = 0.8 * x[:, 0] + 0.2 * x[:, 1]  # correlated channels: something for the whitening to undo
    return ArrayDataset(x, y)


def test_fastcnn_whitening_stem_whitens_patches():
    from unlearnlab.models import data_init

    ds = _images()
    m = build_model("fastcnn:width=4", (3, 16, 16), 4, seed=0)
    assert not m.whiten.any()  # nothing data-derived before data_init
    data_init(m, ds)
    assert m.whiten.shape == (24, 3, 2, 2) and torch.equal(m.whiten[12:], -m.whiten[:12])
    out = torch.nn.functional.conv2d(ds.x, m.whiten[:12]).permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = torch.cov(out.T)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=0.02)  # unit covariance (eps aside)
    assert "whiten" in m.state_dict() and all(p is not m.whiten for p in m.parameters())  # a buffer, not trained
    with pytest.raises(ConfigError, match="at least 16x16"):
        build_model("fastcnn", (1, 8, 8), 10)


def test_fastcnn_flip_tta_averages_mirrored_logits_in_eval_mode_only():
    from unlearnlab.models import data_init

    ds = _images()
    plain = data_init(build_model("fastcnn:width=4", (3, 16, 16), 4, seed=0), ds)
    tta = build_model("fastcnn:width=4,tta=1", (3, 16, 16), 4, seed=0)
    tta.load_state_dict(plain.state_dict())  # same weights: tta is not a parameter
    x = ds.x[:6]
    plain.eval(), tta.eval()
    with torch.no_grad():
        want = (plain(x) + plain(torch.flip(x, dims=(-1,)))) / 2
        assert torch.allclose(tta(x), want, atol=1e-6) and not torch.allclose(tta(x), plain(x), atol=1e-4)
        assert torch.allclose(tta(torch.flip(x, dims=(-1,))), tta(x), atol=1e-5)  # mirror-invariant
        plain.train(), tta.train()
        assert torch.allclose(tta(x), plain(x))  # training batches see one view
    with pytest.raises(ConfigError, match="tta must be 0 or 1"):
        build_model("fastcnn:tta=2", (3, 16, 16), 4)


def test_retrain_reinitialises_fastcnn_from_the_retain_set(blobs_data):
    """The oracle of a data-initialised model: Kaiming re-init (same distribution as the original's) and a
    whitening stem computed from D_r alone."""
    from unlearnlab.data import UnlearnData
    from unlearnlab.methods import MethodContext, run_method
    from unlearnlab.models import data_init

    ds = _images(n=120)
    data = UnlearnData(ds, _images(n=40, seed=1), list(range(30)), list(range(30, 120)), 4)
    task = ClassifierTask(4)
    orig = data_init(build_model("fastcnn:width=4", (3, 16, 16), 4, seed=0), data.train)
    rec = TrainConfig(epochs=1, lr=0.05, batch_size=32)
    oracle = run_method("retrain", orig, data, task, ctx=MethodContext(seed=0, recipe=rec))
    ref = data_init(build_model("fastcnn:width=4", (3, 16, 16), 4, seed=0), data.retain).whiten
    assert torch.allclose(oracle.whiten, ref) and not torch.allclose(oracle.whiten, orig.whiten)
    w = oracle.blocks[0].conv1.weight
    assert abs(float(w.detach().std()) - (2 / (w[0].numel())) ** 0.5) < 0.35 * (2 / w[0].numel()) ** 0.5


def test_fast_recipe_options_train_and_return_default_layout():
    """Warm-up, Nesterov, label smoothing, no decay on norm weights, reflect-pad crops and channels_last train a
    conv net; the model comes back in the default memory format (safetensors needs contiguous tensors)."""
    ds = _images(n=128, signal=2.0)
    task = ClassifierTask(4)
    cfg = TrainConfig(epochs=12, lr=1.0, batch_size=32, momentum=0.85, nesterov=True, label_smoothing=0.2,
                      warmup=0.2, schedule="linear", decay_norm=False, weight_decay=1e-3, augment=True, crop_pad=2,
                      pad_mode="reflect", channels_last=True)
    from unlearnlab.models import data_init

    m = data_init(build_model("fastcnn:width=8", (3, 16, 16), 4, seed=0), ds)
    train(m, ds, cfg, task, seed=0)
    assert all(t.is_contiguous() for t in m.state_dict().values())
    with torch.no_grad():
        acc = (m(ds.x).argmax(1) == ds.y).float().mean()
    assert acc > 0.8
    # warm-up: linear from 0 over the first 20% of steps, then the schedule over the rest
    assert lr_factor("linear", 0, 100, 0.2) == 0.0 and lr_factor("linear", 10, 100, 0.2) == 0.5
    assert lr_factor("linear", 20, 100, 0.2) == 1.0 and lr_factor("linear", 60, 100, 0.2) == 0.5
    from unlearnlab.train import make_optimizer

    groups = make_optimizer(m.parameters(), cfg).param_groups
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0] and all(g["nesterov"] for g in groups)
    assert all(p.dim() <= 1 for p in groups[1]["params"]) and all(p.dim() > 1 for p in groups[0]["params"])


def test_weight_average_tracks_floats_and_copies_counters():
    from unlearnlab.train import Average

    m = build_model("cnn:width=4", (3, 16, 16), 4, seed=0)
    avg = Average(m, 0.75)
    w0 = m.head.weight.detach().clone()
    avg.update(m)  # first update: a copy
    with torch.no_grad():
        m.head.weight.add_(4.0)
        m.body[1].num_batches_tracked.fill_(7)
    avg.update(m)
    avg.copy_to(m)
    assert torch.allclose(m.head.weight, w0 + 0.25 * 4.0)  # 0.75 * w0 + 0.25 * (w0 + 4)
    assert int(m.body[1].num_batches_tracked) == 7


def test_ema_option_returns_the_average(blobs_data, task4):
    cfg = TrainConfig(epochs=15, lr=0.05, batch_size=64)
    a = train(build_model("mlp", (1, 8, 8), 4, seed=0), blobs_data.train, cfg, task4, seed=0)
    b = train(build_model("mlp", (1, 8, 8), 4, seed=0), blobs_data.train, dataclasses.replace(cfg, ema=0.9), task4,
              seed=0)
    assert not torch.equal(a.head.weight, b.head.weight)
    with torch.no_grad():
        acc_a, acc_b = ((m(blobs_data.train.x).argmax(1) == blobs_data.train.y).float().mean() for m in (a, b))
    assert acc_b > 0.9 and abs(acc_a - acc_b) < 0.1


def test_fastcnn_under_vmap_per_example_methods():
    """Per-example-gradient methods (vmap) run on FastCNN: its channels_last conversion skips single examples,
    which vmap cannot re-layout (Fisher forgetting failed with 'NYI: Tensor.clone(memory_format) inside vmap')."""
    from unlearnlab.data import UnlearnData
    from unlearnlab.methods import run_method
    from unlearnlab.methods.influence import per_example_grads
    from unlearnlab.models import data_init

    ds = _images(n=48)
    data = UnlearnData(ds, _images(n=16, seed=1), list(range(8)), list(range(8, 48)), 4)
    task = ClassifierTask(4)
    m = data_init(build_model("fastcnn:width=4", (3, 16, 16), 4, seed=0), ds).eval()
    out = run_method("fisher_forgetting", m, data, task)
    assert not all(torch.equal(a, b) for a, b in zip(out.state_dict().values(), m.state_dict().values()))
    g = per_example_grads(m, ds.x[:3], ds.y[:3], task)
    for i in range(3):  # the vmap result equals a plain per-example backward
        m.zero_grad()
        task.loss(m, (ds.x[i:i + 1], ds.y[i:i + 1])).backward()
        want = torch.cat([p.grad.flatten() for p in m.parameters() if p.requires_grad])
        assert torch.allclose(g[i], want, atol=1e-5)
