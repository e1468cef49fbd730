"""Class-conditional DDPM for small images: a diffusers UNet2DModel whose condition is a learnable embedding table.

The condition table (`cond`, one row per class plus a last "null" row for classifier-free guidance) stands in for a
text encoder: its rows are continuous vectors fed to the UNet through `class_embed_type="identity"`, so an attack or
a method can act on the embedding itself (`DDPM.eps(x, t, emb=...)`). Schedules and samplers are diffusers'
DDPMScheduler / DDIMScheduler. Needs the `gen` extra (diffusers); nothing here downloads weights.
"""
from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

# Named sizes: "full" is the 1-3M-parameter model of the issue (1.2M at 16x16), the others are for CPU tests/runs.
SIZES: dict[str, dict[str, Any]] = {
    "full": {"width": 32, "mult": (1, 2, 2), "layers": 1, "attn": True},
    "small": {"width": 16, "mult": (1, 2, 2), "layers": 1, "attn": False},
    "tiny": {"width": 8, "mult": (1, 2), "layers": 1, "attn": False},
}
MIN_DIFFUSERS = "0.30"


def require_diffusers():
    """The diffusers module, or a ConfigError that says how to install it."""
    try:
        import diffusers
    except ImportError:
        raise ConfigError("Diffusion models need the `gen` extra: pip install 'unlearnlab[gen]' (diffusers>="
                          f"{MIN_DIFFUSERS}).") from None
    return diffusers


