"""Readers for the TOFU benchmark's JSON files (Maini et al. 2024) and an UnlearnData built from them.

Accepted layouts: a JSON list of objects, or JSON lines (one object per line), each with `question` and
`answer` and optionally `paraphrased_answer` (string), `perturbed_answer` (string or list) and `author`. The
"I don't know" file is one answer per line (plain text or a JSON string/object with an `answer`).
`validation_rows` picks the `val:` forget set of a tuning run: as many of TOFU's retain authors as the forget file
has, never one of a forget file or of the holdout.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..seeding import numpy_rng

UTILITY_FILES = {"real_authors": "real_authors_perturbed.json", "world_facts": "world_facts_perturbed.json"}
IDK_FILE = "idontknow.jsonl"
QA_PER_AUTHOR = 20  # TOFU's layout: full.json holds 200 authors x 20 consecutive questions
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
    return tofu_rows(_records(path), str(path))


def tofu_rows(records: Sequence[Any], origin: str) -> list[dict[str, Any]]:
    """Checked QA rows from TOFU records (`origin` names them in errors); `perturbed_answer` becomes a list."""
    rows = []
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            raise DataError(f"{origin} record {n} is a {type(rec).__name__}, not an object with 'question' and "
                            "'answer'.")
        missing = [k for k in ("question", "answer") if not str(rec.get(k) or "").strip()]
        if missing:
            raise DataError(f"{origin} record {n} has an empty or missing {' and '.join(missing)}; every TOFU "
                            "record needs a non-empty question and answer. Fix or drop it.")
        row = dict(rec)
        pert = row.get("perturbed_answer")
        row["perturbed_answer"] = [] if pert is None else [pert] if isinstance(pert, str) else list(pert)
        rows.append(row)
    if not rows:
        raise DataError(f"{origin} holds no QA records.")
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


def row_authors(rows: list[dict]) -> list[str]:
    """The author of each training row: its 'author' field, else TOFU's layout of 20 consecutive questions each."""
    if all(str(r.get("author") or "").strip() for r in rows):
        return [str(r["author"]).strip() for r in rows]
    if len(rows) % QA_PER_AUTHOR:
        raise DataError(f"val: needs the author of every training row: give each row an 'author' field, or keep "
                        f"TOFU's layout of {QA_PER_AUTHOR} consecutive questions per author (this training file has "
                        f"{len(rows)} rows, not a multiple of {QA_PER_AUTHOR}).")
    return [f"author {i // QA_PER_AUTHOR}" for i in range(len(rows))]


def validation_rows(train_rows: list[dict], forget_rows: list[dict], *, seed: int = 0,
                    exclude: Sequence[dict] = (), eval_rows: list[dict] | None = None) -> list[dict]:
    """The `val:` forget rows of `forget_rows`: as many whole authors, drawn (seeded) from the retain authors of
    `train_rows` that have no question in `forget_rows` or `exclude` (other forget files, the holdout), with the
    paraphrased / perturbed answers of `eval_rows` (retain_perturbed.json) when the forget rows carry them."""
    authors = row_authors(train_rows)
    where = {r["question"].strip(): i for i, r in enumerate(train_rows)}
    asked = {r["question"].strip() for r in forget_rows}
    if asked - where.keys():
        raise DataError(f"{len(asked - where.keys())} of {len(asked)} forget questions do not occur in the training "
                        "data; the forget file must be a subset of the training file (e.g. TOFU forget10.json of "
                        "full.json).")
    gone = {authors[where[q]] for q in asked}
    partial = sorted(a for i, a in enumerate(authors) if a in gone and train_rows[i]["question"].strip() not in asked)
    if partial:
        raise DataError(f"The forget file holds only some questions of author {partial[0]!r}; val: draws whole "
                        "authors, so the forget file must hold every question of its authors. Give each training "
                        f"row an 'author' field, or keep TOFU's layout of {QA_PER_AUTHOR} consecutive questions per "
                        "author.")
    blocked = gone | {authors[where[q]] for r in exclude if (q := r["question"].strip()) in where}
    pool = [a for a in dict.fromkeys(authors) if a not in blocked]
    needed = [k for k in ("paraphrased_answer", "perturbed_answer") if any(r.get(k) for r in forget_rows)]
    rich = {r["question"].strip(): r for r in eval_rows or []}
    complete = {a: True for a in pool}
    for i, a in enumerate(authors):
        if a in complete and not all(rich.get(train_rows[i]["question"].strip(), {}).get(k) for k in needed):
            complete[a] = False
    cands = [a for a in pool if complete[a]]
    if len(cands) < len(gone):
        if needed and len(pool) >= len(gone):
            have = (f"retain_perturbed.json covers every question of only {len(cands)} of them" if eval_rows else
                    "no retain_perturbed.json was given")
            raise DataError(f"val: needs {len(gone)} retain author(s) whose every question has a "
                            f"{' and a '.join(needed)} (the forget file has them, for the truth ratio and Forget "
                            f"Quality); {have}. Put TOFU's retain_perturbed.json in the folder, or tune against a "
                            "forget file without perturbations (forgetNN.json).")
        raise DataError(f"val: needs {len(gone)} retain author(s) outside the forget files and the holdout; only "
                        f"{len(pool)} exist. Use a smaller forget set.")
    pick = {cands[i] for i in numpy_rng(seed, "tofu-val", len(gone)).choice(len(cands), len(gone), replace=False)}

    def merged(i: int) -> dict:
        extra = rich.get(train_rows[i]["question"].strip(), {})
        return {**train_rows[i], **{k: v for k, v in extra.items() if k not in ("question", "answer")}}

    return [merged(i) for i, a in enumerate(authors) if a in pick]


