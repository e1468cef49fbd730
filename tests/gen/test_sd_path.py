"""The Stable Diffusion loading path: a tiny diffusers pipeline folder (UNet2DConditionModel, CLIP text encoder and
tokenizer, scheduler) built from configs here, loaded by folder; one step of ESD and of SalUn runs on it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

PROMPTS = ["a photo of a cat", "a photo of a dog"]


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """A folder laid out like a diffusers Stable Diffusion pipeline, with tiny random weights."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2).save_pretrained(root / "unet")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{t: i + 2 for i, t in
                                                          enumerate(letters + [x + "</w>" for x in letters])}}
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=12)
    tok.save_pretrained(root / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=12, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=1)).save_pretrained(root / "text_encoder")
    diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        root / "scheduler")
    return root


@pytest.fixture(scope="module")
def sd(tiny_pipeline):
    from unlearnlab.models.sd import load_sd

    return load_sd(str(tiny_pipeline), PROMPTS)


@pytest.fixture(scope="module")
def latents():
    """Random 'latents' of the two prompts' images; forget = the cat (class 0)."""
    from unlearnlab.data.core import ArrayDataset, UnlearnData

    g = torch.Generator().manual_seed(0)
    ds = ArrayDataset(torch.randn(8, 4, 8, 8, generator=g), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    return UnlearnData(ds, ds, np.arange(4), np.arange(4, 8), num_classes=2)


def test_load_by_folder(sd):
    from unlearnlab.models.ddpm import sample

    assert sd.num_classes == 2 and sd.cond.shape[0] == 3 and sd.timesteps == 1000
    assert not torch.allclose(sd.cond[0], sd.cond[1])  # the prompts embed differently
    x = sample(sd, torch.tensor([0, 1]), steps=2, gen=torch.Generator().manual_seed(0))
    assert x.shape == (2, 4, 8, 8)


@pytest.mark.parametrize("name,over", [("esd", {"iterations": 1, "ddim_steps": 2, "lr": 1e-2, "train_method": "esd-x"}),
                                       ("salun_gen", {"iterations": 1, "batch_size": 4, "lr": 1e-2})])
def test_one_step_of_esd_and_salun(name, over, sd, latents):
    from unlearnlab.methods import MethodContext, run_method
    from unlearnlab.models.ddpm import DiffusionModelTask

    out = run_method(name, sd, latents, DiffusionModelTask(2), over, MethodContext(seed=0))
    changed = {n for (n, p), q in zip(out.named_parameters(), sd.parameters()) if not torch.equal(p, q)}
    assert changed
    if name == "esd":  # ESD-x on Stable Diffusion trains the cross-attention layers only, as the paper's code
        assert all("attn2" in n for n in changed)


def test_sfd_and_unguide_on_stable_diffusion(sd, latents):
    """SFD's one-step generator and UnGuide's adapter (on attn2.to_k / to_v, as the UnGuide code) on the SD path."""
    from unlearnlab.methods import MethodContext, run_method
    from unlearnlab.models.ddpm import DiffusionModelTask, sample

    task = DiffusionModelTask(2)
    g = run_method("sfd", sd, latents, task, {"iterations": 1, "batch_size": 2, "lr": 1e-2}, MethodContext(seed=0))
    assert g.one_step and sample(g, torch.tensor([0, 1]), gen=torch.Generator().manual_seed(0)).shape == (2, 4, 8, 8)
    ctx = MethodContext(seed=0)
    u = run_method("unguide", sd, latents, task, {"iterations": 1, "lr": 1e-2, "ddim_steps": 2, "t_enc": 1,
                                                  "repeats": 2}, ctx)
    lora = [n for n, _ in u.net.named_parameters() if "lora_" in n]
    assert lora and all("attn2.to_k" in n or "attn2.to_v" in n for n in lora)
    assert len(ctx.info["unguide_w"]) == 2
    assert sample(u, torch.tensor([0, 1]), steps=2, gen=torch.Generator().manual_seed(0)).shape == (2, 4, 8, 8)
