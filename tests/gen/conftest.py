"""Fixtures of the diffusion tests: 8x8 digits, a judge and a tiny class-conditional DDPM trained once per session;
tiny Stable Diffusion pipeline folders (with and without a VAE) built from configs."""
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


def _tiny_tokenizer(root: Path):
    """A character-level CLIPTokenizer (letters only) saved under root."""
    import json

    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in
                                                          enumerate(letters + [x + "</w>" for x in letters])}}
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=12), len(vocab)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A folder laid out like a diffusers Stable Diffusion pipeline (no vae/), with tiny random weights: 4 x 8 x 8
    latents, a 1-layer CLIP text encoder over letters, the SD noise schedule."""
    pytest.importorskip("transformers")
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2).save_pretrained(root / "unet")
    tok, n_vocab = _tiny_tokenizer(root)
    tok.save_pretrained(root / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=n_vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=12, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=1)).save_pretrained(root / "text_encoder")
    diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        root / "scheduler")
    return root


@pytest.fixture(scope="session")
def tiny_pipeline_vae(tiny_pipeline, tmp_path_factory):
    """tiny_pipeline plus a tiny AutoencoderKL (vae/): 16 x 16 RGB images <-> 4 x 8 x 8 latents."""
    import shutil

    import diffusers

    root = tmp_path_factory.mktemp("tiny-sd-vae") / "pipe"
    shutil.copytree(tiny_pipeline, root)
    torch.manual_seed(0)
    diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                            latent_channels=4, norm_num_groups=4, sample_size=16).save_pretrained(root / "vae")
    return root
