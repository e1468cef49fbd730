"""Stable Diffusion as an engine run (task 'diffusion' with model `sd:<folder or hub id>` and a prompt dataset:
tasks/sd_data.py): the pipeline's UNet with its prompts as classes is the original, every diffusion method runs on
it, and the samples (VAE-decoded) are scored by a judge (tasks/sd_judge.py): UA on the forgotten prompt, RA on the
others, FD in the judge's features against the real images when the data has images.

No oracle: Stable Diffusion is not retrained here, so the plan has no `retrain` or `oracle-floor` run and no model
to build (Plan.oracle is False); records carry no gap metrics (Avg.Gap, RTE/retrain) and say why in `notes`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.events import emit
from ..engine.records import make_record
from ..errors import ConfigError
from ..spec import RunSpec
from .base import Plan

NO_ORACLE = ("no oracle: Stable Diffusion is not retrained, so gap metrics to a retrained model (Avg.Gap, "
             "RTE/retrain) and the noise floor are absent")
SD_DEFAULTS: dict[str, Any] = {"samples": 10, "sample_steps": 25, "guidance": 7.5, "grid": 4}
SAMPLE_BATCH = 16
GRID_SIDE = 64
# what each image-needing diffusion method reads beyond the prompts' labels (config field, value) or always (None)
NEEDS_IMAGES: dict[str, tuple[str, str] | None] = {"salun_gen": None, "ga_gen": None, "doco": ("preserve", "retain"),
                                                   "advunlearn": ("attack_loss", "l2")}


def is_sd(spec: RunSpec) -> bool:
    """True for a spec of a Stable Diffusion run: model sd:... or a prompts: / sdimages: dataset."""
    from .sd_data import is_prompt_dataset

    return spec.model_spec().startswith("sd:") or is_prompt_dataset(spec.dataset)


def _sha(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def sd_options(spec: RunSpec) -> dict[str, Any]:
    """Evaluation options of an SD run: SD_DEFAULTS and the spec's options over the diffusion defaults."""
    from .diffusion import gen_options

    if "size" in spec.options:
        raise ConfigError("option size does not apply to Stable Diffusion runs: the pipeline's UNet and VAE fix the "
                          "resolution; drop it.")
    return gen_options(dataclasses.replace(spec, options={**SD_DEFAULTS, **spec.options}))


def sd_forget(forget: str, prompts: list[str]) -> list[int]:
    """The forgotten prompt of `class:K` (K an index or the prompt's exact text); ConfigError otherwise. Tuning's
    validation scenario val:class:K forgets prompt (K + 1) mod K, as for DDPM runs (tasks/diffusion.forget_classes)."""
    kind, _, val = forget.strip().partition(":")
    validation = kind == "val"
    if validation:
        kind, _, val = val.partition(":")
    val = val.strip()
    k = int(val) if val.isdigit() and int(val) < len(prompts) else prompts.index(val) if val in prompts else None
    if kind != "class" or k is None:
        raise ConfigError(f"Stable Diffusion runs forget one prompt: use --forget class:K with K in "
                          f"0..{len(prompts) - 1} (or the prompt's text); got {forget!r}.")
    return [(k + 1) % len(prompts) if validation else k]


def image_methods(names: list[str], spec: RunSpec) -> list[str]:
    """The methods among `names` that read images of the forget or retain set with this spec's overrides."""
    from .classifier import method_config

    out = []
    for m in names:
        if m in NEEDS_IMAGES:
            cond = NEEDS_IMAGES[m]
            if cond is None or method_config(m, spec.overrides.get(m, {})).get(cond[0]) == cond[1]:
                out.append(m if cond is None else f"{m} ({cond[0]}={cond[1]})")
    return out


def _judge_id(option: Any) -> str:
    """The judge option with, for a checkpoint, the content hash of its weights."""
    from .sd_judge import CLIP_PREFIX, HOW

    if not option or not isinstance(option, str):
        raise ConfigError(f"Stable Diffusion runs need a judge of their samples: {HOW}.")
    if option.startswith(CLIP_PREFIX):
        return option
    p = Path(option).expanduser()
    weights = p.with_suffix(".safetensors")
    if not (p.with_suffix(".json").is_file() and weights.is_file()):
        raise ConfigError(f"judge {option!r} is neither clip:<folder or hub id> nor a checkpoint ({p}.json and "
                          f"{p}.safetensors); {HOW}.")
    return f"{option}@{hashlib.sha256(weights.read_bytes()).hexdigest()[:24]}"


@dataclasses.dataclass
class SDContext:
    """What the runs of one seed share: the prompts' data, the loaded pipeline, the judge and real-image features."""

    data: Any
    task: Any
    original: torch.nn.Module
    vae: Any
    judge: torch.nn.Module
    judge_acc: float | None
    real_feats: dict[int, np.ndarray]
    forget: list[int]
    opts: dict[str, Any]
    seed: int
    judge_kind: str
    evals: dict[str, tuple] = dataclasses.field(default_factory=dict)


