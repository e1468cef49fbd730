"""RGB diffusion data: cifar10-dev-gen (the CIFAR-10 dev subset at 16x16, 3 channels), and every part of the
diffusion task on 3-channel images (DDPM, judge, grid PNG, prompt attack, each diffusion method) through the
engine on a tiny synthetic RGB stand-in (the real set would take minutes to train on)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from unlearnlab import api
from unlearnlab.data.core import ArrayDataset
from unlearnlab.data.datasets import DATASETS, Bundle, _shared_cifar
from unlearnlab.spec import from_dict
from unlearnlab.tasks.diffusion_data import GEN_DATASETS, gen_bundle, grid_png

# one colour per class (the judge separates them at once), with per-image brightness and pixel noise
COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [.5, 0, 0],
                    [0, .5, 0], [0, 0, .5]], dtype=np.float32)
NORM = ((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))  # per-channel (mean, std), different per channel on purpose


def _rgb_set(n_per: int, key: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(key)
    y = np.repeat(np.arange(10), n_per)
    x01 = COLOURS[y][:, :, None, None] * rng.uniform(0.7, 1.0, (len(y), 1, 1, 1))
    x01 = np.clip(x01 + rng.normal(0, 0.05, (len(y), 3, 8, 8)), 0, 1).astype(np.float32)
    mean, std = (np.array(v, dtype=np.float32).reshape(1, 3, 1, 1) for v in NORM)
    return torch.from_numpy((x01 - mean) / std), torch.from_numpy(y.astype(np.int64))


def _rgb_bundle(root=None, seed: int = 0) -> Bundle:
    classes = [f"c{c}" for c in range(10)]
    return Bundle("rgb-test", ArrayDataset(*_rgb_set(12, 0), classes=classes),
                  ArrayDataset(*_rgb_set(4, 1), classes=classes), classes, NORM)


@pytest.fixture()
def rgb_gen(monkeypatch):
    """A synthetic 3-channel dataset registered as `rgb-test-gen` for the duration of a test."""
    monkeypatch.setitem(DATASETS._entries, "rgb-test", _rgb_bundle)
    monkeypatch.setitem(GEN_DATASETS, "rgb-test-gen", "rgb-test")
    return "rgb-test-gen"


def test_rgb_bundle_undoes_each_channels_normalisation(rgb_gen):
    b = gen_bundle(rgb_gen, 8)
    assert b.train.x.shape == (120, 3, 8, 8) and b.name == "rgb-test-gen8"
    assert -1 <= b.train.x.min() and b.train.x.max() <= 1
    red = b.train.x[b.train.y == 0].mean((0, 2, 3))  # class 0 is red: channel 0 bright, 1 and 2 near -1
    assert red[0] > 0.5 and red[1] < -0.8 and red[2] < -0.8
    b4 = gen_bundle(rgb_gen, 4)  # shrinking averages 2x2 blocks
    assert torch.allclose(b4.train.x, torch.nn.functional.avg_pool2d(b.train.x, 2), atol=1e-6)


def test_grid_png_is_rgb_for_three_channels_and_grey_for_one():
    from PIL import Image

    x = torch.full((6, 3, 4, 4), -1.0)
    x[0, 0] = 1.0  # the first image is pure red
    img = Image.open(io.BytesIO(grid_png(x, rows=2)))
    assert img.mode == "RGB" and img.size == (4 * (3 * 5 + 1), 4 * (2 * 5 + 1))
    assert np.asarray(img)[4 * 2, 4 * 2].tolist() == [255, 0, 0]
    assert Image.open(io.BytesIO(grid_png(x[:, :1], rows=2))).mode == "L"


def test_every_diffusion_method_runs_on_rgb_through_the_engine(rgb_gen, tmp_path):
    """One engine run on 3-channel 8x8 images: a 3-channel DDPM, the judge, the prompt attack on every record, an
    RGB grid, and each diffusion method for a step or two."""
    from PIL import Image

    from unlearnlab.store import Store

    over = {"esd": {"iterations": 1, "ddim_steps": 2}, "ga_gen": {"iterations": 1, "batch_size": 8},
            "salun_gen": {"iterations": 1, "batch_size": 8}, "sfd": {"iterations": 1, "batch_size": 4},
            "doco": {"iterations": 2, "warm_up": 1, "batch_size": 4, "anchor_images": 4},
            "advunlearn": {"iterations": 2, "warmup_iter": 1, "attack_step": 1, "ddim_steps": 2},
            "unguide": {"iterations": 1, "ddim_steps": 2, "batch_size": 1, "t_enc": 1, "repeats": 1}}
    spec = {"dataset": rgb_gen, "forget": "class:3", "model": "ddpm:tiny,timesteps=50", "methods": list(over),
            "recipe": {"epochs": 1, "batch_size": 60}, "overrides": over,
            "options": {"samples": 2, "sample_steps": 2, "size": 8, "grid": 1, "attack": True, "attack_steps": 1}}
    store = Store(tmp_path)
    res = api.run(spec, store=store, backend="serial")
    assert not res["errors"], res["errors"]
    recs = {r["spec"]["method"]: r for r in res["records"]}
    assert set(recs) == {"original", "retrain", *over}
    assert recs["original"]["metrics"]["judge_acc_real"] >= 90  # one colour per class
    for r in recs.values():
        assert {"UA", "RA", "FD", "ASR_pre", "ASR_post"} <= set(r["metrics"])
        grid = Image.open(store.artifact_path(r["artifacts"]["samples_png"]))
        assert grid.mode == "RGB" and grid.size == (4 * (1 * 9 + 1), 4 * (10 * 9 + 1))  # 10 rows of one 8x8 sample
    from unlearnlab.tasks.diffusion import DiffusionTask

    model, _ = DiffusionTask()._model(from_dict(spec), 0, "original", store)  # the cached original
    assert model.channels == 3 and model.unet.config.in_channels == model.unet.config.out_channels == 3


@pytest.fixture(scope="module")
def cifar16():
    if _shared_cifar() is None:
        pytest.skip("cifar10-dev.npz not found beside the repository (../shared/data/cifar10/cifar10-dev.npz)")
    return gen_bundle("cifar10-dev-gen")


def test_cifar10_dev_gen_loads_at_16x16_rgb(cifar16):
    b = cifar16
    assert b.name == "cifar10-dev-gen" and b.num_classes == 10 and b.classes[3] == "cat"
    assert b.train.x.shape == (10000, 3, 16, 16) and b.test.x.shape == (2000, 3, 16, 16)
    assert b.train.x.min() >= -1 and b.train.x.max() <= 1 and b.train.x.min() < -0.99 and b.train.x.max() > 0.99
    b32 = gen_bundle("cifar10-dev-gen", 32)  # size 32 keeps the native resolution; 16 averages its 2x2 blocks
    assert b32.name == "cifar10-dev-gen32" and b32.train.x.shape == (10000, 3, 32, 32)
    assert torch.allclose(torch.nn.functional.avg_pool2d(b32.train.x[:64], 2), b.train.x[:64], atol=1e-5)


def test_cifar10_dev_gen_run_plans_with_a_3_channel_default_ddpm(cifar16):
    from pathlib import Path

    from unlearnlab.models.ddpm import build_ddpm
    from unlearnlab.spec import load_yaml
    from unlearnlab.tasks.diffusion import DiffusionTask

    spec = from_dict({"dataset": "cifar10-dev-gen", "forget": "class:3", "methods": ["ga_gen", "salun_gen"]})
    assert spec.task == "diffusion" and spec.model_spec() == "ddpm" and spec.train_config().epochs == 15
    example = load_yaml(Path(__file__).parents[2] / "examples" / "diffusion-cifar.yaml")  # the run docs quote
    for s in (spec, example):
        plan = DiffusionTask().plan(s)
        assert plan.methods == ["original", "retrain", "ga_gen", "salun_gen"]
        assert set(plan.model_keys) == {("original", 0), ("oracle", 0)}
    model = build_ddpm(spec.model_spec(), cifar16.num_classes, 16, channels=cifar16.train.x.shape[1])
    assert model.unet.config.in_channels == 3 and model.unet.config.out_channels == 3
    eps = model.eps(cifar16.train.x[:2], torch.tensor([5, 7]), torch.tensor([3, 3]))
    assert eps.shape == (2, 3, 16, 16)


def test_cifar_judge_is_fastcnn_at_16_pixels_and_the_default_judge_below():
    from types import SimpleNamespace

    from unlearnlab.eval.gen_metrics import JUDGE_ARCH, JUDGE_RECIPE
    from unlearnlab.spec import FAST_CIFAR
    from unlearnlab.tasks.diffusion_judge import judge_setup

    def fake(name: str, size: int):
        return SimpleNamespace(name=name, train=SimpleNamespace(x=torch.zeros(1, 3, size, size)))

    assert judge_setup(fake("cifar10-dev-gen", 16)) == ("fastcnn", FAST_CIFAR)
    assert judge_setup(fake("cifar10-dev-gen32", 32)) == ("fastcnn", FAST_CIFAR)
    assert judge_setup(fake("cifar10-dev-gen8", 8)) == (JUDGE_ARCH, JUDGE_RECIPE)  # fastcnn needs >= 16x16
    assert judge_setup(fake("digits-gen", 16)) == (JUDGE_ARCH, JUDGE_RECIPE)


def test_fastcnn_judge_gets_its_whitening_stem_and_learns(rgb_gen, monkeypatch):
    """judge_for trains the dataset's own judge (here the synthetic set under the cifar judge's entry, 16x16):
    FastCNN's data-dependent stem is initialised before training and the judge separates the colours."""
    from unlearnlab.eval import gen_metrics
    from unlearnlab.models.zoo import FastCNN
    from unlearnlab.tasks.diffusion_judge import judge_for

    monkeypatch.setitem(gen_metrics.DATASET_JUDGES, "rgb-test-gen", gen_metrics.DATASET_JUDGES["cifar10-dev-gen"])
    judge, acc = judge_for(gen_bundle(rgb_gen, 16), torch.device("cpu"))
    assert isinstance(judge, FastCNN) and judge.whiten.abs().sum() > 0
    assert acc >= 50, acc  # chance is 10%
