"""Batched teacher-forced statistics and batched generation for causal LMs (all metrics read these arrays).

`teacher_forced` runs one right-padded forward pass per batch and keeps, for every answer token (label != -100),
its log-probability, whether it is the argmax, and the mean / variance of the log-probability under the model's
own next-token distribution at that position (for Min-K%++, Zhang et al. 2024). Padding never changes a value:
examples are grouped by length and each token sees only its own prefix. `generate` decodes greedily or by
temperature / top-p sampling from left-padded prompts with a KV cache and a seeded torch.Generator.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, check


@dataclasses.dataclass
class TokenStats:
    """Per-token answer statistics of n examples, stored flat: example i owns tokens offsets[i]:offsets[i+1]."""

    logprob: np.ndarray   # log p(y_t | y_<t, x)
    correct: np.ndarray   # argmax == y_t
    mu: np.ndarray        # E_{z~p}[log p(z)] at the position
    var: np.ndarray       # Var_{z~p}[log p(z)] at the position
    offsets: np.ndarray   # int64, length n + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of answer tokens per example."""
        return np.diff(self.offsets)

    def padded(self, field: str, fill: float = np.nan) -> np.ndarray:
        """An [n, max_len] matrix of `field` with `fill` after each example's last token."""
        vals = getattr(self, field)
        lens = self.lengths
        out = np.full((len(lens), int(lens.max(initial=0))), fill, dtype=np.float64)
        out[np.arange(out.shape[1])[None, :] < lens[:, None]] = vals
        return out

    def sums(self, field: str) -> np.ndarray:
        """Per-example sum of `field`."""
        cum = np.concatenate([[0.0], np.cumsum(getattr(self, field), dtype=np.float64)])
        return cum[self.offsets[1:]] - cum[self.offsets[:-1]]

    @property
    def nll(self) -> np.ndarray:
        """Mean token NLL of each answer (TOFU's avg_gt_loss)."""
        return -self.sums("logprob") / np.maximum(self.lengths, 1)

    @property
    def p_bar(self) -> np.ndarray:
        """Length-normalised probability p̄ = exp(−mean NLL)."""
        return np.exp(-self.nll)

    def drop_last(self) -> TokenStats:
        """The statistics without each example's final answer token (its EOS when the answer ends in one).

        OpenUnlearning's `tokenwise_logprobs` (Min-K%, Min-K%++, exact memorisation, extraction strength) keeps the
        labelled positions up to the second-to-last one, so the final labelled token never counts there. An
        example with a single answer token keeps it (the reference would score an empty sequence)."""
        lens = self.lengths
        keep = np.ones(len(self.logprob), dtype=bool)
        keep[self.offsets[1:][lens > 1] - 1] = False
        offsets = np.concatenate([[0], np.cumsum(np.where(lens > 1, lens - 1, lens))]).astype(np.int64)
        return TokenStats(self.logprob[keep], self.correct[keep], self.mu[keep], self.var[keep], offsets)

    def select(self, idx: Sequence[int] | np.ndarray) -> TokenStats:
        """The statistics of examples `idx`, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        parts = [np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]
        tok = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(self.lengths[idx])]).astype(np.int64)
        return TokenStats(self.logprob[tok], self.correct[tok], self.mu[tok], self.var[tok], offsets)


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _accepts(model: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _check_features(features: Sequence[dict[str, Any]]) -> None:
    for i, f in enumerate(features):
        labels = f.get("labels")
        check(labels is not None and any(int(t) != -100 for t in labels), ConfigError,
              f"Example {i} has no answer tokens (all labels are -100); encode it with encode_qa / encode_text "
              "so that its answer is labelled.")


def _batch_stats(model: nn.Module, batch: dict[str, torch.Tensor], keep: bool) -> tuple[torch.Tensor, ...]:
    """Token statistics of one right-padded batch, for the answer positions only, in row-major order."""
    dev = _device(model)
    ids, mask, labels = (batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels"))
    target = labels[:, 1:]
    sel = target != -100
    start = int(sel.any(0).nonzero()[0]) if keep else 0  # first position (over the batch) that predicts an answer
    kwargs = {"logits_to_keep": ids.shape[1] - start} if keep else {}
    logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits
    logits = logits[:, -(ids.shape[1] - start):] if keep else logits
    logits = logits[:, : ids.shape[1] - 1 - start]  # position t predicts token t+1
    sel = sel[:, start:]
    logp = torch.log_softmax(logits[sel].float(), dim=-1)  # [n_tokens, V]
    y = target[:, start:][sel]
    tok = logp.gather(1, y[:, None])[:, 0]
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = (p * logp.square()).sum(-1) - mu.square()
    return tok, logp.argmax(-1) == y, mu, var, sel.sum(1)


@torch.no_grad()
def teacher_forced(model: nn.Module, features: Sequence[dict[str, Any]], pad_id: int,
                   batch_size: int = 16) -> TokenStats:
    """Answer-token statistics of every encoded example (one padded forward pass per batch of `batch_size`)."""
    from ..models.lm_format import collate

    check(batch_size >= 1, ConfigError, f"batch_size must be >= 1. Got {batch_size} instead.")
    _check_features(features)
    n = len(features)
    if n == 0:
        z = np.zeros(0)
        return TokenStats(z, z.astype(bool), z, z, np.zeros(1, dtype=np.int64))
    was_training = model.training
    model.eval()
    keep = _accepts(model, "logits_to_keep")
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")  # little padding per batch
    chunks: list[tuple[np.ndarray, ...]] = [()] * n
    for s in range(0, n, batch_size):
        rows = order[s:s + batch_size]
        batch = collate([{k: features[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in rows],
                        pad_id)
        tok, cor, mu, var, counts = (t.cpu().numpy() for t in _batch_stats(model, batch, keep))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for j, i in enumerate(rows):
            a, b = bounds[j], bounds[j + 1]
            chunks[i] = (tok[a:b], cor[a:b], mu[a:b], var[a:b])
    model.train(was_training)
    cat = [np.concatenate([c[k] for c in chunks]) for k in range(4)]
    offsets = np.concatenate([[0], np.cumsum([len(c[0]) for c in chunks])]).astype(np.int64)
    return TokenStats(cat[0].astype(np.float64), cat[1].astype(bool), cat[2].astype(np.float64),
                      cat[3].astype(np.float64), offsets)


def _sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> torch.Tensor:
    """Next token per row: argmax when temperature == 0, else nucleus sampling (Holtzman et al. 2020)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        drop = sp.cumsum(-1) - sp >= top_p  # keep the smallest prefix whose mass reaches top_p
        sp = sp.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs.cpu(), 1, generator=gen)[:, 0].to(logits.device)


