"""Plain-text corpora (MUSE-style forget / retain / holdout documents), chunked to max_length tokens.

MUSE (Shi et al. 2024) unlearns raw documents (news articles, books): every token is a training target, so
labels = input_ids. Documents come from a folder of .txt files (one document per file), a single .txt file
(documents separated by blank lines), or a list of strings. The `val:` form of a corpus (for tuning) forgets a
seeded subset of as many retain documents instead, and keeps the forget documents in the retain set.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..seeding import numpy_rng
from .core import TokenDataset


def read_documents(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """Documents from a folder of .txt files (sorted by name), a .txt file (blank-line separated) or a list."""
    if isinstance(source, (list, tuple)):
        docs = [str(d) for d in source]
    else:
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.txt"))
            if not files:
                raise DataError(f"Folder {path} has no .txt documents; put one document per .txt file there.")
            docs = [f.read_text(encoding="utf-8") for f in files]
        elif path.is_file():
            docs = [d for d in path.read_text(encoding="utf-8").split("\n\n")]
        else:
            raise DataError(f"Corpus {path} does not exist; pass a folder of .txt files, a .txt file or a list.")
    docs = [d.strip() for d in docs if d.strip()]
    if not docs:
        raise DataError(f"The corpus {source!r} holds no non-empty documents.")
    return docs


def chunk_document(tokenizer: Any, text: str, max_length: int) -> list[dict[str, list[int]]]:
    """Consecutive windows of `max_length` tokens of one document (labels = input_ids); tails < 2 tokens dropped."""
    from ..models.lm_format import LMDataError, context_limit

    if max_length < 2:
        raise LMDataError(f"max_length must be >= 2 tokens to train on a document; got {max_length}.")
    width = context_limit(tokenizer, max_length)
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    out = []
    for s in range(0, len(ids), width):
        part = ids[s:s + width]
        if len(part) >= 2:
            out.append({"input_ids": part, "attention_mask": [1] * len(part), "labels": list(part)})
    return out


class TextDataset(TokenDataset):
    """Token chunks of documents; `.docs` holds the raw text and `.doc_of` the document of each chunk."""

    per_item = ("items", "doc_of")

    def __init__(self, docs: Sequence[str], tokenizer: Any, *, max_length: int = 256):
        from ..models.lm_format import pad_id

        self.docs = list(docs)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad = pad_id(tokenizer)
        self.items: list[dict[str, list[int]]] = []
        self.doc_of: list[int] = []
        for d, text in enumerate(self.docs):
            chunks = chunk_document(tokenizer, text, max_length)
            self.items += chunks
            self.doc_of += [d] * len(chunks)


def validation_documents(n_forget: int, n_retain: int, seed: int = 0) -> np.ndarray:
    """Sorted indices into the retain documents of the `val:` forget set: a seeded subset of `n_forget` of them."""
    if n_retain <= n_forget:
        raise DataError(f"val: needs {n_forget} retain document(s) as a validation forget set with some left to "
                        f"retain, but the retain corpus has only {n_retain}; add retain documents.")
    return np.sort(numpy_rng(seed, "corpus-val", n_forget).choice(n_retain, size=n_forget, replace=False))


def corpus_data(tokenizer: Any, forget: str | os.PathLike | Sequence[str], retain: str | os.PathLike | Sequence[str],
                holdout: str | os.PathLike | Sequence[str] | None = None, *, max_length: int = 256,
                validation_seed: int | None = None):
    """UnlearnData over documents: train = forget + retain chunks, test = holdout chunks (MIA non-members).

    validation_seed (the `val:` form): D_f = `validation_documents` of the retain corpus; the forget documents are
    retained. The training documents and their order stay the same."""
    from .qa import LMData

    f_docs, r_docs = read_documents(forget), read_documents(retain)
    overlap = set(f_docs) & set(r_docs)
    if overlap:
        raise DataError(f"{len(overlap)} document(s) occur in both the forget and the retain corpus; a document "
                        "must be in only one of them.")
    docs = f_docs + r_docs
    train = TextDataset(docs, tokenizer, max_length=max_length)
    gone = np.arange(len(f_docs)) if validation_seed is None else \
        len(f_docs) + validation_documents(len(f_docs), len(r_docs), validation_seed)
    in_forget = np.isin(np.asarray(train.doc_of), gone)
    forget_idx, retain_idx = np.flatnonzero(in_forget), np.flatnonzero(~in_forget)
    h_docs = read_documents(holdout) if holdout is not None else []
    test = TextDataset(h_docs, tokenizer, max_length=max_length)
    kept = np.setdiff1d(np.arange(len(docs)), gone)
    return LMData(train=train, test=test, forget_idx=forget_idx, retain_idx=retain_idx, num_classes=0,
                  name="corpus", scenario=f"{'' if validation_seed is None else 'val:'}docs:{len(f_docs)}",
                  extra={"docs": {"forget": [docs[i] for i in gone], "retain": [docs[i] for i in kept],
                                  "holdout": h_docs},
                         "splits": {"holdout": test} if h_docs else {}, "tokenizer": tokenizer})


__all__ = ["read_documents", "chunk_document", "TextDataset", "corpus_data", "validation_documents"]
