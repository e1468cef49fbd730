"""Fine-tune recipes of the LM target and oracle (FinetuneLMConfig, per-family and named presets) and the
per-family method presets; tasks/lm.py re-exports everything here."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..config import build, param, to_dict
from ..errors import UnknownNameError
from ..train import TrainConfig


@dataclasses.dataclass(frozen=True)
class FinetuneLMConfig:
    """Fine-tuning recipe for the target and oracle models (TOFU, Maini et al. 2024: 5 epochs, lr 1e-5 for
    Llama-2-7B, AdamW, weight decay 0.01, effective batch 32). Small models need larger rates: see PRESETS."""

    epochs: int = param(5, "passes over the QA data (TOFU: 5)", low=0)
    lr: float = param(1e-5, "peak learning rate (TOFU Llama-2: 1e-5)", low=0.0)
    batch_size: int = param(32, "examples per step (TOFU: effective batch 32; the training loop has no gradient "
                                "accumulation, so this is the batch of every step)", low=1)
    optimizer: str = param("adamw", "sgd, adam or adamw", choices=("sgd", "adam", "adamw"))
    weight_decay: float = param(0.01, "weight decay (TOFU: 0.01)", low=0.0)
    schedule: str = param("linear", "learning-rate schedule", choices=("constant", "cosine", "step", "linear"))
    max_length: int = param(256, "maximum tokens per QA example", low=8)
    warmup_epochs: float = param(0.0, "epochs of linear warm-up from 0 to the peak lr before the schedule "
                                      "(OpenUnlearning's TOFU fine-tune: 1)", low=0.0)


# Recipe presets: per model family (measured on this repo's generated QA so the target memorises its answers), and
# named ones chosen with recipe {"preset": NAME} (or recipe: NAME in a spec).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 60, "lr": 3e-3, "batch_size": 16, "schedule": "cosine"},
    "smollm2": {"epochs": 10, "lr": 2e-4, "batch_size": 16},  # 10 epochs: 0.958 train ROUGE on short answers; 3: 0.22
    # TOFU's standard fine-tune as OpenUnlearning runs it (configs/experiment/finetune/tofu/default.yaml on
    # trainer/finetune.yaml): lr 1e-5, 5 epochs of which 1 is warm-up, then linear decay, weight decay 0.01, AdamW,
    # effective batch 32 (8 per device x 4 accumulation steps; here 32 per step). TOFU's paper: 5 epochs, wd 0.01.
    "tofu": {"epochs": 5, "lr": 1e-5, "batch_size": 32, "optimizer": "adamw", "weight_decay": 0.01,
             "schedule": "linear", "warmup_epochs": 1.0},
}
# Method overrides per model family ("*" = every method) where the paper defaults, tuned for 7B models, do
# nothing at this scale (e.g. RMU's α=1200 freezes a 2-block model).
METHOD_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {"*": {"lr": 1e-3, "batch_size": 8}, "rmu": {"lr": 1e-2, "alpha": 1.0, "epochs": 10}},
    # RMU: WMDP's fixed c=6.5 sits far below SmolLM2's block-7 activation norm (~133 on D_f), and at α=1200 or lr<=3e-3
    # nothing moves (forget ROUGE 0.975 -> 0.975); Adaptive RMU (c = 5·‖h‖) at lr 1e-2, α=100, 20 epochs reaches
    # forget ROUGE 0.000 with retain ROUGE 1.000 (docs/rmu_calibration_smollm2.md).
    "smollm2": {"*": {"lr": 2e-5, "batch_size": 8},
                "rmu": {"adaptive_scale": 5.0, "lr": 1e-2, "alpha": 100.0, "epochs": 20}},
}


def family(model_spec: str) -> str:
    """'tiny', 'smollm2' or 'hf' for a model spec."""
    s = model_spec.lower()
    return "tiny" if s.split(":")[0] == "tiny" else "smollm2" if s.startswith("smollm2") else "hf"


def finetune_config(model_spec: str, overrides: dict[str, Any] | str | None = None) -> FinetuneLMConfig:
    """The fine-tune recipe: TOFU defaults, then a preset (`overrides["preset"]`, else the model family's), then
    the other `overrides`; a string names a preset alone ("tofu")."""
    over = {"preset": overrides} if isinstance(overrides, str) else dict(overrides or {})
    name = over.pop("preset", None)
    if name is not None and name not in PRESETS:
        raise UnknownNameError("recipe preset", str(name), PRESETS)
    base = dict(PRESETS.get(name if name is not None else family(model_spec), {}))
    base.update(over)
    return build(FinetuneLMConfig, base, what="recipe")


def train_config(cfg: FinetuneLMConfig) -> TrainConfig:
    """The training-loop recipe of a fine-tune: the shared fields, and warm-up epochs as a fraction of the steps."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k in names}
    fields["warmup"] = min(1.0, cfg.warmup_epochs / cfg.epochs) if cfg.epochs else 0.0
    return TrainConfig(**fields)


def recipe_dict(cfg: FinetuneLMConfig) -> dict[str, Any]:
    """The recipe as stored in keys and records; no warm-up leaves warmup_epochs out, so runs and models stored
    before the field existed are still found."""
    out = to_dict(cfg)
    if not out["warmup_epochs"]:
        del out["warmup_epochs"]
    return out


__all__ = ["FinetuneLMConfig", "METHOD_PRESETS", "PRESETS", "family", "finetune_config", "recipe_dict",
           "train_config"]
