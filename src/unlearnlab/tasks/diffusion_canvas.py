"""Two-factor data for the diffusion task in the spirit of UnlearnCanvas (Zhang et al. 2024): the scikit-learn digits
(the objects) drawn in K deterministic styles, every train and test image in every style.

The condition label of an image of digit `o` in style `s` is `y = o * K + s`, so every single-label piece of the
toolkit (splits, samplers, methods, forget sets as sets of labels) keeps working; `Factors` gives the structure
back to the metrics (UA / IRA / CRA by a per-factor judge, `eval/gen_metrics.canvas_metrics`).

Every image appears in every style (not a 1/K assignment): the factors are then independent (no writer is tied to a
style) and each (object, style) condition has the full ~144 training images per digit; the DDPM's cost is per
optimisation step, so the dataset's default recipe keeps the digits-gen step count with 4x fewer epochs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..data.core import ArrayDataset
from ..data.datasets import Bundle
from ..errors import ConfigError


def _stripes(x: torch.Tensor) -> torch.Tensor:
    """Digit over a background of horizontal stripes (every other pixel row at half intensity)."""
    rows = (torch.arange(x.shape[-2]) % 2 == 0).to(x.dtype).view(-1, 1).expand(x.shape[-2:])
    return torch.maximum(x, 0.5 * rows)


# Style transforms on [0, 1] images (N x 1 x H x W, white digit on black), applied at the final resolution.
STYLES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "plain": lambda x: x,
    "negative": lambda x: 1 - x,  # dark digit on a white canvas
    # a stroke thickened by one pixel (2 x 2 grey-scale dilation toward the lower right; 3 x 3 blurs 8x8 digits)
    "thick": lambda x: F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 2, stride=1),
    "stripes": _stripes,
}
DEFAULT_STYLES = ("plain", "negative", "thick", "stripes")
CANVAS_DATASETS = {"digits-canvas-gen": "digits-gen"}


@dataclasses.dataclass(frozen=True)
class Factors:
    """The (object, style) structure of condition labels y = object * n_styles + style."""

    objects: tuple[str, ...]
    styles: tuple[str, ...]

    @property
    def n_objects(self) -> int:
        return len(self.objects)

    @property
    def n_styles(self) -> int:
        return len(self.styles)

    def label(self, obj: int, style: int) -> int:
        """The condition label of (object, style)."""
        return obj * self.n_styles + style

    def of_style(self, style: int) -> list[int]:
        """Every condition label of style `style` (all objects)."""
        return [self.label(o, style) for o in range(self.n_objects)]

    def of_object(self, obj: int) -> list[int]:
        """Every condition label of object `obj` (all styles)."""
        return [self.label(obj, s) for s in range(self.n_styles)]

    def spec(self) -> str:
        """The DDPM field value of this structure ('10x4')."""
        return f"{self.n_objects}x{self.n_styles}"

    def to_dict(self) -> dict:
        return {"objects": list(self.objects), "styles": list(self.styles)}


@dataclasses.dataclass
class CanvasBundle(Bundle):
    """A diffusion bundle whose labels are (object, style) conditions."""

    factors: Factors | None = None


def stylise(x01: torch.Tensor, styles: tuple[str, ...]) -> torch.Tensor:
    """Images N x C x H x W in [0, 1] -> N*K images in [0, 1], image i in style s at row i * K + s."""
    out = torch.stack([STYLES[s](x01).clamp(0, 1) for s in styles], dim=1)
    return out.reshape(-1, *x01.shape[1:])


def canvas_bundle(name: str = "digits-canvas-gen", size: int = 16,
                  styles: tuple[str, ...] = DEFAULT_STYLES) -> CanvasBundle:
    """`name`'s source diffusion images in every style of `styles`, labels y = digit * K + style (deterministic)."""
    from .diffusion_data import DEFAULT_SIZE, gen_bundle

    bad = [s for s in styles if s not in STYLES]
    if bad or len(set(styles)) != len(styles) or len(styles) < 2:
        raise ConfigError(f"canvas styles must be two or more distinct names from {', '.join(STYLES)}; got {styles}.")
    src = gen_bundle(CANVAS_DATASETS[name], size)
    k = len(styles)

    def convert(ds: ArrayDataset) -> ArrayDataset:
        x = stylise((ds.x + 1) / 2, styles) * 2 - 1
        return ArrayDataset(x.contiguous(), ds.y.repeat_interleave(k) * k + torch.arange(k).repeat(len(ds)))

    factors = Factors(tuple(src.classes), tuple(styles))
    classes = [f"{o}/{s}" for o in factors.objects for s in factors.styles]
    suffix = "" if size == DEFAULT_SIZE else str(size)
    suffix += "" if tuple(styles) == DEFAULT_STYLES else "-" + "-".join(styles)
    return CanvasBundle(name + suffix, convert(src.train), convert(src.test), classes, factors=factors)


def factor_view(ds: ArrayDataset, factors: Factors, factor: str) -> ArrayDataset:
    """`ds` relabelled by one factor: 'object' (y // K) or 'style' (y % K) — a judge's training set."""
    y = ds.y // factors.n_styles if factor == "object" else ds.y % factors.n_styles
    names = factors.objects if factor == "object" else factors.styles
    return ArrayDataset(ds.x, y, classes=list(names))


def canvas_grid(x: torch.Tensor, factors: Factors, n: int, per: int) -> tuple[torch.Tensor, int]:
    """(images, rows) of a sample grid: one row per style, objects left to right with `per` samples each, from
    samples ordered by condition label with `n` per condition."""
    per = max(1, min(per, n))
    v = x.view(factors.n_objects, factors.n_styles, n, *x.shape[1:])[:, :, :per]  # object, style, sample
    return v.permute(1, 0, 2, 3, 4, 5).reshape(-1, *x.shape[1:]), factors.n_styles


__all__ = ["CANVAS_DATASETS", "DEFAULT_STYLES", "STYLES", "CanvasBundle", "Factors", "canvas_bundle", "canvas_grid",
           "factor_view", "stylise"]
