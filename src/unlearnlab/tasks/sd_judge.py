"""Judges of Stable Diffusion samples (option `judge`): the samples are VAE-decoded to images in [-1, 1], then

`judge: <checkpoint>`          a classifier saved by `unlearnlab train` / models.save_checkpoint (arch in its JSON)
                               whose class k is prompt k; its JSON's `input_shape` (C, H, W: images are resized to
                               it) and `pixel_norm` ((mean, std) per channel of [0, 1] pixels, as the classifier
                               datasets standardise) are used when present, else it sees the [-1, 1] images as
                               they are. Without a vae/ in the pipeline it judges the latents.
`judge: clip:<folder or hub id>` CLIP zero-shot over the prompts (transformers CLIPModel + CLIPProcessor): the
                               prediction is the prompt whose text embedding is most similar to the image's.

Both expose `features` (penultimate features; CLIP: the normalised image embedding) and `head` as the engine's
judges do, so eval/gen_metrics.judge_outputs scores them.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

CLIP_PREFIX = "clip:"
HOW = ("pass a judge with the option judge: a classifier checkpoint whose class k is prompt k (from `unlearnlab "
       "train` or models.save_checkpoint), or clip:<folder or hub id> for CLIP zero-shot over the prompts; e.g. "
       "--option judge=clip:openai/clip-vit-base-patch32 on the command line, or options: {judge: ...} in a spec")


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


class ImageJudge(nn.Module):
    """A classifier behind the engine's judge interface, with its own input size and pixel standardisation."""

    def __init__(self, net: nn.Module, size: tuple[int, int] | None, norm: tuple | None):
        super().__init__()
        self.net, self.size = net, size
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in norm) if norm else (None, None)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's penultimate features of images `x` in [-1, 1]."""
        if self.size is not None:
            x = _resize(x, self.size)
        if self.mean is not None:
            x = ((x + 1) / 2 - self.mean) / self.std
        return self.net.features(x)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Class logits from features."""
        return self.net.head(f)


class ClipJudge(nn.Module):
    """CLIP zero-shot: logits = cosine similarity of the image embedding to each prompt's text embedding."""

    def __init__(self, model: nn.Module, text: torch.Tensor, size: tuple[int, int], mean, std):
        super().__init__()
        self.model, self.size = model, size
        self.register_buffer("text", F.normalize(text, dim=-1), persistent=False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised CLIP image embeddings of images `x` in [-1, 1] (CLIPProcessor's size and standardisation)."""
        x = ((_resize(x, self.size) + 1) / 2 - self.mean) / self.std
        return F.normalize(_tensor(self.model.get_image_features(pixel_values=x)), dim=-1)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Similarity of each embedding to each prompt."""
        return f @ self.text.T


def _tensor(out) -> torch.Tensor:
    """get_*_features' tensor (newer transformers wrap it in an output object)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_judge(where: str, prompts: list[str], device) -> ClipJudge:
    """The CLIP zero-shot judge of `prompts` from a folder or hub id holding a CLIPModel and its CLIPProcessor."""
    try:
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(where).eval().requires_grad_(False)
        proc = CLIPProcessor.from_pretrained(where)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"judge clip:{where}: cannot load a CLIPModel and CLIPProcessor ({first}).") from None
    ids = proc.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    text = _tensor(model.get_text_features(**ids))
    ip = proc.image_processor
    crop = getattr(ip, "crop_size", None) or ip.size
    size = (crop["height"], crop["width"]) if "height" in crop else (crop["shortest_edge"],) * 2
    return ClipJudge(model, text, size, ip.image_mean, ip.image_std).to(device).eval()


def checkpoint_judge(path: str, prompts: list[str], sample_shape: tuple[int, ...], device) -> ImageJudge:
    """The classifier checkpoint at `path` (its class k = prompt k) as a judge of samples of `sample_shape`."""
    from ..models import build_model
    from ..models.checkpoint import load_checkpoint, read_meta

    p = Path(path).expanduser()
    if not p.with_suffix(".json").is_file():
        raise ConfigError(f"judge {path!r} is neither clip:<folder or hub id> nor a checkpoint (no {p}.json beside "
                          f"{p}.safetensors); {HOW}.")
    meta = read_meta(p)
    n = int(meta.get("num_classes", 0))
    if "arch" not in meta or n != len(prompts):
        raise ConfigError(f"judge checkpoint {path} must name its arch and num_classes = {len(prompts)} (one class "
                          f"per prompt) in its JSON; it has arch={meta.get('arch')!r}, num_classes={n}.")
    shape = tuple(meta.get("input_shape") or sample_shape)
    net = load_checkpoint(p, build_model(meta["arch"], shape, n))
    size = tuple(shape[-2:]) if tuple(shape[-2:]) != tuple(sample_shape[-2:]) else None
    return ImageJudge(net, size, meta.get("pixel_norm")).to(device).eval()


def sd_judge(option, prompts: list[str], sample_shape: tuple[int, ...], has_vae: bool, device) -> nn.Module:
    """The judge an SD run's `judge` option names (ConfigError without one, or CLIP without a VAE)."""
    if not option or not isinstance(option, str):
        raise ConfigError(f"Stable Diffusion runs need a judge of their samples: {HOW}.")
    if option.startswith(CLIP_PREFIX):
        if not has_vae:
            raise ConfigError("judge clip:... scores images, and this pipeline has no vae/ to decode its samples; "
                              "add the pipeline's vae/ folder or judge latents with a classifier checkpoint.")
        return clip_judge(option[len(CLIP_PREFIX):].strip(), prompts, device)
    return checkpoint_judge(option, prompts, sample_shape, device)


class LatentJudge(nn.Module):
    """A judge of latents: VAE-decode, then judge the images. The prompt attack (eval/gen_attack.py) samples the UNet,
    whose samples are latents, and scores them with this."""

    def __init__(self, vae: nn.Module, judge: nn.Module):
        super().__init__()
        self.vae, self.judge, self.head = vae, judge, judge.head

    def features(self, z: torch.Tensor) -> torch.Tensor:
        from ..models.sd import decode_latents

        with torch.no_grad():
            x = decode_latents(self.vae, z)
        return self.judge.features(x.to(next(self.judge.parameters()).device))


__all__ = ["CLIP_PREFIX", "ClipJudge", "ImageJudge", "LatentJudge", "checkpoint_judge", "clip_judge", "sd_judge"]
