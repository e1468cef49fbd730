"""Fixtures of the diffusion tests: 8x8 digits, a judge and a tiny class-conditional DDPM trained once per session."""
from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

# without the `gen` extra (diffusers) these tests are not collected at all
collect_ignore_glob = ["test_*.py"] if find_spec("diffusers") is None else []

SIZE = 8
TINY = "ddpm:small,timesteps=200"  # 0.26M parameters at 8x8: recognisable digits after ~900 steps (~2 min, 1 core)
TINY_RECIPE = {"epochs": 40, "lr": 2e-3, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 64,
               "schedule": "cosine", "warmup": 0.05, "ema": 0.995}


@pytest.fixture(scope="session")
def bundle8():
    """digits-gen at 8x8 in [-1, 1]."""
    from unlearnlab.tasks.diffusion_data import gen_bundle

    return gen_bundle("digits-gen", SIZE)


@pytest.fixture(scope="session")
def data3(bundle8):
    """Forget class 3."""
    from unlearnlab.data import make_split

    return make_split(bundle8.train, bundle8.test, "class:3", 0, num_classes=10, name=bundle8.name,
                      classes=bundle8.classes)


@pytest.fixture(scope="session")
def judge8(bundle8):
    """(judge CNN, its accuracy on real test digits)."""
    from unlearnlab.tasks.diffusion_judge import judge_for

    return judge_for(bundle8, torch.device("cpu"))


@pytest.fixture(scope="session")
def gen_task():
    """The model-level diffusion task (few DDIM steps for speed)."""
    from unlearnlab.models.ddpm import DiffusionModelTask

    return DiffusionModelTask(10, sample_steps=10, guidance=2.0)


@pytest.fixture(scope="session")
def trained_ddpm(bundle8, request):
    """A tiny DDPM trained on all of the 8x8 train digits: trained once, then kept in pytest's cache directory
    (keyed by spec, recipe, data and library versions) so later sessions load it in a second. tests/gen/data holds
    the checkpoint for the versions the project pins (torch 2.13.0; retraining it gave the same bytes), so a fresh
    clone skips the ~2 min of training; other versions, or a changed recipe, train as before."""
    import json

    import diffusers
    from safetensors.torch import load_file, save_file

    from unlearnlab.models.ddpm import DiffusionModelTask, build_ddpm
    from unlearnlab.seeding import derive_seed
    from unlearnlab.train import TrainConfig, train

    model = build_ddpm(TINY, 10, SIZE, seed=0)
    key = derive_seed(0, json.dumps([TINY, TINY_RECIPE, bundle8.train.fingerprint(), torch.__version__,
                                     diffusers.__version__]))
    shipped = Path(__file__).parent / "data" / f"ddpm-{key:x}.safetensors"
    path = shipped if shipped.is_file() else request.config.cache.mkdir("unlearnlab-gen") / f"ddpm-{key:x}.safetensors"
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    train(model, bundle8.train, TrainConfig(**TINY_RECIPE), DiffusionModelTask(10), seed=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.eval()


@pytest.fixture(scope="session")
def class_accuracy(judge8):
    """fn(model, classes, n) -> judge accuracy (%) on `n` DDIM samples of each class (fixed noise)."""
    from unlearnlab.eval.gen_metrics import judge_outputs
    from unlearnlab.models.ddpm import sample

    def acc(model, classes: list[int], n: int = 40, steps: int = 10) -> dict[int, float]:
        y = torch.tensor(classes).repeat_interleave(n)
        x = sample(model, y, steps=steps, scale=2.0, gen=torch.Generator().manual_seed(123))
        pred, _ = judge_outputs(judge8[0], x)
        return {c: float(100 * (pred[y.numpy() == c] == c).mean()) for c in classes}

    return acc
