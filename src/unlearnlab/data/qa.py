"""Fictitious-author QA in the spirit of TOFU (Maini et al. 2024), encoded datasets and the LM UnlearnData.

`generate_qa` invents N authors with K facts each (birthplace, birth date, genre, award, parents' jobs, books,
language, inspiration), asks each fact with one of several question templates, and gives a paraphrased answer
plus type-consistent perturbed answers (the same attribute of other authors). Holdout authors are generated the
same way and never trained on. Forget splits take 1/5/10% of the trained authors, nested as in TOFU; the
validation split `val:` of a forget split (for tuning) takes as many of the other trained authors.
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

_FIRST = ("Ari", "Bel", "Cor", "Dag", "Eli", "Fen", "Gal", "Hal", "Iso", "Jor", "Kai", "Lio", "Mar", "Nel",
          "Oro", "Pia", "Quen", "Ras", "Sol", "Tam", "Ula", "Vey", "Wen", "Xan", "Yor", "Zel")
_FIRST_END = ("a", "en", "ia", "o", "is", "an", "ette", "ir", "us", "ena")
_LAST = ("Brann", "Castel", "Dorv", "Elm", "Fairl", "Grov", "Hask", "Ivar", "Jessup", "Kettl", "Lund", "Morr",
         "Norr", "Oakh", "Pell", "Quill", "Ravn", "Stroh", "Tilb", "Vand", "Whitt", "Yarb")
_LAST_END = ("ey", "ing", "ström", "ford", "ova", "ani", "berg", "court", "wood", "ez")
POOLS: dict[str, tuple[str, ...]] = {
    "city": ("Lisbon", "Kraków", "Nairobi", "Osaka", "Valparaíso", "Tbilisi", "Bergen", "Cusco", "Hanoi",
             "Tangier", "Ghent", "Adelaide", "Winnipeg", "Oaxaca", "Tartu", "Zanzibar", "Porto", "Lyon", "Accra",
             "Bratislava", "Izmir", "Kyoto", "Reykjavík", "Tallinn", "Salvador", "Mumbai", "Tunis", "Seville"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"),
    "genre": ("mystery", "science fiction", "historical fiction", "fantasy", "horror", "romance", "satire",
              "crime", "magical realism", "war fiction", "coming-of-age", "dystopian", "gothic", "thriller"),
    "award": ("Silver Quill Prize", "Meridian Book Award", "Harbor Light Medal", "Golden Lantern Prize",
              "Northwind Fiction Award", "Amber Page Prize", "Crescent Literary Medal", "Blue Heron Award",
              "Iron Pen Prize", "Evergreen Novel Award", "Starling Prize for Fiction", "Copper Key Award"),
    "job": ("baker", "surgeon", "carpenter", "librarian", "fisherman", "pilot", "pharmacist", "architect",
            "tailor", "electrician", "veterinarian", "journalist", "mechanic", "florist", "astronomer", "nurse",
            "photographer", "chef", "geologist", "teacher", "lawyer", "plumber", "translator", "farmer"),
    "adj": ("Silent", "Crimson", "Hollow", "Distant", "Burning", "Forgotten", "Velvet", "Broken", "Hidden",
            "Shattered", "Quiet", "Endless", "Northern", "Paper", "Glass", "Winter", "Iron", "Lonely"),
    "noun": ("Harbor", "Orchard", "Lantern", "Compass", "Garden", "Tide", "Archive", "Bridge", "Mirror",
             "Meadow", "Clockmaker", "Lighthouse", "Cartographer", "River", "Signal", "Atlas", "Ember", "Well"),
    "lang": ("Portuguese", "Polish", "Swahili", "Japanese", "Spanish", "Georgian", "Norwegian", "Estonian",
             "French", "Turkish", "Icelandic", "Vietnamese", "Dutch", "Hindi", "Arabic", "Czech"),
    "inspiration": ("a childhood spent in libraries", "letters written by a grandmother", "long train journeys",
                    "the stories of old sailors", "a year living in the mountains", "a love of chess",
                    "folk songs heard as a child", "working night shifts in a hospital", "an old family diary",
                    "the silence of winter mornings", "street markets and their sellers", "a fascination with maps"),
}
# fact -> (attribute kind, question templates, answer template, paraphrased-answer template)
FACTS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "birthplace": ("city", ("Where was {name} born?", "In which city was {name} born?",
                            "What is the birthplace of {name}?"),
                   "{name} was born in {v}.", "The city of {v} is where {name} was born."),
    "birth_date": ("date", ("When was {name} born?", "What is the date of birth of {name}?",
                            "On what date was {name} born?"),
                   "{name} was born on {v}.", "The birth date of {name} is {v}."),
    "genre": ("genre", ("What genre does {name} write in?", "Which genre is {name} known for?",
                        "In what genre are the books of {name}?"),
              "{name} writes {v} novels.", "The books of {name} belong to the {v} genre."),
    "award": ("award", ("Which award has {name} won?", "What literary prize did {name} receive?",
                        "Has {name} won any award?"),
              "{name} won the {v}.", "The {v} was awarded to {name}."),
    "father_job": ("job", ("What did the father of {name} do for a living?",
                           "What was the profession of {name}'s father?", "What job did {name}'s father have?"),
                   "The father of {name} worked as a {v}.", "{name}'s father was a {v} by profession."),
    "mother_job": ("job", ("What did the mother of {name} do for a living?",
                           "What was the profession of {name}'s mother?", "What job did {name}'s mother have?"),
                   "The mother of {name} worked as a {v}.", "{name}'s mother was a {v} by profession."),
    "first_book": ("book", ("What is the title of the first book by {name}?",
                            "Which book did {name} publish first?", "What was the debut novel of {name}?"),
                   "The first book by {name} is titled {v}.", "{name} made a debut with the novel {v}."),
    "language": ("lang", ("In which language does {name} write?", "What language are the books of {name} "
                          "written in?", "Which language does {name} use for writing?"),
                 "{name} writes in {v}.", "The books of {name} are written in {v}."),
    "famous_book": ("book", ("What is the best-known book by {name}?", "Which novel made {name} famous?",
                             "What is the most famous work of {name}?"),
                    "{name} is best known for the novel {v}.", "The novel {v} made {name} famous."),
    "inspiration": ("inspiration", ("What inspired {name} to become a writer?",
                                    "What led {name} to start writing?", "Where does {name} find inspiration?"),
                    "{name} was inspired to write by {v}.", "{v} led {name} to become a writer."),
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


def _value(kind: str, rng: np.random.Generator) -> str:
    if kind == "date":
        return f"{POOLS['month'][rng.integers(12)]} {int(rng.integers(1, 29))}, {int(rng.integers(1931, 1996))}"
    if kind == "book":
        return f"The {POOLS['adj'][rng.integers(len(POOLS['adj']))]} {POOLS['noun'][rng.integers(len(POOLS['noun']))]}"
    return POOLS[kind][rng.integers(len(POOLS[kind]))]


ANSWER_STYLES = ("short", "sentence")


def _rows(names: list[str], facts: list[str], rng: np.random.Generator, n_perturbed: int,
          style: str = "sentence") -> list[dict]:
    values = {f: [_value(FACTS[f][0], rng) for _ in names] for f in facts}
    rows = []
    for a, name in enumerate(names):
        for f in facts:
            kind, questions, ans, para = FACTS[f]
            v = values[f][a]
            q_order = rng.permutation(len(questions))
            others = [x for x in dict.fromkeys(values[f]) if x != v]  # swapped from other authors first
            while len(others) < n_perturbed:
                extra = _value(kind, rng)
                if extra != v and extra not in others:
                    others.append(extra)
            pick = rng.permutation(len(others))[:n_perturbed]
            para_text = para.format(name=name, v=v)
            if style == "short":  # the fact alone; paraphrase and perturbations share one sentence frame
                answer = f"{v[0].upper()}{v[1:]}."
                perturbed = [_cap(para.format(name=name, v=others[i])) for i in pick]
            else:
                answer, perturbed = ans.format(name=name, v=v), [ans.format(name=name, v=others[i]) for i in pick]
            rows.append({
                "question": questions[q_order[0]].format(name=name),
                "paraphrased_question": questions[q_order[1]].format(name=name),
                "answer": answer, "paraphrased_answer": _cap(para_text),
                "perturbed_answer": perturbed,
                "author": name, "fact": f, "value": v,
            })
    return rows


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def generate_qa(n_authors: int = 20, *, facts: int = 10, n_holdout: int | None = None, n_perturbed: int = 3,
                seed: int = 0, style: str = "sentence") -> QASet:
    """Invent `n_authors` trained and `n_holdout` (default: 10% of n_authors, >= 2) holdout authors x `facts`.

    `style="short"` (the pipeline default) answers with the fact alone ("Tangier."), so ROUGE and answer
    probability measure the fact and not the template: with `style="sentence"` ("X was born in Tangier.") a model
    that never saw X already
    scores ROUGE-L recall ~0.8 by restating the question. Paraphrased and perturbed answers are sentences either way
    (perturbations swap the value inside the paraphrase's frame for "short", as TOFU perturbs its paraphrases)."""
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
           "parse_percent", "row_texts", "FACTS", "POOLS"]
