"""UnGuide: a low-rank adapter trained with the ESD target on the erased condition, then UnGuidance at sampling:
a per-condition stability probe routes the condition to the adapter (w1) or to the base model (w2), and each
sampling step mixes the two classifier-free-guided predictions as w eps_base + (1 - w) eps_LoRA."""
from __future__ import annotations

import contextlib
import copy
import dataclasses

import torch

from ..config import param
from ..errors import ConfigError
from ..models.ddpm import Denoiser
from ..seeding import torch_generator
from ._diffusion_common import condition_layers, iterate, step
from .base import MethodContext, register
from .esd import esd_target


@dataclasses.dataclass(frozen=True)
class UnGuideConfig:
    """UnGuide (Polowczyk, Polowczyk, Malarz, Kasymov, Mazur, Tabor & Spurek 2025, arXiv 2508.05755; code
    piotrmwojcik/UnGuide, release ef15713: train.py, lora.py, compute_lora_diff.py, generate_images.py,
    autoguide.py). Training: a LoRA (rank 1, scale lora_alpha 8 applied as is, A ~ N(0, 1/rank), B = 0) on the
    cross-attention to_k/to_v of SD, Adam 3e-5, target e_ref - eta (e_c - e_ref) of the frozen model (eta 2) on x_t
    from partial DDIM sampling (50 steps, guidance 9) of the adapted model, as ESD. Defaults from the example
    experiment (rank 1, 500 iterations, lr 3e-5, start guidance 9, negative guidance 2, DDIM 50). UnGuidance:
    d(c) = mean over `repeats` shared noise draws of ||eps_LoRA(z, t, c) - eps_base(z, t, c)|| at step t_enc (25)
    of 50 on z partially sampled by the base model; w = w1 (-1) if d(c) > d(null) else w2 (2). Deviations: the
    reference prompt ('a photo of the street' in the code) is the null condition (our classes have no neutral
    one); in the digit DDPM, which has no cross-attention, `targets: cond` adapts an identity Linear put where the
    UNet reads the condition vector (a linear map of the condition alone, as to_k / to_v are), `emb_proj` each
    ResNet block's time_emb_proj (our ESD-x), `all` every UNet Linear / Conv2d; the probe's x_t is sampled with
    the engine's guidance (the code uses its generation CFG, 7.5, for both); t is the DDIM
    step's own timestep (the code draws it from the step's 20-timestep bucket)."""

    iterations: int = param(500, "adapter training steps (code example experiment: 500; train.py default 200)",
                            low=0)
    lr: float = param(3e-5, "Adam learning rate of the adapter (code: 3e-5)", low=0.0, search=("log", 1e-5, 1e-1))
    rank: int = param(1, "LoRA rank (code: 1)", low=1)
    lora_alpha: float = param(8.0, "LoRA scale: the update is lora_alpha x B A, not divided by the rank (code: 8)",
                              low=0.0)
    targets: str = param("cond", "adapted layers: cond = linear maps of the condition alone (SD: attn2.to_k / "
                                 "to_v, as the code; digit DDPM: an identity projection of the condition vector "
                                 "put where the UNet reads it), emb_proj = the layers that read the condition mixed "
                                 "with the time embedding (digit DDPM: each ResNet block's time_emb_proj, as our "
                                 "ESD-x), all = every Linear and Conv2d of the UNet",
                         choices=("cond", "emb_proj", "all"))
    negative_guidance: float = param(2.0, "eta of the ESD target e_ref - eta (e_c - e_ref) (code: 2)", low=0.0)
    start_guidance: float = param(9.0, "classifier-free guidance of the partial sampling that makes x_t (code: 9)",
                                  low=0.0)
    ddim_steps: int = param(50, "DDIM steps of the training and probe partial sampling (code: 50)", low=1)
    batch_size: int = param(1, "x_t drawn per training step (code: 1)", low=1)
    t_enc: int = param(25, "probe step: d(c) is measured after t_enc of ddim_steps steps (compute_lora_diff.py: "
                           "25; the NSFW script 40; at most ddim_steps - 1)", low=0)
    repeats: int = param(30, "noise draws averaged in the probe (README command: 30)", low=1)
    w1: float = param(-1.0, "mixing weight of the base prediction for conditions the adapter moved more than the "
                            "null condition (code: -1: 2 eps_LoRA - eps_base)")
    w2: float = param(2.0, "mixing weight of the base prediction for the other conditions (code: 2: "
                           "2 eps_base - eps_LoRA)")


def require_peft():
    """The peft module, or a ConfigError that says how to install it."""
    try:
        import peft
    except ImportError:
        raise ConfigError("UnGuide's adapter needs peft: pip install 'unlearnlab[gen]' (peft>=0.12).") from None
    return peft


