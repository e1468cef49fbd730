"""MUSE's generation metrics (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation"), as its code runs them.

- KnowMem: each question is asked in MUSE's plain-text few-shot format, not the chat template: the in-context
  examples as "Question: {q}\\nAnswer: {a}\\n\\n", then "Question: {q}\\nAnswer: " (tokenised with the special
  tokens, i.e. with BOS). Greedy decoding up to 32 new tokens; the output is cut before the first "\\n\\n",
  "\\nQuestion" or "Question:" (MUSE's `get_prefix_before_words_occur`); score = ROUGE-L F1 against the answer
  with `rouge_score` **without stemming**. MUSE ships its in-context examples per split (`knowmem/*_qa_icl.json`);
  `data.extra["knowmem_icl"]` = {"forget": rows, "retain": rows} supplies them. Without them we take the first
  `shots` holdout rows (questions never trained on, so they demonstrate the format without leaking an answer).
- VerbMem: MUSE's `verbmem/forget.json` holds fixed {"prompt", "gt"} pairs (`data.extra["verbmem"]`): the prompt
  (with special tokens) is continued greedily for 128 new tokens and scored by ROUGE-L F1 (no stemming) against
  the ground truth cut to its first 128 tokens, as MUSE's `eval_verbmem` does. Without pairs, each forget document
  is split at `prefix` tokens into prompt and continuation (our construction for corpora that lack the file).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from ..errors import DataError, check
from .lm_outputs import eos_ids_of, generate
from .rouge import rouge_l_batch

STOP = ("\n\n", "\nQuestion", "Question:")


def cut_at_stop(text: str, stops: Sequence[str] = STOP) -> str:
    """`text` up to the first occurrence of any stop string (MUSE's get_prefix_before_words_occur)."""
    for s in stops:
        text = text.split(s)[0]
    return text


def knowmem_prompt(question: str, icl: Sequence[dict]) -> str:
    """MUSE's few-shot KnowMem prompt for `question` with the in-context rows `icl`."""
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl)
    return shots + f"Question: {question}\nAnswer: "


def _texts(model: nn.Module, tokenizer: Any, prompts: Sequence[str], new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of plain-text prompts (special tokens added), decoded without stripping."""
    from ..models.lm_format import pad_id

    ids = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    toks = generate(model, ids, pad_id=pad_id(tokenizer), eos_ids=eos_ids_of(model, tokenizer),
                    max_new_tokens=new_tokens, batch_size=batch_size)
    return [tokenizer.decode(t, skip_special_tokens=True, clean_up_tokenization_spaces=True) for t in toks]


def knowmem_answers(model: nn.Module, tokenizer: Any, rows: Sequence[dict], icl: Sequence[dict], *,
                    new_tokens: int = 32, batch_size: int = 16) -> list[str]:
    """MUSE KnowMem outputs for `rows`: few-shot prompt, greedy, cut at the stop strings."""
    outs = _texts(model, tokenizer, [knowmem_prompt(r["question"], icl) for r in rows], new_tokens, batch_size)
    return [cut_at_stop(o) for o in outs]


def knowmem(answers: Sequence[str], outputs: Sequence[str]) -> float:
    """KnowMem: mean ROUGE-L F1 (no stemming, MUSE) of the outputs against the answers."""
    return float(rouge_l_batch(answers, outputs, "f1", stemmer=False).mean())


def verbmem_pairs(tokenizer: Any, pairs: Sequence[dict] | None, docs: Sequence[str], prefix: int,
                  new_tokens: int) -> tuple[list[str], list[str]]:
    """(prompts, ground truths) for VerbMem: MUSE's pairs (gt cut to `new_tokens` tokens) or split documents."""
    if pairs:
        for i, p in enumerate(pairs):
            check(isinstance(p, dict) and isinstance(p.get("prompt"), str) and isinstance(p.get("gt"), str),
                  DataError, f"VerbMem pair {i} must be a dict with string 'prompt' and 'gt' (MUSE's "
                  f"verbmem/forget.json); got {p!r:.120}.")
        gts = [tokenizer.decode(tokenizer(p["gt"], add_special_tokens=True)["input_ids"][:new_tokens],
                                skip_special_tokens=True, clean_up_tokenization_spaces=True) for p in pairs]
        return [p["prompt"] for p in pairs], gts
    from ..models.lm_format import encode_text

    ids = [encode_text(tokenizer, t, max_length=prefix + new_tokens)["input_ids"] for t in docs]
    ids = [d for d in ids if len(d) > prefix]
    check(bool(ids), DataError, f"VerbMem needs forget documents longer than verbmem_prefix={prefix} tokens.")
    return ([tokenizer.decode(d[:prefix], skip_special_tokens=True) for d in ids],
            [tokenizer.decode(d[prefix:], skip_special_tokens=True) for d in ids])


def verbmem(model: nn.Module, tokenizer: Any, prompts: Sequence[str], gts: Sequence[str], *, new_tokens: int = 128,
            batch_size: int = 16) -> float:
    """VerbMem: mean ROUGE-L F1 (no stemming) of greedy continuations against the ground truths."""
    outs = _texts(model, tokenizer, prompts, new_tokens, batch_size)
    return float(np.mean(rouge_l_batch(gts, outs, "f1", stemmer=False)))


__all__ = ["STOP", "cut_at_stop", "knowmem", "knowmem_answers", "knowmem_prompt", "verbmem", "verbmem_pairs"]
