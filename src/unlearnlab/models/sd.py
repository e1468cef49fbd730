"""Stable-Diffusion-style models behind the DDPM interface: a diffusers UNet2DConditionModel whose condition k is
the text encoder's embedding of prompt k (the last row is the empty prompt, the null condition of guidance).

`load_sd(path_or_id, prompts)` reads a diffusers pipeline folder (or hub id) with `unet/`, `text_encoder/`,
`tokenizer/` and `scheduler/`; the methods then work in its latent space (x = VAE latents) exactly as on the digit
DDPM: ESD needs no data, SalUn / GA need latents of forget and retain images.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .ddpm import Denoiser, require_diffusers


class CondUNet(Denoiser):
    """eps(x_t, t, c) of a UNet2DConditionModel, with the prompt embeddings as a learnable table `cond`."""

    def __init__(self, unet: nn.Module, prompt_embeds: torch.Tensor, scheduler_config: dict[str, Any]):
        super().__init__()
        self.unet = unet
        self.cond = nn.Parameter(prompt_embeds.detach().clone())  # (K + 1) x L x D; the text encoder's stand-in
        self.num_classes = prompt_embeds.shape[0] - 1
        self.channels, self.size = unet.config.in_channels, unet.config.sample_size
        self.scheduler_config = dict(scheduler_config)
        self.timesteps = int(self.scheduler_config.get("num_train_timesteps", 1000))

    def condition(self, y: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings of prompt indices `y` (N x L x D); the last prompt is the empty one."""
        return self.cond[y]

    def denoise(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """UNet2DConditionModel with the prompt embeddings as cross-attention states."""
        return self.unet(x, t, encoder_hidden_states=emb).sample

    def scheduler(self):
        """The pipeline's training noise schedule as a DDPMScheduler."""
        return require_diffusers().DDPMScheduler.from_config(self.scheduler_config)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Text-encoder hidden states of `prompts` followed by the empty prompt ((K + 1) x L x D)."""
    ids = tokenizer([*prompts, ""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids)[0]


def load_sd(path_or_id: str, prompts: list[str], *, device: str | torch.device = "cpu") -> CondUNet:
    """A CondUNet from a diffusers pipeline folder or hub id (subfolders unet, text_encoder, tokenizer, scheduler)
    whose conditions are `prompts` (class k = prompts[k]) plus the empty prompt."""
    d = require_diffusers()
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = d.UNet2DConditionModel.from_pretrained(path_or_id, subfolder="unet")
    tokenizer = CLIPTokenizer.from_pretrained(path_or_id, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(path_or_id, subfolder="text_encoder")
    sched = d.DDPMScheduler.from_pretrained(path_or_id, subfolder="scheduler")
    return CondUNet(unet, encode_prompts(tokenizer, text_encoder, prompts), dict(sched.config)).to(device)


__all__ = ["CondUNet", "encode_prompts", "load_sd"]
