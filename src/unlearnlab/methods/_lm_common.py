"""Shared pieces of the LM unlearning methods: config base, forget/retain pairing, reference model, LoRA."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..config import param
from ..data.core import batches
from ..distributed import gather, local_part, ratio, rows
from ..errors import ConfigError
from ..models.lm_format import IGNORE
from ..seeding import torch_generator
from ..train import train
from .base import MethodContext, recipe

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


OU = "OpenUnlearning @ d3d7cf9"  # the commit of locuslab/open-unlearning whose configs the help texts cite


@dataclasses.dataclass(frozen=True)
class LMUnlearnConfig:
    """Optimisation defaults of OpenUnlearning's TOFU unlearning experiment (configs/experiment/unlearn/tofu/
    default.yaml, which overrides every trainer's own lr/epochs): AdamW, lr 1e-5, weight decay 0.01, 10 epochs with
    one warm-up epoch then linear decay, effective batch 32. TOFU's paper (Maini et al. 2024) used 5 epochs."""

    epochs: int = param(10, f"epochs over D_f ({OU} TOFU experiment: 10; TOFU paper: 5)", low=0)
    lr: float = param(1e-5, f"learning rate ({OU} TOFU experiment and TOFU paper: 1e-5; search: ours, log "
                            "1e-6..1e-4)", low=0.0, search=("log", 1e-6, 1e-4))
    batch_size: int = param(32, "forget examples per step; each is paired with as many retain examples "
                                f"({OU} and TOFU: effective batch 32)", low=1)
    optimizer: str = param("adamw", f"sgd, adam or adamw ({OU}: paged AdamW; TOFU: AdamW)",
                           choices=("sgd", "adam", "adamw"))
    weight_decay: float = param(0.01, f"weight decay ({OU} TOFU experiment and TOFU: 0.01)", low=0.0)
    schedule: str = param("linear", f"learning-rate schedule after the warm-up ({OU}: the HF Trainer's linear "
                                    "decay)", choices=("constant", "cosine", "step", "linear"))
    warmup: float = param(0.1, f"fraction of the steps with a linear warm-up ({OU} TOFU experiment: warmup_epochs 1 "
                               "of 10 epochs = 0.1; 0 = none)", low=0.0, high=1.0)
    lora_r: int = param(0, "LoRA rank; 0 updates all weights, >0 trains LoRA adapters merged at the end (PEFT)",
                        low=0)
    lora_alpha: float = param(32.0, "LoRA scaling alpha (used when lora_r > 0)", low=0.0)


LM_TRAINING = ("epochs", "lr", "batch_size", "optimizer", "weight_decay", "schedule", "warmup")


def lm_training_defaults() -> dict[str, Any]:
    """LMUnlearnConfig's optimisation defaults (for a method with a classifier config, e.g. GA, run on an LM)."""
    return {f.name: f.default for f in dataclasses.fields(LMUnlearnConfig) if f.name in LM_TRAINING}


def retain_field(default: str = "nll") -> Any:
    """The retain-regulariser choice field."""
    return param(default, "retain regulariser: nll (NLL on D_r, GradDiff) or kl (KL(ref||model) on D_r answer "
                          "tokens)", choices=("nll", "kl", "none"))


class Indexed(Dataset):
    """A token dataset whose items carry their position as 'index' (to look up precomputed values)."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        return {**self.ds[i], "index": i}

    def collate(self, features: list[dict]) -> dict:
        """The wrapped dataset's collate; 'index' becomes a LongTensor."""
        return self.ds.collate(features)


def retain_stream(ds: Dataset, batch_size: int, seed: int, key: str) -> Iterator[dict]:
    """Endless seeded shuffled batches of D_r (each pass reshuffles), for pairing with forget batches."""
    if len(ds) == 0:
        raise ConfigError("This method needs retain data but the retain set is empty; set alpha=0 or "
                          "retain=none, or choose a forget set that leaves retain examples.")
    gen = torch_generator(seed, key, "retain-pairing")
    while True:  # under a multi-process launch every rank draws the same batch and keeps its slice
        yield from (local_part(b) for b in batches(ds, batch_size, shuffle=True, gen=gen))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode deep copy (the reference model π_ref = θ0)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