class SDTask:
    """The Stable Diffusion half of the diffusion Task (DiffusionTask delegates specs for which is_sd holds)."""

    kind = "diffusion"

    def __init__(self) -> None:
        self._context: tuple[str, SDContext] | None = None  # one at a time: a pipeline is large

    def plan(self, spec: RunSpec) -> Plan:
        """Validate an SD spec (pipeline, prompts, judge, methods that need images) and name its run records."""
        from ..models.ddpm import require_diffusers
        from ..models.sd import parse_sd, pipeline_fingerprint
        from .classifier import method_names, record_spec, validate
        from .sd_data import is_prompt_dataset, load_prompt_data

        require_diffusers()
        where = parse_sd(spec.model_spec())
        if where is None or not is_prompt_dataset(spec.dataset):
            raise ConfigError("Stable Diffusion runs pair --model sd:<folder or hub id> with --dataset prompts:<file> "
                              f"or sdimages:<dir>; got model {spec.model_spec()!r}, dataset {spec.dataset!r}.")
        if spec.original or "retrain" in spec.methods:
            raise ConfigError("Stable Diffusion runs use the pipeline itself as the original and have no retrained "
                              "oracle: drop --original and the retrain method.")
        names = method_names(spec, "diffusion")
        validate(spec, names)
        opts, data = sd_options(spec), load_prompt_data(spec.dataset)
        forget = sd_forget(spec.forget, data.prompts)
        judge = _judge_id(opts.get("judge"))
        if not data.has_images and (need := image_methods(names, spec)):
            raise ConfigError(f"{', '.join(need)} need(s) images of the forget / retain prompts, and "
                              f"{spec.dataset} has prompts only: give sdimages:<dir> (one subfolder of images per "
                              "prompt) or run the data-free methods (esd, sfd, unguide, advunlearn).")
        if opts["attack"] and not data.has_images:
            raise ConfigError(f"the prompt attack (option attack) optimises the condition against real images of the "
                              f"forgotten prompt, and {spec.dataset} has prompts only: give sdimages:<dir>, or drop "
                              "the option.")
        if data.has_images and Path(where).is_dir() and not (Path(where) / "vae").is_dir():
            raise ConfigError(f"{spec.dataset} has images, and the pipeline {where} has no vae/ to encode them.")
        data_hash = _sha(data.fingerprint(), pipeline_fingerprint(where), judge, forget)
        plan = Plan(methods=["original", *names], oracle=False)
        for seed in spec.seeds:
            for m in plan.methods:
                plan.record_specs[(m, seed)] = {**record_spec(spec, m, seed, spec.overrides.get(m, {}), data_hash),
                                                "eval": opts}
        return plan

    def build(self, spec: RunSpec, seed: int, role: str, store) -> str:
        """Never scheduled: the pipeline is the original and there is no oracle."""
        raise ConfigError(f"Stable Diffusion runs build no {role} model: the pipeline is the original, and it is "
                          "not retrained.")

    def floor(self, spec: RunSpec, seed: int, other: int, store, rspec: dict) -> dict[str, Any]:
        """Never scheduled: no oracle, so no noise floor."""
        raise ConfigError(f"Stable Diffusion runs have no noise floor ({NO_ORACLE}).")

    def context(self, spec: RunSpec, seed: int, store) -> SDContext:
        """Pipeline, data (latents), judge and real-image judge features of `seed` (the last one memoised)."""
        from ..eval.gen_metrics import judge_outputs
        from ..models.ddpm import DiffusionModelTask
        from ..models.sd import load_sd, load_vae, parse_sd, pipeline_fingerprint, vae_resolution
        from ..train import resolve_device
        from .sd_data import image_latents, load_images, load_prompt_data, unlearn_data
        from .sd_judge import sd_judge

        ckey = _sha(spec.to_dict(), seed)
        if self._context is not None and self._context[0] == ckey:
            return self._context[1]
        self._context = None
        opts, device, where = sd_options(spec), resolve_device(spec.device), parse_sd(spec.model_spec())
        data = load_prompt_data(spec.dataset)
        forget = sd_forget(spec.forget, data.prompts)
        model = load_sd(where, data.prompts, device=device).eval()
        vae = load_vae(where, device=device)
        res = vae_resolution(model.size, vae) if vae is not None else model.size
        latents = real = None
        if data.has_images:
            vae_fp = pipeline_fingerprint(str(Path(where) / "vae")) if Path(where).is_dir() else f"hub:{where}/vae"
            latents, _ = image_latents(data, vae, vae_fp, res, store)
            real = load_images(data.files, res)
        shape = (3, res, res) if vae is not None else (model.channels, model.size, model.size)
        judge = sd_judge(opts.get("judge"), data.prompts, shape, vae is not None, device)
        judge_acc, real_feats = None, {}
        if real is not None:
            pred, feats = judge_outputs(judge, real)
            labels = np.asarray(data.labels)
            judge_acc = float(100 * (pred == labels).mean())
            real_feats = {c: feats[labels == c] for c in range(len(data.prompts))}
        task = DiffusionModelTask(len(data.prompts), device, seed=seed, sample_steps=opts["sample_steps"],
                                  guidance=opts["guidance"])
        kind = "clip" if str(opts["judge"]).startswith("clip:") else "classifier"
        gc = SDContext(unlearn_data(data, forget, latents, spec.forget.strip()), task, model, vae, judge, judge_acc,
                       real_feats, forget, opts, seed, kind)
        self._context = (ckey, gc)
        return gc

    def evaluate(self, gc: SDContext, model: torch.nn.Module, name: str) -> tuple[dict, dict, torch.Tensor | None]:
        """(metrics, details, grid images or None) of `model`'s samples: `samples` per prompt from the same noise
        for every model of the seed, VAE-decoded, judged."""
        from ..eval.gen_metrics import generation_metrics, judge_outputs
        from ..models.ddpm import sample
        from ..models.sd import decode_latents
        from ..seeding import torch_generator
        from .diffusion_data import resize

        if name in gc.evals:
            return gc.evals[name]
        k, n = gc.data.num_classes, gc.opts["samples"]
        labels = torch.arange(k).repeat_interleave(n)
        with torch.no_grad():
            z = sample(model, labels, steps=gc.opts["sample_steps"], scale=gc.opts["guidance"],
                       gen=torch_generator(gc.seed, "diffusion-eval-noise"), batch_size=SAMPLE_BATCH).cpu()
        x = decode_latents(gc.vae, z) if gc.vae is not None else z
        pred, feats = judge_outputs(gc.judge, x)
        with warnings.catch_warnings():  # prompts only: no real images, FD is NaN and dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            metrics, details = generation_metrics(pred, feats, labels.numpy(), gc.real_feats, gc.forget, k)
        details.update(prompts=list(gc.data.extra["classes"]), judge=str(gc.opts["judge"]))
        if not gc.real_feats:
            metrics.pop("FD", None), metrics.pop("FD_forget", None), details.pop("per_class_fd", None)
            details["fd_note"] = "FD skipped: prompts-only data has no real images to compare the samples with"
        elif gc.judge_kind == "clip":
            details["fd_note"] = "Frechet distance in CLIP image-embedding space to the real images, not Inception FID"
        if gc.judge_acc is not None:
            metrics["judge_acc_real"] = gc.judge_acc
        grid = None
        if gc.vae is not None:
            g = min(gc.opts["grid"], n)
            grid = resize((x.view(k, n, *x.shape[1:])[:, :g].reshape(-1, *x.shape[1:]) + 1) / 2,
                          min(GRID_SIDE, x.shape[-1])) * 2 - 1
        if gc.opts["attack"]:  # UnlearnDiffAtk on the forgotten prompt's latents; samples decoded for the judge
            from .diffusion import DiffusionTask
            from .sd_judge import LatentJudge

            judge = LatentJudge(gc.vae, gc.judge) if gc.vae is not None else gc.judge
            metrics.update(DiffusionTask._attack(dataclasses.replace(gc, judge=judge), model))
        out = (metrics, details, grid)
        if name == "original":
            gc.evals[name] = out
        return out

    def _record(self, gc: SDContext, model, method: str, store, rspec: dict, t: dict, extra: dict) -> dict:
        from .diffusion_data import grid_png

        metrics, details, grid = self.evaluate(gc, model, method)
        metrics = {**metrics, "RTE": t["wall_s"]}
        artifacts = {}
        if grid is not None and store is not None and hasattr(store, "put_bytes"):
            try:
                artifacts["samples_png"] = store.put_bytes(grid_png(grid, gc.data.num_classes))
            except ConfigError as e:  # Pillow missing: the record stands without its grid
                emit("warning", text=str(e))
        shown = ", ".join(f"{k} {metrics[k]:.1f}" for k in ("UA", "RA", "FD") if k in metrics)
        emit("message", text=f"{method} (seed {gc.seed}): {shown}")
        return make_record(rspec, metrics, t, gc.task.device, details=details, notes=[NO_ORACLE],
                           **({"artifacts": artifacts} if artifacts else {}), **extra)

    def run(self, spec: RunSpec, seed: int, method: str, store, rspec: dict) -> dict[str, Any]:
        """Apply `method` to the pipeline's UNet (or take the original) and judge its samples."""
        from .diffusion import apply_method

        gc = self.context(spec, seed, store)
        model, t, extra = apply_method(spec, seed, method, gc)
        return self._record(gc, model, method, store, rspec, t, extra)


__all__ = ["NEEDS_IMAGES", "NO_ORACLE", "SDTask", "image_methods", "is_sd", "sd_forget", "sd_options"]