def _kv_cache(out: Any) -> Any:
    """The key/value cache of a forward output: `.cache` (newer transformers) or `.past_key_values`."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def _generate_batch(model: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int, eos: set[int],
                    max_new_tokens: int, temperature: float, top_p: float,
                    gen: torch.Generator | None) -> list[list[int]]:
    dev = _device(model)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=dev)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    last = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}  # the prompt's last position only
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **last)
    cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"  # transformers >= 5.x renamed it
    done = torch.zeros(len(prompts), dtype=torch.bool, device=dev)
    new: list[torch.Tensor] = []
    eos_t = torch.tensor(sorted(eos), device=dev) if eos else None
    for step in range(max_new_tokens):
        nxt = _sample(out.logits[:, -1], temperature, top_p, gen)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        new.append(nxt)
        if eos_t is not None:
            done |= torch.isin(nxt, eos_t)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, use_cache=True,
                    **{cache_kw: _kv_cache(out)})
    toks = torch.stack(new, 1).cpu().tolist() if new else [[] for _ in prompts]
    result = []
    for row in toks:
        cut = next((i for i, t in enumerate(row) if t in eos), len(row))
        result.append(row[:cut])
    return result


def generate(model: nn.Module, prompts: Sequence[Sequence[int]], *, pad_id: int, eos_ids: Sequence[int] = (),
             max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 16,
             generator: torch.Generator | None = None) -> list[list[int]]:
    """New token ids (EOS and after removed) for each prompt: greedy if temperature == 0, else sampled."""
    check(max_new_tokens >= 1, ConfigError, f"max_new_tokens must be >= 1. Got {max_new_tokens} instead.")
    check(temperature >= 0, ConfigError, f"temperature must be >= 0. Got {temperature} instead.")
    check(0 < top_p <= 1, ConfigError, f"top_p must lie in (0, 1]. Got {top_p} instead.")
    check(all(len(p) for p in prompts), ConfigError, "Every prompt needs at least one token.")
    was_training = model.training
    model.eval()
    eos = {int(e) for e in eos_ids}
    out: list[list[int]] = []
    for s in range(0, len(prompts), batch_size):
        out += _generate_batch(model, prompts[s:s + batch_size], pad_id, eos, max_new_tokens, temperature,
                               top_p, generator)
    model.train(was_training)
    return out


def eos_ids_of(model: nn.Module, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the tokenizer's EOS plus any in the model's generation config."""
    ids = {int(tokenizer.eos_token_id)} if getattr(tokenizer, "eos_token_id", None) is not None else set()
    gc_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gc_eos is not None:
        ids |= {int(e) for e in (gc_eos if isinstance(gc_eos, (list, tuple)) else [gc_eos])}
    return sorted(ids)


def generate_text(model: nn.Module, tokenizer: Any, prompts: Sequence[Sequence[int]], **kwargs: Any) -> list[str]:
    """`generate`, decoded to text (generated tokens only, special tokens skipped)."""
    from ..models.lm_format import pad_id

    kwargs.setdefault("eos_ids", eos_ids_of(model, tokenizer))
    toks = generate(model, prompts, pad_id=pad_id(tokenizer), **kwargs)
    return [tokenizer.decode(t, skip_special_tokens=True).strip() for t in toks]


__all__ = ["TokenStats", "eos_ids_of", "generate", "generate_text", "teacher_forced"]
