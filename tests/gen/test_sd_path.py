"""The Stable Diffusion loading path: a tiny diffusers pipeline folder (UNet2DConditionModel, CLIP text encoder and
tokenizer, scheduler) built from configs (tests/gen/conftest.py tiny_pipeline), loaded by folder; one step of ESD
and of SalUn runs on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

PROMPTS = ["a photo of a cat", "a photo of a dog"]


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


class _LatentJudge(torch.nn.Module):
    """A stand-in judge on 4 x 8 x 8 latents (features + head, as the engine's judges)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features, self.head = torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 2)


def test_prompt_attack_on_token_sequences(sd, latents):
    """UnlearnDiffAtk on Stable Diffusion's per-prompt token sequences: prefix states inserted after BOS (length
    kept), an additive delta, projection to the nearest token states, and the ASR pipeline end to end."""
    from unlearnlab.eval.gen_attack import GenAttackConfig, adversarial_condition, attack

    x, base = latents.train.x[:4], sd.cond[0].detach()
    emb, info = adversarial_condition(sd, x, 0, GenAttackConfig(k=2, steps=3, lr=0.05, batch_size=4), seed=0)
    assert emb.shape == (1, *base.shape) and info["shift"] > 0
    assert torch.equal(emb[0, 0], base[0]) and torch.equal(emb[0, 3:], base[1:-2])  # BOS, then the shifted prompt
    emb, info = adversarial_condition(sd, x, 0, GenAttackConfig(mode="delta", steps=3, lr=0.05, batch_size=4))
    assert emb.shape == (1, *base.shape) and info["shift"] > 0
    _, info = adversarial_condition(sd, x, 0, GenAttackConfig(k=2, steps=1, project=True, batch_size=4))
    assert len(info["tokens"]) == 2 and all(0 <= i < sd.cond.shape[0] * sd.cond.shape[1] for i in info["tokens"])
    out = attack(sd, _LatentJudge(), x, 0, {"k": 2, "steps": 2, "batch_size": 4}, samples=4, sample_steps=2)
    assert 0 <= out["ASR_pre"] <= 100 and 0 <= out["ASR_post"] <= 100 and out["attack_shift"] > 0


def test_advunlearn_trains_the_prompt_table_of_stable_diffusion(sd, latents):
    """AdvUnlearn's default (the code's text_encoder_full) trains the prompt-embedding table, the text encoder's
    stand-in, with the token-sequence attack in the loop after the warm-up."""
    import math

    from unlearnlab.methods import MethodContext, run_method
    from unlearnlab.models.ddpm import DiffusionModelTask

    ctx = MethodContext(seed=0)
    out = run_method("advunlearn", sd, latents, DiffusionModelTask(2), {
        "iterations": 2, "warmup_iter": 1, "attack_step": 2, "ddim_steps": 2, "retain_batch": 1, "lr": 1e-2}, ctx)
    changed = {n for (n, p), q in zip(out.named_parameters(), sd.parameters()) if not torch.equal(p, q)}
    assert changed == {"cond"}
    assert ctx.info["attack_rounds"] == 1 and math.isfinite(ctx.info["attack_loss_last"])
