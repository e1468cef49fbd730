"""Image data for the diffusion task: the scikit-learn digits (1 channel, upsampled from 8x8) and the CIFAR-10 dev
subset (3 channels, downsampled from 32x32) as [-1, 1] images at `size` x `size`, split like the classifier task's
datasets, and a sample-grid PNG writer (grey or RGB)."""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from ..data.core import ArrayDataset
from ..errors import ConfigError

GEN_DATASETS = {"digits-gen": "digits", "cifar10-dev-gen": "cifar10-dev"}
DEFAULT_SIZE = 16


def gen_bundle(name: str, size: int = DEFAULT_SIZE):
    """The classifier bundle of `name`'s source dataset with its images mapped to [-1, 1] at `size` x `size`
    (a two-factor canvas dataset: `diffusion_canvas.canvas_bundle`)."""
    from ..data import load_dataset
    from ..data.datasets import Bundle
    from .diffusion_canvas import CANVAS_DATASETS, canvas_bundle

    if name in CANVAS_DATASETS:
        return canvas_bundle(name, size)
    if name not in GEN_DATASETS:
        raise ConfigError(f"unknown diffusion dataset {name!r}; choose from "
                          f"{', '.join([*GEN_DATASETS, *CANVAS_DATASETS])}.")
    src = load_dataset(GEN_DATASETS[name])
    shape = (1, -1, 1, 1)  # per-channel (mean, std) of the classifier bundle's standardisation
    mean, std = (torch.tensor(v, dtype=torch.float32).view(shape) for v in src.pixel_norm)

    def convert(ds: ArrayDataset) -> ArrayDataset:
        return ArrayDataset((resize(ds.x * std + mean, size) * 2 - 1).contiguous(), ds.y, classes=src.classes)

    return Bundle(f"{name}{size}" if size != DEFAULT_SIZE else name, convert(src.train), convert(src.test),
                  list(src.classes))


def resize(x01: torch.Tensor, size: int) -> torch.Tensor:
    """[0, 1] images (N x C x H x W) at `size` x `size`, clamped to [0, 1]: bilinear when enlarging (the digits),
    area averaging when shrinking (CIFAR-10 32 -> 16 averages each 2x2 block), unchanged at the same size."""
    x01 = x01.clamp(0, 1)
    if x01.shape[-1] == size:
        return x01
    if size > x01.shape[-1]:
        return F.interpolate(x01, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return F.interpolate(x01, size=(size, size), mode="area")


def grid_png(images: torch.Tensor, rows: int) -> bytes:
    """A PNG of `images` (N x C x H x W in [-1, 1]) laid out in `rows` rows, scaled up 4x (needs Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("sample grids need Pillow: pip install 'unlearnlab[images]'.") from None
    x = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    n, c, h, w = x.shape
    cols = int(np.ceil(n / rows))
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = x[i].transpose(1, 2, 0)
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    img = img.resize((img.width * 4, img.height * 4), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["DEFAULT_SIZE", "GEN_DATASETS", "gen_bundle", "grid_png", "resize"]
