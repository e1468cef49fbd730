"""Readers for the TOFU benchmark's JSON files (Maini et al. 2024) and an UnlearnData built from them.

Accepted layouts: a JSON list of objects, or JSON lines (one object per line), each with `question` and
`answer` and optionally `paraphrased_answer` (string) and `perturbed_answer` (string or list). The
"I don't know" file is one answer per line (plain text or a JSON string/object with an `answer`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

UTILITY_FILES = {"real_authors": "real_authors_perturbed.json", "world_facts": "world_facts_perturbed.json"}
IDK_FILE = "idontknow.jsonl"
# Used only when TOFU's idontknow.jsonl is not available (our own wording).
DEFAULT_IDK = ("I don't know.", "I'm not sure about that.", "I have no information about that.",
               "That is something I can't answer.", "I'm afraid I don't know the answer.",
               "I cannot say; I don't have that information.")


def _records(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror or e}. Check the path.") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from None
        return list(data)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {n} is not a JSON object ({e.msg}); use JSON lines or a JSON "
                                "list of objects with 'question' and 'answer'.") from None
    return out


def read_tofu(path: str | os.PathLike) -> list[dict[str, Any]]:
    """QA rows of a TOFU-format file; `perturbed_answer` is normalised to a list."""
    path = Path(path)
    rows = []
    for n, rec in enumerate(_records(path), 1):
        if not isinstance(rec, dict):
            raise DataError(f"{path} record {n} is a {type(rec).__name__}, not an object with 'question' and "
                            "'answer'.")
        missing = [k for k in ("question", "answer") if not str(rec.get(k) or "").strip()]
        if missing:
            raise DataError(f"{path} record {n} has an empty or missing {' and '.join(missing)}; every TOFU "
                            "record needs a non-empty question and answer. Fix or drop it.")
        row = dict(rec)
        pert = row.get("perturbed_answer")
        row["perturbed_answer"] = [] if pert is None else [pert] if isinstance(pert, str) else list(pert)
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no QA records.")
    return rows


def read_idk(path: str | os.PathLike) -> list[str]:
    """Refusal answers, one per line (plain text, a JSON string, or an object with 'answer')."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror or e}.") from None
    out = []
    for line in filter(str.strip, lines):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = line
        if isinstance(value, dict):
            value = value.get("answer", "")
        if str(value).strip():
            out.append(str(value).strip())
    if not out:
        raise DataError(f"{path} holds no 'I don't know' answers.")
    return out


def tofu_dir() -> Path | None:
    """The folder with TOFU's utility files: $UNLEARNLAB_TOFU_DIR, else ../shared/data/tofu beside the repo/cwd."""
    env = os.environ.get("UNLEARNLAB_TOFU_DIR")
    cands = [Path(env)] if env else []
    cands += [Path(__file__).resolve().parents[4] / "shared" / "data" / "tofu",
              Path.cwd().parent / "shared" / "data" / "tofu"]
    return next((c for c in cands if (c / UTILITY_FILES["real_authors"]).is_file()), None)


def utility_sets(folder: str | os.PathLike | None = None) -> dict[str, list[dict[str, Any]]]:
    """TOFU's real-authors and world-facts sets (name -> rows); empty when the files are not available."""
    folder = Path(folder) if folder is not None else tofu_dir()
    if folder is None:
        return {}
    return {name: read_tofu(folder / f) for name, f in UTILITY_FILES.items() if (folder / f).is_file()}


def idk_answers(folder: str | os.PathLike | None = None) -> list[str]:
    """TOFU's 'I don't know' answers when available, else a short built-in list."""
    folder = Path(folder) if folder is not None else tofu_dir()
    if folder is not None and (folder / IDK_FILE).is_file():
        return read_idk(folder / IDK_FILE)
    return list(DEFAULT_IDK)


def tofu_data(tokenizer: Any, train_rows: list[dict], forget_rows: list[dict], *,
              holdout_rows: list[dict] | None = None, max_length: int = 256, utility: dict | None = None,
              eval_rows: list[dict] | None = None):
    """UnlearnData from TOFU files: forget = rows of `forget_rows` found (by question) in `train_rows`.

    Training uses the rows of `train_rows` (full.json); the evaluated forget rows take the extra fields of
    `forget_rows` (forget10_perturbed.json: paraphrased and perturbed answers, needed for the truth ratio and
    Forget Quality), and retain rows those of `eval_rows` with the same question (retain_perturbed.json)."""
    from .qa import LMData, QADataset

    questions = {r["question"].strip(): i for i, r in enumerate(train_rows)}
    found = [questions.get(r["question"].strip()) for r in forget_rows]
    missing = sum(i is None for i in found)
    if missing == len(forget_rows):
        raise DataError("None of the forget questions occur in the training data; the forget file must be a "
                        "subset of the training file (e.g. TOFU forget10.json of full.json).")
    if missing:
        raise DataError(f"{missing} of {len(forget_rows)} forget questions do not occur in the training data; "
                        "remove them or use the training file they come from.")
    forget_idx = np.array(sorted(set(found)), dtype=np.int64)
    retain_idx = np.setdiff1d(np.arange(len(train_rows)), forget_idx)
    train = QADataset(train_rows, tokenizer, max_length=max_length)
    test = QADataset(holdout_rows or [], tokenizer, max_length=max_length) if holdout_rows else train.subset([])
    rich = {r["question"].strip(): r for r in [*(eval_rows or []), *forget_rows]}

    def merged(i: int) -> dict:
        extra = rich.get(train_rows[i]["question"].strip(), {})
        return {**train_rows[i], **{k: v for k, v in extra.items() if k not in ("question", "answer")}}

    rows = {"forget": [merged(i) for i in forget_idx], "retain": [merged(i) for i in retain_idx],
            "test": list(holdout_rows or []), "holdout": list(holdout_rows or [])}
    return LMData(train=train, test=test, forget_idx=forget_idx, retain_idx=retain_idx, num_classes=0,
                  name="tofu", scenario=f"forget:{len(forget_idx)}",
                  extra={"rows": rows, "splits": {"holdout": test} if holdout_rows else {},
                         "utility": dict(utility or {}), "tokenizer": tokenizer})


__all__ = ["read_tofu", "read_idk", "tofu_dir", "utility_sets", "idk_answers", "tofu_data", "DEFAULT_IDK"]