class Denoiser(nn.Module, metaclass=abc.ABCMeta):
    """eps_theta(x_t, t, c) over a condition table whose rows 0..K-1 are the classes / prompts and row K the null
    condition; subclasses give `condition(y)` (a table lookup) and `denoise(x, t, emb)` (their UNet's call)."""

    num_classes: int
    one_step = False  # a one-step generator (sample() calls its `generate` instead of running DDIM)

    @property
    def null(self) -> int:
        """Index of the null (unconditional) row of the condition table."""
        return self.num_classes

    @abc.abstractmethod
    def condition(self, y: torch.Tensor) -> torch.Tensor:
        """Condition vectors of labels `y`."""

    @abc.abstractmethod
    def denoise(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction for a batch of timesteps `t` and condition vectors `emb`."""

    def eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
            emb: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise for labels `y` (null = self.null) or for condition vectors `emb`."""
        if emb is None:
            emb = self.condition(y)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.denoise(x, t, emb)

    def guided(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, scale: float,
               emb: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier-free guidance: eps_null + scale (eps_c - eps_null) (scale 1 = the conditional model alone).
        A subclass that mixes several predictions per condition (UnGuide) overrides this to guide each one."""
        cond = self.eps(x, t, y, emb)
        if scale == 1.0:
            return cond
        null = self.eps(x, t, torch.full((x.shape[0],), self.null, dtype=torch.long, device=x.device))
        return null + scale * (cond - null)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.eps(x, t, y)


class FactorTable(nn.Module):
    """A compositional condition table: condition(y) = objects[y // S] + styles[y % S] for y < O * S, and a separate
    learnable null row for y = O * S (the two-factor data of `tasks/diffusion_canvas.py`, labels y = o * S + s).
    `weight` is the composed (O * S + 1) x D table, so code that reads a flat table still can."""

    def __init__(self, n_objects: int, n_styles: int, dim: int):
        super().__init__()
        self.objects, self.styles = nn.Embedding(n_objects, dim), nn.Embedding(n_styles, dim)
        self.null = nn.Parameter(torch.zeros(1, dim))
        for p in (self.objects.weight, self.styles.weight, self.null):
            nn.init.normal_(p, std=0.02)
        self.n_objects, self.n_styles = n_objects, n_styles

    @property
    def num_embeddings(self) -> int:
        """Rows of the composed table (conditions + null)."""
        return self.n_objects * self.n_styles + 1

    @property
    def weight(self) -> torch.Tensor:
        """The composed table, one row per condition label and the null row last."""
        return self(torch.arange(self.num_embeddings, device=self.null.device))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        null = y == self.num_embeddings - 1
        yc = torch.where(null, torch.zeros_like(y), y)
        emb = self.objects(yc // self.n_styles) + self.styles(yc % self.n_styles)
        return torch.where(null.unsqueeze(-1), self.null.expand_as(emb), emb)


class DDPM(Denoiser):
    """eps_theta(x_t, t, c): UNet2DModel + condition table (rows 0..K-1 the classes, row K the null condition);
    with `factors` = (objects, styles) the table is a compositional FactorTable."""

    def __init__(self, num_classes: int, size: int = 16, channels: int = 1, width: int = 32,
                 mult: tuple[int, ...] = (1, 2, 2), layers: int = 1, attn: bool = True, timesteps: int = 1000,
                 factors: tuple[int, int] | None = None):
        super().__init__()
        d = require_diffusers()
        chans = tuple(width * m for m in mult)
        down = ("DownBlock2D",) + (("AttnDownBlock2D" if attn else "DownBlock2D"),) * (len(chans) - 1)
        up = (("AttnUpBlock2D" if attn else "UpBlock2D"),) * (len(chans) - 1) + ("UpBlock2D",)
        self.unet = d.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                  block_out_channels=chans, layers_per_block=layers, down_block_types=down,
                                  up_block_types=up, norm_num_groups=min(8, width), class_embed_type="identity",
                                  attention_head_dim=8 if attn else None, add_attention=attn)
        if factors is None:
            self.cond = nn.Embedding(num_classes + 1, 4 * width)  # UNet2DModel's time-embedding width is 4x width
            nn.init.normal_(self.cond.weight, std=0.02)
        elif factors[0] * factors[1] != num_classes:
            raise ConfigError(f"DDPM factors={factors[0]}x{factors[1]} make {factors[0] * factors[1]} conditions but "
                              f"the data has {num_classes} classes.")
        else:
            self.cond = FactorTable(*factors, 4 * width)
        self.factors = factors
        self.num_classes, self.size, self.channels, self.timesteps = num_classes, size, channels, timesteps

    def condition(self, y: torch.Tensor) -> torch.Tensor:
        """Rows of the learnable condition table (N x D)."""
        return self.cond(y)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """UNet2DModel with the condition added to its time embedding (class_embed_type='identity')."""
        return self.unet(x, t, class_labels=emb).sample

    def scheduler(self):
        """The training noise schedule (DDPM, linear betas 1e-4..0.02 over `timesteps`, as DDPM and SalUn's code)."""
        return require_diffusers().DDPMScheduler(num_train_timesteps=self.timesteps, beta_schedule="linear",
                                                 beta_start=1e-4, beta_end=0.02, clip_sample=True)


def parse_ddpm(spec: str) -> dict[str, Any]:
    """'ddpm', 'ddpm:small', 'ddpm:width=16,layers=2,attn=0,timesteps=500', 'ddpm:tiny,factors=10x4' (a
    compositional object x style condition table) -> DDPM keyword arguments."""
    name, _, rest = spec.partition(":")
    if name != "ddpm":
        raise ConfigError(f"diffusion model spec must start with 'ddpm' (e.g. ddpm, ddpm:small); got {spec!r}.")
    out = dict(SIZES["full"])
    for item in filter(None, (s.strip() for s in rest.split(","))):
        if "=" not in item:
            if item not in SIZES:
                raise ConfigError(f"unknown DDPM size {item!r}; choose from {', '.join(SIZES)} or give fields "
                                  "width=, mult=1-2-2, layers=, attn=, timesteps=.")
            out.update(SIZES[item])
            continue
        k, v = item.split("=", 1)
        if k == "mult":
            out[k] = tuple(int(m) for m in v.split("-"))
        elif k == "attn":
            out[k] = v.lower() in ("1", "true", "yes")
        elif k in ("width", "layers", "timesteps"):
            out[k] = int(v)
        elif k == "factors":
            out[k] = _factors(v, spec)
        else:
            raise ConfigError(f"unknown DDPM field {k!r}; use width, mult, layers, attn, timesteps or factors.")
    return out


def _factors(v: str, spec: str) -> tuple[int, int]:
    """'10x4' -> (10, 4)."""
    o, sep, st = v.partition("x")
    if not (sep and o.isdigit() and st.isdigit() and int(o) >= 1 and int(st) >= 1):
        raise ConfigError(f"DDPM field factors must be <objects>x<styles>, e.g. factors=10x4; got {v!r} in {spec!r}.")
    return int(o), int(st)


def build_ddpm(spec: str, num_classes: int, size: int, channels: int = 1, seed: int = 0) -> DDPM:
    """A freshly initialised DDPM from a spec string, seeded."""
    from ..seeding import torch_seed

    with torch_seed(seed, "ddpm-init", spec):
        return DDPM(num_classes, size, channels, **parse_ddpm(spec))


def q_sample(sched, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
    return sched.add_noise(x0, noise, t)


def diffusion_loss(model: DDPM, x0: torch.Tensor, y: torch.Tensor, gen: torch.Generator, p_uncond: float = 0.0,
                   reduce: bool = True) -> torch.Tensor:
    """The DDPM noise-prediction MSE (mean over pixels), with labels dropped to null with probability `p_uncond`."""
    sched = _sched(model)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    t = torch.randint(0, model.timesteps, (x0.shape[0],), generator=gen).to(x0.device)
    if p_uncond > 0:
        drop = (torch.rand(x0.shape[0], generator=gen) < p_uncond).to(y.device)
        y = torch.where(drop, torch.full_like(y, model.null), y)
    err = (model.eps(q_sample(sched, x0, t, noise), t, y) - noise).pow(2).flatten(1).mean(1)
    return err.mean() if reduce else err


_SCHEDS: dict[str, Any] = {}


def _sched(model: DDPM):
    """The (shared, stateless) training scheduler of `model` (one per schedule: DDPM linear, or a pipeline's)."""
    key = repr((type(model).__name__, model.timesteps, sorted(getattr(model, "scheduler_config", {}).items())))
    if key not in _SCHEDS:
        _SCHEDS[key] = model.scheduler()
    return _SCHEDS[key]


def guided_eps(model: Denoiser, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, scale: float,
               emb: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free guidance of `model` (its `guided`): eps_null + scale (eps_c - eps_null)."""
    return model.guided(x, t, y, scale, emb)


class OneStepGenerator(Denoiser):
    """A one-step generator G(z, c) built on a noise predictor `net` (SiD / SFD): from pure noise z it forms
    x_t = sqrt(1 - abar) z at the fixed step `t_init` and returns the x0-prediction
    (x_t - sqrt(1 - abar) eps_net(x_t, t_init, c)) / sqrt(abar). `eps` stays the net's noise prediction (so the
    diffusion methods still apply to it); `sample()` draws one step per image, without guidance (the SFD code
    samples its generators with cond_scale 0, the conditional prediction alone)."""

    one_step = True

    def __init__(self, net: Denoiser, t_init: int):
        super().__init__()
        if not 0 <= t_init < net.timesteps:
            raise ConfigError(f"t_init must be a training timestep of the model (0..{net.timesteps - 1}); "
                              f"got {t_init}.")
        self.net, self.t_init = net, int(t_init)
        self.num_classes, self.size, self.channels = net.num_classes, net.size, net.channels
        self.timesteps = net.timesteps
        self.scheduler_config = dict(getattr(net, "scheduler_config", {}))

    @property
    def cond(self) -> nn.Module:
        """The wrapped model's condition table (the prompt attack and AdvUnlearn act on it)."""
        return self.net.cond

    def condition(self, y: torch.Tensor) -> torch.Tensor:
        return self.net.condition(y)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(x, t, emb)

    def scheduler(self):
        return self.net.scheduler()

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None,
                 emb: torch.Tensor | None = None) -> torch.Tensor:
        """G(z, c) for labels `y` (or condition vectors `emb`); differentiable (the distillation trains it)."""
        abar = _sched(self).alphas_cumprod[self.t_init].to(z.device)
        xt = (1 - abar).sqrt() * z
        eps = self.eps(xt, torch.full((len(z),), self.t_init, dtype=torch.long, device=z.device), y, emb)
        return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()


@torch.no_grad()
def sample(model: DDPM, y: torch.Tensor, *, steps: int = 25, scale: float = 2.0, gen: torch.Generator,
           emb: torch.Tensor | None = None, stop_at: int | None = None, batch_size: int = 500) -> torch.Tensor:
    """DDIM samples (eta 0) for labels `y` (or condition vectors `emb`) in [-1, 1]; `stop_at` k returns the
    partially denoised x after k of `steps` steps (ESD's way of producing x_t) instead. A one-step generator
    (`model.one_step`) maps the same noise to images in one call of its `generate` (steps and scale unused)."""
    d = require_diffusers()
    device = next(model.parameters()).device
    noise = torch.randn((len(y) if y is not None else len(emb), model.channels, model.size, model.size),
                        generator=gen).to(device)
    if getattr(model, "one_step", False):
        if stop_at is not None:
            raise ConfigError("a one-step generator has no intermediate sampling steps (stop_at).")
        return torch.cat([model.generate(noise[i:i + batch_size], None if y is None else y[i:i + batch_size].to(device),
                                         None if emb is None else emb[i:i + batch_size])
                          for i in range(0, len(noise), batch_size)]).clamp(-1, 1)
    outs = []
    for i in range(0, len(noise), batch_size):
        ddim = d.DDIMScheduler.from_config(_sched(model).config)
        ddim.set_timesteps(steps)
        x = noise[i:i + batch_size]
        yy = None if y is None else y[i:i + batch_size].to(device)
        ee = None if emb is None else emb[i:i + batch_size]
        for k, t in enumerate(ddim.timesteps):
            if stop_at is not None and k == stop_at:
                break
            x = ddim.step(guided_eps(model, x, t.to(device), yy, scale, ee), t, x).prev_sample
        outs.append(x)
    return torch.cat(outs).clamp(-1, 1) if stop_at is None else torch.cat(outs)


def ddim_timesteps(model: DDPM, steps: int) -> torch.Tensor:
    """The training timesteps a `steps`-step DDIM sampler visits, in order (for ESD's partial sampling)."""
    ddim = require_diffusers().DDIMScheduler.from_config(_sched(model).config)
    ddim.set_timesteps(steps)
    return ddim.timesteps.clone()


class DiffusionModelTask:
    """The Task contract for a DDPM: loss = the noise-prediction MSE with CFG label dropout, on (x, y) batches."""

    kind = "diffusion"

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", *, p_uncond: float = 0.1,
                 seed: int = 0, sample_steps: int = 25, guidance: float = 2.0):
        from ..seeding import torch_generator

        self.num_classes, self.device, self.p_uncond = num_classes, torch.device(device), p_uncond
        self.sample_steps, self.guidance = sample_steps, guidance
        self.gen = torch_generator(seed, "diffusion-task")

    def to_device(self, batch):
        """(x, y) on the task's device."""
        x, y = batch
        return x.to(self.device), y.to(self.device)

    def loss(self, model: DDPM, batch) -> torch.Tensor:
        """Noise-prediction MSE with classifier-free-guidance dropout (labels -> null with prob p_uncond)."""
        x, y = self.to_device(batch)
        return diffusion_loss(model, x, y, self.gen, self.p_uncond)

    def per_example_loss(self, model: DDPM, batch) -> torch.Tensor:
        """Per-example noise-prediction MSE (conditional, no dropout)."""
        x, y = self.to_device(batch)
        return diffusion_loss(model, x, y, self.gen, 0.0, reduce=False)


__all__ = ["DDPM", "SIZES", "Denoiser", "DiffusionModelTask", "FactorTable", "OneStepGenerator", "build_ddpm",
           "ddim_timesteps", "diffusion_loss", "guided_eps", "parse_ddpm", "q_sample", "require_diffusers", "sample"]
