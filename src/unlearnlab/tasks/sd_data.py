"""Data of Stable Diffusion runs: the classes are prompts.

`prompts:<file>`  one prompt per line (blank lines and `#` comments skipped); no images, so only the data-free
                  methods run (their forget / retain sets hold one image-less row per prompt: the labels name the
                  concepts, as ESD reads them).
`sdimages:<dir>`  one subfolder per prompt holding its images (png, jpg, jpeg, webp, bmp); the prompt is the folder
                  name with `_` read as a space, or the line `FOLDER: PROMPT` of an optional `<dir>/prompts.txt`.
                  The images are resized (shorter side) and centre-cropped to the VAE's resolution, encoded once by
                  the VAE, and those latents (times vae.config.scaling_factor) are the train set the methods see;
                  they are cached by the images' content hashes and the VAE's fingerprint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError

KINDS = ("prompts", "sdimages")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_LATENTS: dict[str, torch.Tensor] = {}


@dataclasses.dataclass
class PromptData:
    """The prompts (class k = prompts[k]) and, for `sdimages:`, each image file with its prompt index."""

    name: str
    prompts: list[str]
    files: list[Path] = dataclasses.field(default_factory=list)
    labels: list[int] = dataclasses.field(default_factory=list)
    file_hashes: list[str] = dataclasses.field(default_factory=list)

    @property
    def has_images(self) -> bool:
        """True for `sdimages:` data."""
        return bool(self.files)

    def fingerprint(self) -> str:
        """Content hash of the prompts and of every image (with its prompt)."""
        return _sha([self.prompts, self.file_hashes, self.labels])


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_prompt_dataset(dataset: str) -> bool:
    """True for a `prompts:` or `sdimages:` dataset spec."""
    return dataset.split(":", 1)[0] in KINDS


def _check_prompts(prompts: list[str], where: str) -> list[str]:
    if len(prompts) < 2:
        raise DataError(f"{where} names {len(prompts)} prompt(s); a run needs at least 2 (one to forget, one kept).")
    dup = sorted({p for p in prompts if prompts.count(p) > 1})
    if dup:
        raise DataError(f"{where} repeats the prompt(s) {dup}; each class must be a distinct prompt.")
    return prompts


def _read_prompts(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"prompts file {str(path)!r} does not exist; give a text file with one prompt per line.")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return _check_prompts([ln for ln in lines if ln and not ln.startswith("#")], f"prompts file {path}")


def _folder_prompts(root: Path, folders: list[str]) -> dict[str, str]:
    """FOLDER -> prompt: the folder name with `_` as spaces, or its line in root/prompts.txt (FOLDER: PROMPT)."""
    names = {f: f.replace("_", " ") for f in folders}
    mapping = root / "prompts.txt"
    if mapping.is_file():
        for ln in mapping.read_text(encoding="utf-8").splitlines():
            folder, colon, prompt = ln.partition(":")
            if ln.strip() and not ln.startswith("#"):
                if not colon or folder.strip() not in names:
                    raise DataError(f"{mapping}: line {ln!r} must read FOLDER: PROMPT with FOLDER one of the "
                                    f"subfolders {folders}.")
                names[folder.strip()] = prompt.strip()
    return names


def load_prompt_data(dataset: str) -> PromptData:
    """The PromptData of a `prompts:<file>` or `sdimages:<dir>` dataset spec."""
    kind, _, where = dataset.partition(":")
    if kind not in KINDS or not where.strip():
        raise ConfigError(f"Stable Diffusion runs take --dataset prompts:<file> (one prompt per line) or "
                          f"sdimages:<dir> (one subfolder of images per prompt); got {dataset!r}.")
    root = Path(where.strip()).expanduser()
    if kind == "prompts":
        return PromptData(dataset, _read_prompts(root))
    if not root.is_dir():
        raise DataError(f"sdimages folder {str(root)!r} does not exist; it needs one subfolder of images per prompt.")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = _folder_prompts(root, folders)
    files, labels = [], []
    for k, folder in enumerate(folders):
        imgs = sorted(f for f in (root / folder).iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not imgs:
            raise DataError(f"{root / folder} holds no images ({', '.join(IMAGE_EXTS)}); every prompt needs some.")
        files += imgs
        labels += [k] * len(imgs)
    prompts = _check_prompts([names[f] for f in folders], f"sdimages folder {root}")
    return PromptData(dataset, prompts, files, labels, [_file_hash(f) for f in files])


def load_images(files: list[Path], res: int) -> torch.Tensor:
    """RGB images in [-1, 1] (N x 3 x res x res): the shorter side resized to `res`, then centre-cropped."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("sdimages: datasets need Pillow: pip install 'unlearnlab[images]'.") from None
    out = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            s = res / min(im.size)
            im = im.resize((max(res, round(im.width * s)), max(res, round(im.height * s))), Image.BICUBIC)
            left, top = (im.width - res) // 2, (im.height - res) // 2
            a = np.asarray(im.crop((left, top, left + res, top + res)), dtype=np.float32)
        out.append(torch.from_numpy(a).permute(2, 0, 1) / 127.5 - 1.0)
    return torch.stack(out)


def image_latents(data: PromptData, vae, vae_fp: str, res: int, store=None) -> tuple[torch.Tensor, bool]:
    """(latents of data's images, whether they came from a cache): memoised in this process and kept under the
    store's cache/sd-latents/, keyed by the images' content hashes, their prompt indices, `res` and the VAE
    fingerprint."""
    from safetensors.torch import load_file, save_file

    from ..models.checkpoint import atomic_write
    from ..models.sd import encode_images

    key = _sha(["sd-latents", data.file_hashes, data.labels, res, vae_fp])
    if key in _LATENTS:
        return _LATENTS[key], True
    path = Path(store.root) / "cache" / "sd-latents" / f"{key}.safetensors" if store is not None else None
    if path is not None and path.is_file():
        _LATENTS[key] = load_file(str(path))["latents"]
        return _LATENTS[key], True
    z = encode_images(vae, load_images(data.files, res)).contiguous()
    if path is not None:
        atomic_write(path, lambda t: save_file({"latents": z}, t))
    _LATENTS[key] = z
    return z, False


def unlearn_data(data: PromptData, forget: list[int], latents: torch.Tensor | None, scenario: str | None = None):
    """UnlearnData over the prompts: the latents with their prompt labels, or (prompts only) one image-less row
    (x of width 0) per prompt; the forget set is every row of the forgotten prompt(s)."""
    from ..data.core import ArrayDataset, UnlearnData

    if latents is None:
        ds = ArrayDataset(torch.zeros(len(data.prompts), 0), torch.arange(len(data.prompts)), classes=data.prompts)
    else:
        ds = ArrayDataset(latents, torch.tensor(data.labels), classes=data.prompts)
    hit = np.isin(ds.y.numpy(), forget)
    return UnlearnData(ds, ds, np.flatnonzero(hit), np.flatnonzero(~hit), len(data.prompts), name=data.name,
                       scenario=scenario or f"class:{forget[0]}", extra={"classes": data.prompts})


__all__ = ["IMAGE_EXTS", "KINDS", "PromptData", "image_latents", "is_prompt_dataset", "load_images",
           "load_prompt_data", "unlearn_data"]
