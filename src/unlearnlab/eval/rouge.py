"""ROUGE-L (longest common subsequence) and ROUGE-1 on word tokens, as the unlearning benchmarks compute them.

Definitions (Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries"): for a reference y and a
candidate ŷ as token lists, ROUGE-L recall = LCS(y, ŷ)/|y|, precision = LCS/|ŷ|, F1 = 2PR/(P+R); ROUGE-1 uses the
clipped unigram overlap Σ_w min(c_y(w), c_ŷ(w)) instead of the LCS.

Protocols (which code produced the published numbers):
- TOFU and OpenUnlearning: Google's `rouge_score` ROUGE-L **recall with Porter stemming** (`use_stemmer=True`).
- MUSE (KnowMem, VerbMem): `rouge_score` ROUGE-L **F1 without stemming** (`use_stemmer=False`).
`stemmer=` picks the tokenisation per call. Backend: `rouge_score` (a dependency of the `llm` extra) is used
whenever it is installed. The built-in implementation applies `rouge_score`'s tokenisation (lowercase, every run
of characters outside [a-z0-9] is a separator) without stemming, so it equals `rouge_score` for `stemmer=False`
(a test checks this); asking it for stemming raises a ConfigError instead of silently scoring differently.
`scorer_name(stemmer)` names what produced a number, and every language-model run records it.
The built-in LCS uses the bit-parallel algorithm of Allison & Dix (1986) / Hyyrö (2004) on Python integers:
O(|ŷ|·⌈|y|/64⌉) word operations instead of an O(|y|·|ŷ|) Python DP table.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, check

_SEPARATOR = re.compile(r"[^a-z0-9]+")
BACKEND = "rouge_score" if importlib.util.find_spec("rouge_score") is not None else "builtin"
_SCORERS: dict[bool, object] = {}


class Score(NamedTuple):
    """Precision, recall and F1 of one candidate against one reference."""

    precision: float
    recall: float
    fmeasure: float


def scorer_name(stemmer: bool, backend: str | None = None) -> str:
    """A label for the scorer behind a number: 'rouge_score 0.1.2 (stemmer)' or 'builtin (no stemmer)'."""
    b = backend or BACKEND
    version = f" {importlib.metadata.version('rouge-score')}" if b == "rouge_score" else ""
    return f"{b}{version} ({'stemmer' if stemmer else 'no stemmer'})"


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens: runs of [a-z0-9], as in rouge_score's default tokenizer (without stemming)."""
    return [t for t in _SEPARATOR.split(text.lower()) if t]


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of `a` and `b` (bit-parallel, exact)."""
    if len(a) < len(b):
        a, b = b, a  # bit vectors over the longer sequence: fewer loop iterations
    if not b:
        return 0
    masks: dict = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _prf(overlap: int, n_ref: int, n_cand: int) -> Score:
    if n_ref == 0 or n_cand == 0:
        return Score(0.0, 0.0, 0.0)
    p, r = overlap / n_cand, overlap / n_ref
    return Score(p, r, 0.0 if p + r == 0 else 2 * p * r / (p + r))


def _scorer(stemmer: bool):
    if stemmer not in _SCORERS:
        from rouge_score import rouge_scorer  # the llm extra installs it

        _SCORERS[stemmer] = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=stemmer)
    return _SCORERS[stemmer]


def _backend(backend: str | None, stemmer: bool) -> str:
    b = backend or BACKEND
    check(b in ("rouge_score", "builtin"), ConfigError, f"backend must be rouge_score or builtin. Got {b!r} instead.")
    if b == "rouge_score":  # BACKEND holds the one import check, not repeated per scored pair
        check(BACKEND == "rouge_score", ConfigError,
              "The rouge_score backend needs the rouge-score package: pip install 'unlearnlab[llm]'.")
    check(b == "rouge_score" or not stemmer, ConfigError,
          "ROUGE with Porter stemming (the TOFU / OpenUnlearning protocol) needs the rouge-score package, which "
          "the built-in scorer does not replace: pip install 'unlearnlab[llm]' (or pass stemmer=False).")
    return b


def rouge_l(reference: str, candidate: str, *, stemmer: bool = True, backend: str | None = None) -> Score:
    """ROUGE-L precision / recall / F1 of `candidate` against `reference` (stemmer: TOFU True, MUSE False)."""
    if _backend(backend, stemmer) == "rouge_score":
        s = _scorer(stemmer).score(reference, candidate)["rougeL"]
        return Score(s.precision, s.recall, s.fmeasure)
    ref, cand = tokenize(reference), tokenize(candidate)
    return _prf(lcs_length(ref, cand), len(ref), len(cand))


def rouge_1(reference: str, candidate: str, *, stemmer: bool = True, backend: str | None = None) -> Score:
    """ROUGE-1 (clipped unigram overlap) precision / recall / F1 of `candidate` against `reference`."""
    if _backend(backend, stemmer) == "rouge_score":
        s = _scorer(stemmer).score(reference, candidate)["rouge1"]
        return Score(s.precision, s.recall, s.fmeasure)
    ref, cand = tokenize(reference), tokenize(candidate)
    overlap = sum((Counter(ref) & Counter(cand)).values())
    return _prf(overlap, len(ref), len(cand))


_FIELDS = {"precision": 0, "recall": 1, "f1": 2, "fmeasure": 2}


def rouge_l_batch(references: Sequence[str], candidates: Sequence[str], field: str = "recall",
                  *, stemmer: bool = True, backend: str | None = None) -> np.ndarray:
    """ROUGE-L `field` ('recall', 'precision' or 'f1') of each candidate against its reference."""
    check(field in _FIELDS, ConfigError, f"field must be one of recall, precision, f1. Got {field!r} instead.")
    check(len(references) == len(candidates), ConfigError,
          f"{len(references)} references but {len(candidates)} candidates; pass one candidate per reference.")
    j = _FIELDS[field]
    return np.array([rouge_l(r, c, stemmer=stemmer, backend=backend)[j] for r, c in zip(references, candidates)],
                    dtype=np.float64)


__all__ = ["BACKEND", "Score", "lcs_length", "rouge_1", "rouge_l", "rouge_l_batch", "scorer_name", "tokenize"]