def condition_projection(net: Denoiser) -> str:
    """Put an identity Linear where the digit DDPM's UNet reads the condition vector (its class_embedding is an
    nn.Identity): the same function, but a linear map of the condition alone that an adapter can act on, as SD's
    cross-attention to_k / to_v act on the prompt tokens alone. Returns its module name."""
    unet = net.unet
    if not isinstance(getattr(unet, "class_embedding", None), torch.nn.Identity):
        raise ConfigError("UnGuide targets=cond needs a UNet with cross-attention (attn2) or an identity class "
                          "embedding (the digit DDPM); use targets=emb_proj or all.")
    device = next(unet.parameters()).device
    dim = net.condition(torch.zeros(1, dtype=torch.long, device=device)).shape[-1]
    proj = torch.nn.Linear(dim, dim, device=device)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(dim))
        proj.bias.zero_()
    unet.class_embedding = proj
    return "class_embedding"


def lora_targets(net: Denoiser, targets: str) -> list[str]:
    """Module names (in net.unet) that get an adapter."""
    named = [(n, m) for n, m in net.unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    cross = any("attn2" in n for n, _ in named)
    if targets == "all":
        return [n for n, _ in named]
    if targets == "emb_proj":
        return [n for n, _ in named if condition_layers(n, cross)]
    if cross:
        return [n for n, _ in named if "attn2" in n and n.endswith(("to_k", "to_v"))]
    return [condition_projection(net)]


def add_lora(net: Denoiser, cfg: UnGuideConfig, seed: int) -> list[torch.nn.Parameter]:
    """Inject a LoRA adapter into `net.unet` (in place) with the code's scale and initialisation; its parameters."""
    peft = require_peft()
    names = lora_targets(net, cfg.targets)
    lora = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.lora_alpha * cfg.rank, target_modules=names, lora_dropout=0.0)
    peft.inject_adapter_in_model(lora, net.unet)
    gen = torch_generator(seed, "unguide-lora")
    params = []
    for n, p in net.unet.named_parameters():
        if "lora_A" in n:  # code: A ~ N(0, 1 / rank), B = 0 (the update starts at zero)
            p.data.copy_(torch.randn(p.shape, generator=gen) / cfg.rank ** 0.5)
        if "lora_" in n:
            params.append(p)
    return params


class UnGuided(Denoiser):
    """The base model plus its adapter, sampled with UnGuidance: per condition a fixed weight w (probed once and
    cached by the condition vector), and eps = w eps_base_CFG + (1 - w) eps_LoRA_CFG at every step."""

    def __init__(self, net: Denoiser, cfg: UnGuideConfig, guidance: float, seed: int):
        super().__init__()
        self.net, self.cfg, self.probe_guidance, self.seed = net, cfg, guidance, seed
        self.num_classes, self.size, self.channels = net.num_classes, net.size, net.channels
        self.timesteps = net.timesteps
        self.scheduler_config = dict(getattr(net, "scheduler_config", {}))
        self.routes: dict[bytes, tuple[float, float]] = {}  # condition vector -> (d, w)

    @contextlib.contextmanager
    def adapter(self, on: bool):
        """Run the block with the adapter on (the unlearned model) or off (the base model)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in self.net.modules() if isinstance(m, BaseTunerLayer)]
        grads = [p.requires_grad for p in self.net.parameters()]
        for m in layers:
            m.enable_adapters(on)
        try:
            yield self.net
        finally:
            for m in layers:
                m.enable_adapters(True)
            for p, g in zip(self.net.parameters(), grads):
                p.requires_grad_(g)

    @property
    def cond(self) -> torch.nn.Module:
        """The wrapped model's condition table (the prompt attack and AdvUnlearn act on it)."""
        return self.net.cond

    def condition(self, y: torch.Tensor) -> torch.Tensor:
        return self.net.condition(y)

    def scheduler(self):
        return self.net.scheduler()

    @torch.no_grad()
    def probe(self, emb: torch.Tensor) -> torch.Tensor:
        """d(c) for each condition vector row of `emb`: mean ||eps_LoRA - eps_base|| at step t_enc over `repeats`
        noise draws shared by every condition (the base model samples x_t with guidance)."""
        from ..models.ddpm import ddim_timesteps, sample

        cfg = self.cfg
        k = min(cfg.t_enc, cfg.ddim_steps - 1)
        t = ddim_timesteps(self.net, cfg.ddim_steps)[k]
        out = []
        for row in emb:
            e = row.unsqueeze(0).expand(cfg.repeats, *row.shape)
            with self.adapter(False) as base:
                xt = sample(base, None, emb=e, steps=cfg.ddim_steps, scale=self.probe_guidance,
                            gen=torch_generator(self.seed, "unguide-probe"), stop_at=k)
                tt = t.expand(len(xt)).to(xt.device)
                eps_base = base.eps(xt, tt, emb=e)
            eps_lora = self.net.eps(xt, tt, emb=e)
            out.append((eps_lora - eps_base).flatten(1).norm(dim=1).mean())
        return torch.stack(out)

    def weights(self, emb: torch.Tensor) -> torch.Tensor:
        """Per-sample w of condition vectors `emb`, probing (and caching) conditions not routed yet."""
        null = self.condition(torch.tensor([self.null], device=emb.device))
        rows, inverse = torch.unique(emb.detach().flatten(1), dim=0, return_inverse=True)
        keys = [r.cpu().float().numpy().tobytes() for r in rows]
        null_key = null.detach().flatten(1)[0].cpu().float().numpy().tobytes()
        if null_key not in self.routes:
            self.routes[null_key] = (float(self.probe(null)[0]), self.cfg.w2)  # d(null) > d(null) never holds
        new = [i for i, key in enumerate(keys) if key not in self.routes]
        if new:
            d = self.probe(rows[new].view(len(new), *emb.shape[1:]))
            for i, di in zip(new, d.tolist()):
                self.routes[keys[i]] = (di, self.cfg.w1 if di > self.routes[null_key][0] else self.cfg.w2)
        w = torch.tensor([self.routes[key][1] for key in keys], device=emb.device)
        return w[inverse].view(-1, *([1] * 3))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """w eps_base + (1 - w) eps_LoRA for each condition (no guidance)."""
        w = self.weights(emb).view(-1, *([1] * (x.dim() - 1)))
        with self.adapter(False) as base:
            eps_base = base.denoise(x, t, emb)
        return w * eps_base + (1 - w) * self.net.denoise(x, t, emb)

    def guided(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, scale: float,
               emb: torch.Tensor | None = None) -> torch.Tensor:
        """UnGuidance: w CFG(eps_base) + (1 - w) CFG(eps_LoRA), both guided with `scale` (autoguide.py)."""
        emb = self.condition(y) if emb is None else emb
        w = self.weights(emb).view(-1, *([1] * (x.dim() - 1)))
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        with self.adapter(False) as base:
            eps_base = base.guided(x, t, None, scale, emb)
        return w * eps_base + (1 - w) * self.net.guided(x, t, None, scale, emb)