def tofu_data(tokenizer: Any, train_rows: list[dict], forget_rows: list[dict], *,
              holdout_rows: list[dict] | None = None, max_length: int = 256, utility: dict | None = None,
              eval_rows: list[dict] | None = None, validation: bool = False,
              retain_rows: list[dict] | None = None):
    """UnlearnData from TOFU files: forget = rows of `forget_rows` found (by question) in `train_rows`, retain =
    the others (or, given `retain_rows` such as TOFU's retain90, those rows, which must not overlap the forget set).

    Training uses the rows of `train_rows` (full.json); the evaluated forget rows take the extra fields of
    `forget_rows` (forget10_perturbed.json: paraphrased and perturbed answers, needed for the truth ratio and
    Forget Quality). The evaluated retain rows are the rows of `eval_rows` (retain_perturbed.json) whose question is
    retained, as TOFU and OpenUnlearning score them; without `eval_rows`, every retain row.
    validation=True only labels the scenario `val:` (the caller passes `validation_rows` as `forget_rows`)."""
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
    if retain_rows is not None:
        retain_idx = _retain_index(questions, forget_idx, retain_rows)
    train = QADataset(train_rows, tokenizer, max_length=max_length)
    test = QADataset(holdout_rows or [], tokenizer, max_length=max_length) if holdout_rows else train.subset([])
    rich = {r["question"].strip(): r for r in [*(eval_rows or []), *forget_rows]}

    def merged(i: int) -> dict:
        extra = rich.get(train_rows[i]["question"].strip(), {})
        return {**train_rows[i], **{k: v for k, v in extra.items() if k not in ("question", "answer")}}

    kept = {train_rows[i]["question"].strip() for i in retain_idx}
    # TOFU and OpenUnlearning score the retain set on retain_perturbed.json (400 rows), not on every retain row
    evaluated = [r for r in eval_rows or [] if r["question"].strip() in kept]
    evaluated = list({r["question"].strip(): r for r in evaluated}.values())
    rows = {"forget": [merged(i) for i in forget_idx],
            "retain": evaluated or [merged(i) for i in retain_idx],
            "test": list(holdout_rows or []), "holdout": list(holdout_rows or [])}
    return LMData(train=train, test=test, forget_idx=forget_idx, retain_idx=retain_idx, num_classes=0,
                  name="tofu", scenario=f"{'val:' if validation else ''}forget:{len(forget_idx)}",
                  extra={"rows": rows, "splits": {"holdout": test} if holdout_rows else {},
                         "utility": dict(utility or {}), "tokenizer": tokenizer})


def _retain_index(questions: dict[str, int], forget_idx: np.ndarray, retain_rows: list[dict]) -> np.ndarray:
    """Training-row indices of `retain_rows`, checked to be training rows outside the forget set."""
    idx = [questions.get(r["question"].strip()) for r in retain_rows]
    if None in idx:
        raise DataError(f"{idx.count(None)} of {len(retain_rows)} retain questions do not occur in the training "
                        "data; the retain split must be a subset of the training split (TOFU: retain90 of full).")
    overlap = np.intersect1d(np.array(idx, dtype=np.int64), forget_idx)
    if len(overlap):
        raise DataError(f"{len(overlap)} retain questions are also forget questions; use the retain split that "
                        "matches the forget split (TOFU: forget01/05/10 with retain99/95/90).")
    return np.array(sorted(set(idx)), dtype=np.int64)


__all__ = ["read_tofu", "tofu_rows", "read_idk", "tofu_dir", "utility_sets", "idk_answers", "tofu_data", "row_authors",
           "validation_rows", "DEFAULT_IDK", "QA_PER_AUTHOR"]
