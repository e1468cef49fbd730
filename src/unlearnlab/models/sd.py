"""Stable-Diffusion-style models behind the DDPM interface: a diffusers UNet2DConditionModel whose condition k is
the text encoder's embedding of prompt k (the last row is the empty prompt, the null condition of guidance).

`load_sd(path_or_id, prompts)` reads a diffusers pipeline folder (or hub id) with `unet/`, `text_encoder/`,
`tokenizer/` and `scheduler/`; the methods then work in its latent space (x = VAE latents) exactly as on the digit
DDPM: ESD needs no data, SalUn / GA need latents of forget and retain images. The engine names such a model
`sd:<folder or hub id>` (`parse_sd`); `load_vae` reads the pipeline's `vae/` (AutoencoderKL) that maps images to
latents and samples back to images.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .ddpm import Denoiser, require_diffusers

SD_PREFIX = "sd:"
PARTS = ("unet", "text_encoder", "tokenizer", "scheduler")


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


def parse_sd(model_spec: str) -> str | None:
    """The folder or hub id of a model spec `sd:<folder or hub id>`, None for any other spec; ConfigError for a
    local folder that is not a pipeline (a hub id, `org/name`, is checked when it loads)."""
    if not model_spec.startswith(SD_PREFIX):
        return None
    where = model_spec[len(SD_PREFIX):].strip()
    if not where:
        raise ConfigError("model sd:<folder or hub id> needs a diffusers Stable Diffusion pipeline, e.g. "
                          "sd:/models/stable-diffusion-v1-4 or sd:CompVis/stable-diffusion-v1-4.")
    p = Path(where).expanduser()
    if p.exists() or where.startswith((".", os.sep, "~")) or where.count("/") > 1:  # else a hub id, org/name
        missing = [d for d in PARTS if not (p / d).is_dir()]
        if missing:
            raise ConfigError(f"model sd:{where}: {str(p)!r} is not a diffusers Stable Diffusion pipeline folder "
                              f"(missing {', '.join(m + '/' for m in missing)}); it needs {', '.join(PARTS)} "
                              "(and optionally vae/), as saved by diffusers' StableDiffusionPipeline.save_pretrained.")
        return str(p)
    return where


def _loading(where: str, part: str, load):
    """`load()`, its failure (a missing / corrupt part, an unknown hub id) turned into a ConfigError."""
    try:
        return load()
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"model sd:{where}: cannot load its {part}/ ({first}). Give a diffusers Stable Diffusion "
                          "pipeline folder or a hub id that is downloaded (or reachable).") from None


def load_sd(path_or_id: str, prompts: list[str], *, device: str | torch.device = "cpu") -> CondUNet:
    """A CondUNet from a diffusers pipeline folder or hub id (subfolders unet, text_encoder, tokenizer, scheduler)
    whose conditions are `prompts` (class k = prompts[k]) plus the empty prompt."""
    d = require_diffusers()
    from transformers import CLIPTextModel, CLIPTokenizer

    w = path_or_id
    unet = _loading(w, "unet", lambda: d.UNet2DConditionModel.from_pretrained(w, subfolder="unet"))
    tokenizer = _loading(w, "tokenizer", lambda: CLIPTokenizer.from_pretrained(w, subfolder="tokenizer"))
    text_encoder = _loading(w, "text_encoder", lambda: CLIPTextModel.from_pretrained(w, subfolder="text_encoder"))
    sched = _loading(w, "scheduler", lambda: d.DDPMScheduler.from_pretrained(w, subfolder="scheduler"))
    return CondUNet(unet, encode_prompts(tokenizer, text_encoder, prompts), dict(sched.config)).to(device)


def load_vae(path_or_id: str, *, device: str | torch.device = "cpu"):
    """The pipeline's AutoencoderKL (`vae/`), or None for a local folder without one (a hub id must have it)."""
    if Path(path_or_id).is_dir() and not (Path(path_or_id) / "vae").is_dir():
        return None
    d = require_diffusers()
    vae = _loading(path_or_id, "vae", lambda: d.AutoencoderKL.from_pretrained(path_or_id, subfolder="vae"))
    return vae.to(device).eval().requires_grad_(False)


def vae_resolution(unet_size: int, vae) -> int:
    """Image side length of latents of side `unet_size`: times the VAE's downsampling factor."""
    return unet_size * 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def encode_images(vae, x: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Latents (the posterior means, times vae.config.scaling_factor) of images `x` in [-1, 1]."""
    device = next(vae.parameters()).device
    out = [vae.encode(x[i:i + batch_size].to(device)).latent_dist.mean.cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) * float(vae.config.scaling_factor)


@torch.no_grad()
def decode_latents(vae, z: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Images in [-1, 1] of latents `z` (scaled as encode_images)."""
    device = next(vae.parameters()).device
    z = z / float(vae.config.scaling_factor)
    return torch.cat([vae.decode(z[i:i + batch_size].to(device)).sample.cpu()
                      for i in range(0, len(z), batch_size)]).clamp(-1, 1)


def pipeline_fingerprint(path_or_id: str) -> str:
    """Content hash of a local pipeline folder (every file's path and bytes; a changed weight file gives another
    fingerprint, so runs of the old weights are never reused), or the hub id itself."""
    p = Path(path_or_id)
    if not p.is_dir():
        return f"hub:{path_or_id}"
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:24]


__all__ = ["CondUNet", "decode_latents", "encode_images", "encode_prompts", "load_sd", "load_vae", "parse_sd",
           "pipeline_fingerprint", "vae_resolution"]