def train_adapter(net: Denoiser, frozen: Denoiser, params, concepts: torch.Tensor, cfg: UnGuideConfig, device,
                  gen: torch.Generator) -> None:
    """ESD on the adapter: x_t by partially sampling the adapted model for c_f (start guidance), target
    e_null - eta (e_c - e_null) of the frozen model."""
    from ..models.ddpm import ddim_timesteps, sample

    opt = torch.optim.Adam(params, lr=cfg.lr)
    times = ddim_timesteps(net, cfg.ddim_steps)
    for _ in iterate(cfg.iterations, "unguide"):
        y = concepts[torch.randint(0, len(concepts), (cfg.batch_size,), generator=gen)].to(device)
        k = int(torch.randint(0, cfg.ddim_steps, (1,), generator=gen))
        net.eval()
        xt = sample(net, y, steps=cfg.ddim_steps, scale=cfg.start_guidance, gen=gen, stop_at=k)
        t = times[k].expand(len(y)).to(device)
        target = esd_target(frozen, xt, t, y, cfg.negative_guidance, "null")
        loss = (net.eps(xt, t, y) - target).pow(2).mean()
        step(opt, loss, params, 0.0)


@register("unguide", UnGuideConfig, "LoRA trained with the ESD target, mixed with the base model per condition by "
          "a stability probe (UnGuidance)", "Polowczyk et al. 2025, 'UnGuide: Learning to Forget with LoRA-Guided "
          "Diffusion Models', arXiv 2508.05755", kinds=("diffusion",))
def unguide(model, data, cfg: UnGuideConfig, task, ctx: MethodContext):
    """Train the adapter, route every class (and the null condition) once, record the routes; the wrapper."""
    model.to(task.device)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    net = copy.deepcopy(model).requires_grad_(False)
    params = add_lora(net, cfg, ctx.seed)
    net.to(task.device)
    for p in params:
        p.requires_grad_(True)
    concepts = torch.unique(data.forget.y)
    train_adapter(net, frozen, params, concepts, cfg, task.device, torch_generator(ctx.seed, "unguide"))
    out = UnGuided(net.eval(), cfg, task.guidance, ctx.seed)
    labels = torch.arange(model.num_classes + 1, device=task.device)
    out.weights(out.condition(labels))
    keys = [r.cpu().float().numpy().tobytes() for r in out.condition(labels).detach().flatten(1)]
    d = [out.routes[k][0] for k in keys]
    w = [out.routes[k][1] for k in keys]
    forget = {int(c) for c in concepts}
    kept = [c for c in range(model.num_classes) if c not in forget]
    to_w1 = [c for c in range(model.num_classes) if w[c] == cfg.w1]
    ctx.info.update({"unguide_d": d[:-1], "unguide_d_null": d[-1], "unguide_w": w[:-1], "unguide_w1_classes": to_w1,
                     "unguide_forget_to_w1": sum(c in forget for c in to_w1) / len(forget),
                     "unguide_false_positive_rate": sum(c in to_w1 for c in kept) / max(len(kept), 1),
                     "unguide_adapter_params": sum(p.numel() for p in params)})
    return out
