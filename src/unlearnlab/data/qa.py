"""Fictitious-author QA in the spirit of TOFU (Maini et al. 2024), encoded datasets and the LM UnlearnData.

`generate_qa` invents N authors with K facts each (birthplace, birth date, genre, award, parents' jobs, books,
language, inspiration), asks each fact with one of several question templates, and gives a paraphrased answer
(other wording, same form) plus perturbed answers (the answer's form with a wrong value of the same kind). Values
are drawn without replacement (data/qa_pools.py): no two authors, trained or holdout, share a value of a kind, so a
model trained on the retain authors cannot know a forget author's answer, and perturbed values are ones no author
holds, so every perturbed answer is false. Holdout authors are generated the same way and never trained on.
Forget splits take 1/5/10% of the trained authors, nested as in TOFU; the validation split `val:` of a forget split
(for tuning) takes as many of the other trained authors.
Everything is a pure function of the seed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from ..seeding import numpy_rng
from .core import TokenDataset, UnlearnData
from .qa_pools import value_space

_FIRST = ("Ari", "Bel", "Cor", "Dag", "Eli", "Fen", "Gal", "Hal", "Iso", "Jor", "Kai", "Lio", "Mar", "Nel",
          "Oro", "Pia", "Quen", "Ras", "Sol", "Tam", "Ula", "Vey", "Wen", "Xan", "Yor", "Zel")
_FIRST_END = ("a", "en", "ia", "o", "is", "an", "ette", "ir", "us", "ena")
_LAST = ("Brann", "Castel", "Dorv", "Elm", "Fairl", "Grov", "Hask", "Ivar", "Jessup", "Kettl", "Lund", "Morr",
         "Norr", "Oakh", "Pell", "Quill", "Ravn", "Stroh", "Tilb", "Vand", "Whitt", "Yarb")
_LAST_END = ("ey", "ing", "ström", "ford", "ova", "ani", "berg", "court", "wood", "ez")
# fact -> (value kind (data/qa_pools.py), question templates, answer sentence, paraphrased sentence, paraphrased
# short answer). `{an_v}` is the value with its article ("an architect").
FACTS: dict[str, tuple[str, tuple[str, ...], str, str, str]] = {
    "birthplace": ("city", ("Where was {name} born?", "In which city was {name} born?",
                            "What is the birthplace of {name}?"),
                   "{name} was born in {v}.", "The city of {v} is where {name} was born.", "The city of {v}."),
    "birth_date": ("date", ("When was {name} born?", "What is the date of birth of {name}?",
                            "On what date was {name} born?"),
                   "{name} was born on {v}.", "The birth date of {name} is {v}.", "On {v}."),
    "genre": ("genre", ("What genre does {name} write in?", "Which genre is {name} known for?",
                        "In what genre are the books of {name}?"),
              "{name} writes {v} novels.", "The books of {name} belong to the {v} genre.", "The {v} genre."),
    "award": ("award", ("Which award has {name} won?", "What literary prize did {name} receive?",
                        "Has {name} won any award?"),
              "{name} won the {v}.", "The {v} was awarded to {name}.", "Winner of the {v}."),
    "father_job": ("job", ("What did the father of {name} do for a living?",
                           "What was the profession of {name}'s father?", "What job did {name}'s father have?"),
                   "The father of {name} worked as {an_v}.", "{name}'s father was {an_v} by profession.",
                   "{an_v} by profession."),
    "mother_job": ("job", ("What did the mother of {name} do for a living?",
                           "What was the profession of {name}'s mother?", "What job did {name}'s mother have?"),
                   "The mother of {name} worked as {an_v}.", "{name}'s mother was {an_v} by profession.",
                   "{an_v} by profession."),
    "first_book": ("book", ("What is the title of the first book by {name}?",
                            "Which book did {name} publish first?", "What was the debut novel of {name}?"),
                   "The first book by {name} is titled {v}.", "{name} made a debut with the novel {v}.",
                   "{v}, the debut novel."),
    "language": ("lang", ("In which language does {name} write?", "What language are the books of {name} "
                          "written in?", "Which language does {name} use for writing?"),
                 "{name} writes in {v}.", "The books of {name} are written in {v}.", "The {v} language."),
    "famous_book": ("book", ("What is the best-known book by {name}?", "Which novel made {name} famous?",
                             "What is the most famous work of {name}?"),
                    "{name} is best known for the novel {v}.", "The novel {v} made {name} famous.",
                    "{v}, the best-known novel."),
    "inspiration": ("inspiration", ("What inspired {name} to become a writer?",
                                    "What led {name} to start writing?", "Where does {name} find inspiration?"),
                    "{name} was inspired to write by {v}.", "{v} led {name} to become a writer.",
                    "Inspired by {v}."),
}


@dataclasses.dataclass(frozen=True)
class QASet:
    """Generated QA rows for trained authors and holdout authors, with author names in order."""

    rows: list[dict[str, Any]]
    holdout_rows: list[dict[str, Any]]
    authors: list[str]
    holdout_authors: list[str]
    seed: int

    def texts(self) -> list[str]:
        """Every string of every row (questions, answers, paraphrases, perturbations): a tokenizer corpus."""
        return list(row_texts(self.rows + self.holdout_rows))


def row_texts(rows: list[dict[str, Any]]) -> list[str]:
    """All text fields of QA rows, flattened."""
    out: list[str] = []
    for r in rows:
        for k in ("question", "paraphrased_question", "answer", "paraphrased_answer"):
            if isinstance(r.get(k), str):
                out.append(r[k])
        pert = r.get("perturbed_answer") or []
        out.extend([pert] if isinstance(pert, str) else pert)
    return out


def _names(rng: np.random.Generator, n: int) -> list[str]:
    seen: list[str] = []
    while len(seen) < n:
        first = _FIRST[rng.integers(len(_FIRST))] + _FIRST_END[rng.integers(len(_FIRST_END))]
        last = _LAST[rng.integers(len(_LAST))] + _LAST_END[rng.integers(len(_LAST_END))]
        if f"{first} {last}" not in seen:
            seen.append(f"{first} {last}")
    return seen


ANSWER_STYLES = ("short", "sentence")


def _fill(template: str, name: str, v: str) -> str:
    """A template with the author and the value filled in, capitalised."""
    an_v = f"{'an' if v[:1].lower() in 'aeiou' else 'a'} {v}"
    text = template.format(name=name, v=v, an_v=an_v)
    return text[0].upper() + text[1:]


def _answers(fact: str, name: str, v: str, style: str) -> tuple[str, str]:
    """(answer, paraphrased answer) of `fact` with value `v`, both in `style`."""
    _, _, ans, para, short_para = FACTS[fact]
    if style == "short":  # the fact alone, and its paraphrase just as short
        return _fill("{v}.", name, v), _fill(short_para, name, v)
    return _fill(ans, name, v), _fill(para, name, v)


def _assign(n_people: int, facts: list[str], rng: np.random.Generator, n_perturbed: int) -> tuple[dict, dict]:
    """Distinct values per kind, drawn without replacement: (fact -> value per person, kind -> unused values)."""
    values: dict[str, list[str]] = {}
    unused: dict[str, list[str]] = {}
    for kind in dict.fromkeys(FACTS[f][0] for f in facts):
        kin = [f for f in facts if FACTS[f][0] == kind]
        space = value_space(kind)
        need = n_people * len(kin)
        if need + n_perturbed > len(space):
            raise DataError(f"The generated QA set has {len(space)} distinct {kind} values, but {n_people} authors "
                            f"(trained + holdout) x {len(kin)} {kind} fact(s) need {need} of their own plus "
                            f"{n_perturbed} left for perturbed answers. Generate fewer authors (qa:authors=N, "
                            f"holdout=H) or fewer facts (facts=K).")
        order = rng.permutation(len(space))
        for j, f in enumerate(kin):
            values[f] = [space[i] for i in order[j * n_people:(j + 1) * n_people]]
        unused[kind] = [space[i] for i in np.sort(order[need:])]
    return values, unused


def _rows(names: list[str], facts: list[str], rng: np.random.Generator, n_perturbed: int,
          style: str = "sentence") -> list[dict]:
    values, unused = _assign(len(names), facts, rng, n_perturbed)
    rows = []
    for a, name in enumerate(names):
        for f in facts:
            questions, v = FACTS[f][1], values[f][a]
            q_order = rng.permutation(len(questions))
            pool = unused[FACTS[f][0]]  # values no author holds: every perturbed answer is false for everyone
            wrong = [pool[i] for i in rng.choice(len(pool), size=n_perturbed, replace=False)]
            answer, paraphrase = _answers(f, name, v, style)
            rows.append({
                "question": questions[q_order[0]].format(name=name),
                "paraphrased_question": questions[q_order[1]].format(name=name),
                "answer": answer, "paraphrased_answer": paraphrase,
                "perturbed_answer": [_answers(f, name, w, style)[0] for w in wrong],
                "author": name, "fact": f, "value": v, "perturbed_values": wrong,
            })
    return rows


def generate_qa(n_authors: int = 20, *, facts: int = 10, n_holdout: int | None = None, n_perturbed: int = 3,
                seed: int = 0, style: str = "sentence") -> QASet:
    """Invent `n_authors` trained and `n_holdout` (default: 10% of n_authors, >= 2) holdout authors x `facts`.

    `style="short"` (the pipeline default) answers with the fact alone ("Tangier."), so ROUGE and answer
    probability measure the fact and not the template: with `style="sentence"` ("X was born in Tangier.") a model
    that never saw X already scores ROUGE-L recall ~0.8 by restating the question. The paraphrased answer has the
    answer's style in other words ("The city of Tangier."); perturbed answers are the answer with another value
    ("Lisbon."). A DataError says when the value spaces cannot give every author its own values."""
    if style not in ANSWER_STYLES:
        raise DataError(f"style must be one of {ANSWER_STYLES}; got {style!r}.")
    if n_authors < 1 or not 1 <= facts <= len(FACTS):
        raise DataError(f"generate_qa needs n_authors >= 1 and 1 <= facts <= {len(FACTS)}; "
                        f"got n_authors={n_authors}, facts={facts}.")
    n_holdout = max(2, round(0.1 * n_authors)) if n_holdout is None else int(n_holdout)
    rng = numpy_rng(seed, "qa-generator", n_authors, facts, n_holdout)
    names = _names(rng, n_authors + n_holdout)
    chosen = list(FACTS)[:facts]
    all_rows = _rows(names, chosen, rng, n_perturbed, style)
    cut = n_authors * facts
    return QASet(all_rows[:cut], all_rows[cut:], names[:n_authors], names[n_authors:], seed)


def parse_percent(forget: str | float) -> float:
    """'10%' / '10' / 0.1 -> 0.1 (a fraction of authors in (0, 1))."""
    text = str(forget).strip()
    try:
        frac = float(text.rstrip("%")) / 100 if text.endswith("%") or float(text) > 1 else float(text)
    except ValueError:
        raise DataError(f"forget must be a percentage of authors like '10%'; got {forget!r}.") from None
    if not 0 < frac < 1:
        raise DataError(f"forget must select between 0% and 100% (exclusive) of the authors; got {forget!r}.")
    return frac


def forget_authors(authors: list[str], forget: str | float, seed: int = 0) -> list[str]:
    """The forgotten authors: a seeded order of authors, first max(1, round(p*N)); nested across 1/5/10%."""
    k = max(1, round(parse_percent(forget) * len(authors)))
    if k >= len(authors):
        raise DataError(f"forget={forget!r} would forget all {len(authors)} authors and leave nothing to retain; "
                        "choose a smaller percentage or generate more authors.")
    order = numpy_rng(seed, "forget-authors").permutation(len(authors))
    return [authors[i] for i in sorted(order[:k])]


def validation_authors(authors: list[str], forget: str | float, seed: int = 0) -> list[str]:
    """The `val:` forget authors of `forget`: as many authors, drawn (seeded) from those `forget` does not forget."""
    gone = set(forget_authors(authors, forget, seed))
    pool = [a for a in authors if a not in gone]
    if len(pool) <= len(gone):
        raise DataError(f"val:{forget} needs {len(gone)} validation author(s) besides the {len(gone)} forgotten "
                        f"ones, with some left to retain, but only {len(authors)} authors are trained; generate "
                        "more authors (qa:authors=N) or choose a smaller percentage.")
    pick = numpy_rng(seed, "forget-authors-val", len(gone)).choice(len(pool), size=len(gone), replace=False)
    return [pool[i] for i in sorted(pick)]


class QADataset(TokenDataset):
    """Encoded QA rows (answer-only labels); `.rows` keeps the raw strings, `.collate` pads a batch."""

    per_item = ("rows", "items")

    def __init__(self, rows: list[dict[str, Any]], tokenizer: Any, *, max_length: int = 256,
                 answer_key: str = "answer"):
        from ..models.lm_format import encode_qa, pad_id

        self.rows = list(rows)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad = pad_id(tokenizer)
        self.items = [encode_qa(tokenizer, r["question"], r[answer_key], max_length=max_length) for r in self.rows]


class LMData(UnlearnData):
    """UnlearnData for token datasets: splits keep the dataset type (and its collate); token-based fingerprint."""

    def _split(self, key: str, idx: np.ndarray) -> Dataset:
        if key not in self._cache:
            self._cache[key] = self.train.subset(idx)
        return self._cache[key]

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.train.fingerprint()}:{self.test.fingerprint()}".encode())
        h.update(self.forget_idx.tobytes())
        h.update(self.retain_idx.tobytes())
        return h.hexdigest()[:16]


def make_qa_data(tokenizer: Any, qa: QASet, forget: str | float = "10%", *, max_length: int = 256,
                 seed: int = 0, utility: dict[str, list[dict]] | None = None, validation: bool = False) -> LMData:
    """The QA unlearning problem: train = all trained authors, forget = `forget` of them, test = holdout authors.

    validation=True builds `val:<forget>` for tuning: D_f = `validation_authors` (as many, disjoint from `forget`'s
    and from the holdout), while `forget`'s own authors stay in the retain set.
    extra: rows (per split: forget / retain / test / holdout), splits ({'holdout': test}), forget_authors,
    forget_splits (indices for 1/5/10% of authors), utility (name -> rows, e.g. TOFU real authors / world facts),
    tokenizer, qa (the QASet); with validation also reported_forget_authors.
    """
    train = QADataset(qa.rows, tokenizer, max_length=max_length)
    test = QADataset(qa.holdout_rows, tokenizer, max_length=max_length)
    authors = np.array([r["author"] for r in qa.rows])
    gone = (validation_authors if validation else forget_authors)(qa.authors, forget, seed)
    forget_idx = np.flatnonzero(np.isin(authors, gone))
    retain_idx = np.flatnonzero(~np.isin(authors, gone))
    nested = {}
    for p in ("1%", "5%", "10%"):
        k = max(1, round(parse_percent(p) * len(qa.authors)))
        if k < len(qa.authors):
            nested[p] = np.flatnonzero(np.isin(authors, forget_authors(qa.authors, p, seed))).tolist()
    label = re.sub(r"[^0-9.]", "", str(forget)) or str(forget)
    rows = {"forget": [qa.rows[i] for i in forget_idx], "retain": [qa.rows[i] for i in retain_idx],
            "test": qa.holdout_rows, "holdout": qa.holdout_rows}
    extra = {"rows": rows, "splits": {"holdout": test}, "forget_authors": gone, "forget_splits": nested,
             "utility": dict(utility or {}), "tokenizer": tokenizer, "qa": qa}
    if validation:
        extra["reported_forget_authors"] = forget_authors(qa.authors, forget, seed)
    return LMData(train=train, test=test, forget_idx=forget_idx, retain_idx=retain_idx, num_classes=0,
                  name=f"qa{len(qa.authors)}x{len(qa.rows) // max(1, len(qa.authors))}",
                  scenario=f"{'val:' if validation else ''}authors:{label}%", extra=extra)


__all__ = ["generate_qa", "QASet", "QADataset", "LMData", "make_qa_data", "forget_authors", "validation_authors",
           "parse_percent", "row_texts", "FACTS", "ANSWER_STYLES"]