@torch.no_grad()
def precompute_logprobs(ref: nn.Module, ds: Dataset, task, batch_size: int) -> torch.Tensor:
    """ℓ_ref(y|x) summed over answer tokens for every example of `ds` (one pass, in order). Under a multi-process
    launch each rank scores its slice of every batch and the slices are gathered: every rank holds all values,
    indexed by example."""
    out = [gather(task.sequence_logprob(ref, local_part(b))[0].float(), rows(b)).cpu()
           for b in batches(ds, batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def answer_kl(model: nn.Module, ref: nn.Module, batch: dict, task, tokens: str = "answer") -> torch.Tensor:
    """KL(π_ref ‖ π_θ) of next-token distributions, averaged over the positions that predict answer tokens
    (tokens='answer') or over every position of the padded batch, prompt and padding included (tokens='all', as
    OpenUnlearning's compute_kl_divergence)."""
    cut = None if tokens == "all" else -1
    logits = task.forward(model, batch).logits[:, :cut].float()
    with torch.no_grad():
        ref_logits = task.forward(ref, batch).logits[:, :cut].float()
    if tokens == "all":
        mask = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
    else:
        mask = (batch["labels"][:, 1:] != IGNORE).to(logits.device)
    lp, lq = F.log_softmax(logits[mask], -1), F.log_softmax(ref_logits[mask], -1)
    return ratio(F.kl_div(lp, lq, reduction="sum", log_target=True), lp.shape[0])  # batchmean, over all ranks


def retain_term(kind: str, task, ref: nn.Module | None,
                kl_tokens: str = "answer") -> Callable[[nn.Module, dict], torch.Tensor]:
    """The retain regulariser: NLL on D_r, or KL to the reference model on D_r (over `kl_tokens`)."""
    if kind == "kl":
        if ref is None:
            raise ConfigError("retain=kl needs a reference model.")
        return lambda m, b: answer_kl(m, ref, b, task, kl_tokens)
    return task.loss


def apply_lora(model: nn.Module, cfg: Any, targets: tuple[str, ...] | str = LORA_TARGETS) -> nn.Module:
    """Wrap `model` with LoRA adapters when cfg.lora_r > 0 (PEFT, Hu et al. 2022); else return it."""
    if getattr(cfg, "lora_r", 0) <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    if isinstance(targets, tuple) and not names & set(targets):
        raise ConfigError(f"lora_r>0 but the model has none of the LoRA target layers {', '.join(targets)}; "
                          "use lora_r=0 for this architecture.")
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge LoRA adapters into the base weights and unwrap (no-op without LoRA)."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


def run_forget_retain(model: nn.Module, data, cfg: Any, task, ctx: MethodContext, key: str,
                      forget_loss: Callable[[nn.Module, dict], torch.Tensor], *, retain: str = "nll",
                      alpha: float = 1.0, gamma: float = 1.0, ref: nn.Module | None = None,
                      forget_ds: Dataset | None = None, params: Callable[[nn.Module], list] | None = None,
                      lora_targets: tuple[str, ...] | str = LORA_TARGETS, kl_tokens: str = "answer") -> nn.Module:
    """Minimise γ·forget_loss(D_f batch) + α·retain_term(paired D_r batch) with train.train; returns the model."""
    work = apply_lora(model, cfg, lora_targets)
    use_retain = alpha > 0 and retain != "none"
    stream = retain_stream(data.retain, cfg.batch_size, ctx.seed, key) if use_retain else None
    reg = retain_term(retain, task, ref, kl_tokens) if use_retain else None

    def loss_fn(m: nn.Module, fb: dict) -> torch.Tensor:
        loss = gamma * forget_loss(m, fb)
        if stream is not None:
            loss = loss + alpha * reg(m, next(stream))
        return loss

    chosen = params(work) if params is not None else None
    train(work, forget_ds if forget_ds is not None else data.forget, recipe(cfg, ctx), task, seed=ctx.seed, key=key,
          loss_fn=loss_fn, what=key, params=chosen)
    return merge_lora(work)


def idk_field() -> Any:
    """The refusal-file choice field of the 'I don't know' methods."""
    return param("", "file of refusal answers, one per line ('' = TOFU's idontknow.jsonl when available, else a "
                     "built-in list)")


class RedrawnIdk(Dataset):
    """D_f's questions with a refusal drawn afresh at every read of an example (so every epoch), seeded by (seed,
    key, example, read count); the first read gives `fixed`'s refusal."""

    def __init__(self, fixed: Dataset, answers: list[str], seed: int, key: str):
        self.fixed, self.answers, self.seed, self.key = fixed, answers, seed, key
        self.reads = [0] * len(fixed)
        self.encoded: dict[tuple[int, int], dict] = {}

    def __len__(self) -> int:
        return len(self.fixed)

    def draw(self, i: int, k: int) -> int:
        """The refusal index of the k-th read of example i (k >= 1)."""
        h = hashlib.sha256(f"{self.seed}:{self.key}:idk:{i}:{k}".encode()).digest()
        return int.from_bytes(h[:8], "big") % len(self.answers)

    def __getitem__(self, i: int) -> dict:
        from ..models.lm_format import encode_qa

        k, self.reads[i] = self.reads[i], self.reads[i] + 1
        if k == 0:
            return self.fixed[i]
        j = self.draw(i, k)
        if (i, j) not in self.encoded:
            self.encoded[(i, j)] = encode_qa(self.fixed.tokenizer, self.fixed.rows[i]["question"], self.answers[j],
                                             max_length=self.fixed.max_length)
        return self.encoded[(i, j)]

    def collate(self, features: list[dict]) -> dict:
        """The fixed dataset's padding collate."""
        return self.fixed.collate(features)


def idk_dataset(forget: Dataset, idk_file: str, seed: int, key: str, draw: str = "fixed") -> Dataset:
    """D_f's questions answered by seeded "I don't know" answers (TOFU's idontknow.jsonl): one per example for the
    whole run (draw='fixed'), or a fresh one at every epoch (draw='per_read', as TOFU's and OpenUnlearning's
    QAwithIdkDataset, which call randint in __getitem__)."""
    from ..data.qa import QADataset
    from ..data.tofu import idk_answers, read_idk
    from ..seeding import numpy_rng

    if not hasattr(forget, "rows") or not forget.rows or "question" not in forget.rows[0]:
        raise ConfigError("This method needs question/answer forget data (e.g. --task qa); document corpora have "
                          "no questions to answer with 'I don't know'.")
    answers = read_idk(idk_file) if idk_file else idk_answers()
    pick = numpy_rng(seed, key, "idk-answers").integers(len(answers), size=len(forget.rows))
    rows = [{**r, "answer": answers[int(j)]} for r, j in zip(forget.rows, pick, strict=True)]
    fixed = QADataset(rows, forget.tokenizer, max_length=forget.max_length)
    return RedrawnIdk(fixed, answers, seed, key) if draw == "per_read" else fixed


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a HF causal LM (model.model.layers for Llama-style models)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj: Any = base
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise ConfigError(f"Cannot find the transformer blocks of {type(base).__name__}; RMU supports Llama-, "
                      "GPT-2-, GPT-NeoX- and OPT-style models.")


def param_regex(model: nn.Module, pattern: str) -> list[nn.Parameter]:
    """Parameters whose names match `pattern`; raises when none do."""
    rx = re.compile(pattern)
    out = [p for n, p in model.named_parameters() if rx.search(n)]
    if not out:
        raise ConfigError(f"No parameter name matches {pattern!r}; check the layer index for this model.")
    return out


__all__ = ["LMUnlearnConfig", "OU", "LM_TRAINING", "lm_training_defaults", "idk_field", "RedrawnIdk",
           "retain_field", "Indexed", "retain_stream", "frozen_copy", "precompute_logprobs", "answer_kl",
           "retain_term", "apply_lora", "merge_lora", "run_forget_retain", "idk_dataset", "decoder_layers",
           "param_regex"]
