"""The dataset of a language-model run, from its spec string (`--dataset` with `--task qa`).

    qa[:authors=20,facts=10,holdout=H,style=short]   generated fictitious authors (data/qa.py); D_f = --forget N% of
                                                     the authors (nested 1/5/10% splits)
    tofu[:forget01|forget05|forget10]                TOFU (Maini et al. 2024) from the Hugging Face hub (locuslab/TOFU,
                                                     or $UNLEARNLAB_TOFU_HUB; needs `datasets`, data/tofu_hub.py):
                                                     full is trained on, forgetNN(_perturbed) is D_f, retainNN the
                                                     retain set (retain99/95/90); `tofu` takes NN from --forget
                                                     1%/5%/10%, `tofu:forgetNN` fixes it (--forget then only adds val:)
    tofu:DIR                                         TOFU's own files (Maini et al. 2024): DIR/full.json is trained
                                                     on; --forget 1%/5%/10% picks DIR/forget01|05|10_perturbed.json
                                                     (else forget01|05|10.json) as D_f and DIR/holdout01|05|10.json
                                                     (when present) as MIA non-members; DIR/retain_perturbed.json
                                                     (when present) adds perturbed answers to the retain rows
    tofu:train=PATH,forget=PATH[,holdout=PATH]       explicit TOFU-format files; the forget file defines D_f
    corpus:DIR                                       MUSE-style documents: DIR/forget, DIR/retain and optionally
                                                     DIR/holdout, each a folder of .txt files or a .txt file
                                                     (`DIR/forget.txt`, ...) of blank-line separated documents
    corpus:forget=PATH,retain=PATH[,holdout=PATH]    the same with explicit paths

`--forget val:<forget>` is the validation forget set of a tuning run (engine/tune.py), disjoint from <forget>:
qa: as many other trained authors (seeded by split_seed; <forget>'s authors are retained, holdout authors are never
trained on); tofu and tofu:DIR: as many of TOFU's retain authors (none of any forgetNN file's nor of the holdout), with
their paraphrased/perturbed answers from DIR/retain_perturbed.json when the forget file has them; corpus:DIR: a
seeded subset of as many DIR/retain documents (the forget documents are retained).

Reading is split from tokenising because the tiny word-level model builds its vocabulary from `texts` before the
data can be encoded. `digest` is a content hash of the files (None for generated QA, whose spec string determines
it; a val: form always has one, which differs from its reported form's), so a stored run is not reused after a file
changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError

TOFU_SPLITS = {"1%": "01", "5%": "05", "10%": "10"}
HUB_FORMS = ("", "forget01", "forget05", "forget10")  # tofu[:forgetNN]: locuslab/TOFU from the hub


@dataclasses.dataclass
class LMSource:
    """A parsed dataset spec: kind ('qa', 'tofu', 'corpus'), every string a vocabulary must cover, a content
    digest of the files read, and build(tokenizer, max_length, utility) -> LMData."""

    kind: str
    texts: list[str]
    digest: str | None
    build: Callable[[Any, int, dict], Any]


def split_validation(forget: str | None) -> tuple[bool, str]:
    """'val:10%' -> (True, '10%'); '10%' / None -> (False, '10%' / '10%')."""
    text = str(forget or "10%").strip()
    return (True, text[4:].strip() or "10%") if text.startswith("val:") else (False, text)


def forget_percent(forget: str | None) -> str:
    """'authors:10%' / 'random:10%' / '10%' / None -> '10%' (a 'val:' prefix is dropped)."""
    text = split_validation(forget)[1]
    return text.split(":", 1)[1] if ":" in text else text


def _options(head: str, rest: str, allowed: tuple[str, ...], example: str) -> dict[str, str]:
    """'k=v,k=v' -> dict, rejecting unknown keys with the accepted form."""
    out: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        k, eq, v = part.partition("=")
        if not eq or k not in allowed or not v:
            raise ConfigError(f"Bad {head} dataset option {part!r}; use {example}.")
        out[k] = v
    return out


def _digest(paths: list[Path], salt: str = "") -> str:
    """sha256 over `salt` and the bytes of every file (and, for folders, every .txt file in name order)."""
    h = hashlib.sha256(salt.encode())
    for p in paths:
        files = sorted(p.glob("*.txt")) if p.is_dir() else [p]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _existing(path: Path, what: str, hint: str) -> Path:
    if not path.exists():
        raise DataError(f"The {what} {path} does not exist; {hint}")
    return path


def parse_qa_options(rest: str) -> dict[str, Any]:
    """Generator options of 'qa:authors=20,facts=10,holdout=2,style=short'."""
    opts: dict[str, Any] = {"authors": 20, "facts": 10, "holdout": -1, "style": "short"}
    for part in filter(None, rest.split(",")):
        k, eq, v = part.partition("=")
        if k == "style" and v in ("short", "sentence"):
            opts[k] = v
            continue
        if not eq or k not in opts or not v.lstrip("-").isdigit():
            raise ConfigError(f"Bad QA dataset option {part!r}; use authors=N, facts=K (1-10), holdout=H, "
                              "style=short|sentence.")
        opts[k] = int(v)
    return opts


def _qa_source(rest: str, forget: str | None, split_seed: int) -> LMSource:
    from .qa import generate_qa, make_qa_data, validation_authors

    opts = parse_qa_options(rest)
    qa = generate_qa(opts["authors"], facts=opts["facts"], n_holdout=None if opts["holdout"] < 0 else opts["holdout"],
                     seed=split_seed, style=opts["style"])
    val, pct = split_validation(forget)[0], forget_percent(forget)
    digest = None
    if val:  # checked here, before anything is trained
        names = validation_authors(qa.authors, pct, split_seed)
        digest = "val-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]

    def build(tok: Any, max_length: int, utility: dict) -> Any:
        return make_qa_data(tok, qa, pct, max_length=max_length, seed=split_seed, utility=utility, validation=val)

    return LMSource("qa", qa.texts(), digest, build)


def _tofu_files(rest: str, forget: str | None) -> dict[str, Path]:
    """train / forget / holdout / retain_eval paths of a tofu spec (holdout and retain_eval may be absent)."""
    if "=" in rest:
        opts = _options("tofu", rest, ("train", "forget", "holdout"), "tofu:train=PATH,forget=PATH[,holdout=PATH]")
        for k in ("train", "forget"):
            if k not in opts:
                raise ConfigError(f"tofu:... needs {k}=PATH (the {k} file in TOFU's JSON format).")
        return {k: _existing(Path(v), f"TOFU {k} file", "check the path.") for k, v in opts.items()}
    folder = Path(rest)
    if not folder.is_dir():
        raise DataError(f"TOFU folder {folder} does not exist; download locuslab/TOFU's JSON files there (full.json, "
                        "forget10.json, ...) or name the files with tofu:train=PATH,forget=PATH.")
    pct = forget_percent(forget)
    if pct not in TOFU_SPLITS:
        raise ConfigError(f"TOFU ships forget sets of 1%, 5% and 10% of its authors; got --forget {forget!r}. Use "
                          "--forget 1%, 5% or 10%, or tofu:train=PATH,forget=PATH for another split.")
    n = TOFU_SPLITS[pct]
    out = {"train": _existing(folder / "full.json", "TOFU training file", "TOFU's full.json must be in the folder.")}
    found = _tofu_forget_file(folder, n)
    if found is None:
        raise DataError(f"TOFU folder {folder} has neither forget{n}_perturbed.json nor forget{n}.json for "
                        f"--forget {pct}.")
    out["forget"] = found
    for key, name in (("holdout", f"holdout{n}.json"), ("retain_eval", "retain_perturbed.json")):
        if (folder / name).is_file():
            out[key] = folder / name
    return out


def _tofu_source(rest: str, forget: str | None, split_seed: int) -> LMSource:
    from .tofu import read_tofu

    if rest in HUB_FORMS:
        return _tofu_hub_source(rest, forget, split_seed)
    val, base = split_validation(forget)
    files = _tofu_files(rest, base)
    rows = {k: read_tofu(p) for k, p in files.items()}
    if val:  # the forget files of the other splits (nested in TOFU) and the holdout are never validation authors
        other = {} if "=" in rest else {n: _tofu_forget_file(Path(rest), n) for n in TOFU_SPLITS.values()}
        files |= {f"forget{n}": p for n, p in other.items() if p is not None and p != files["forget"]}
        rows |= {k: read_tofu(p) for k, p in files.items() if k not in rows}
    return _tofu_rows_source(rows, val, split_seed, _digest(list(files.values()), f"val:{split_seed}" if val else ""))


def _tofu_hub_source(rest: str, forget: str | None, split_seed: int) -> LMSource:
    """tofu / tofu:forget01|05|10: locuslab/TOFU through `datasets` (data/tofu_hub.py)."""
    from .tofu_hub import hub_rows, rows_digest

    val, base = split_validation(forget)
    pct = forget_percent(base)
    if rest:
        n = rest.removeprefix("forget")
    elif pct in TOFU_SPLITS:
        n = TOFU_SPLITS[pct]
    else:
        raise ConfigError(f"TOFU ships forget sets of 1%, 5% and 10% of its authors; got --forget {forget!r}. Use "
                          "--forget 1%, 5% or 10% (or val:1% ... for tuning), or --dataset tofu:forget01|05|10.")
    rows = hub_rows(n, validation=val)
    if val:
        rows.pop("retain", None)  # a val: split retains the reported forget authors: retain = full minus val authors
    utility = {k: rows.pop(k) for k in ("real_authors", "world_facts") if k in rows}
    digest = rows_digest({**rows, **utility}, f"hub:{n}:" + (f"val:{split_seed}" if val else ""))
    return _tofu_rows_source(rows, val, split_seed, digest, utility)


def _tofu_rows_source(rows: dict[str, list[dict]], val: bool, split_seed: int, digest: str,
                      utility: dict[str, list[dict]] | None = None) -> LMSource:
    """The LMSource of TOFU rows: train, forget and optionally retain, retain_eval, holdout and (for val:) the
    forget rows of every split, keyed forgetNN."""
    from .qa import row_texts
    from .tofu import tofu_data, validation_rows

    texts = [t for rs in [*rows.values(), *(utility or {}).values()] for t in row_texts(rs)]
    forget_rows, eval_rows = rows["forget"], rows.get("retain_eval")
    if val:
        exclude = [r for k, rs in rows.items() if k.startswith("forget") or k == "holdout" for r in rs]
        forget_rows = validation_rows(rows["train"], rows["forget"], seed=split_seed, exclude=exclude,
                                      eval_rows=eval_rows)
        eval_rows = [*(eval_rows or []), *rows["forget"]]

    def build(tok: Any, max_length: int, shared_utility: dict) -> Any:
        return tofu_data(tok, rows["train"], forget_rows, holdout_rows=rows.get("holdout"), max_length=max_length,
                         utility={**shared_utility, **(utility or {})}, eval_rows=eval_rows, validation=val,
                         retain_rows=None if val else rows.get("retain"))

    return LMSource("tofu", texts, digest, build)


def _tofu_forget_file(folder: Path, n: str) -> Path | None:
    """DIR/forget<n>_perturbed.json, else DIR/forget<n>.json, else None."""
    return next((c for c in (folder / f"forget{n}_perturbed.json", folder / f"forget{n}.json") if c.is_file()), None)


def _corpus_path(folder: Path, name: str) -> Path | None:
    for p in (folder / name, folder / f"{name}.txt"):
        if p.exists():
            return p
    return None


def _corpus_source(rest: str, forget: str | None, split_seed: int) -> LMSource:
    from .corpus import corpus_data, read_documents, validation_documents

    if "=" in rest:
        opts = _options("corpus", rest, ("forget", "retain", "holdout"),
                        "corpus:forget=PATH,retain=PATH[,holdout=PATH]")
        paths = {k: _existing(Path(v), f"{k} corpus", "pass a folder of .txt files or a .txt file.")
                 for k, v in opts.items()}
    elif rest:
        folder = Path(rest)
        if not folder.is_dir():
            raise DataError(f"Corpus folder {folder} does not exist; it must hold forget/ and retain/ (folders of "
                            ".txt documents) or forget.txt and retain.txt, and optionally holdout.")
        paths = {k: p for k in ("forget", "retain", "holdout") if (p := _corpus_path(folder, k)) is not None}
    else:
        paths = {}
    for k in ("forget", "retain"):
        if k not in paths:
            raise ConfigError(f"A corpus dataset needs a {k} corpus: corpus:DIR with DIR/{k} (folder) or "
                              f"DIR/{k}.txt, or corpus:forget=PATH,retain=PATH[,holdout=PATH].")
    docs = {k: read_documents(p) for k, p in paths.items()}
    pairs_file = Path(rest) / "verbmem" / "forget.json" if rest and "=" not in rest else None
    pairs = _verbmem_pairs(pairs_file) if pairs_file is not None and pairs_file.is_file() else None
    if pairs is not None:
        paths["verbmem"] = pairs_file
    val = split_validation(forget)[0]
    if val:  # checked here, before anything is trained
        validation_documents(len(docs["forget"]), len(docs["retain"]), split_seed)

    def build(tok: Any, max_length: int, utility: dict) -> Any:
        data = corpus_data(tok, docs["forget"], docs["retain"], docs.get("holdout"), max_length=max_length,
                           validation_seed=split_seed if val else None)
        if pairs is not None and not val:  # MUSE's fixed VerbMem pairs belong to the reported forget set
            data.extra["verbmem"] = pairs
        return data

    return LMSource("corpus", [d for ds in docs.values() for d in ds],
                    _digest(list(paths.values()), f"val:{split_seed}" if val else ""), build)


def _verbmem_pairs(path: Path) -> list[dict]:
    """MUSE's verbmem/forget.json: a JSON list of {"prompt", "gt"} (prompt and true continuation)."""
    import json

    try:
        pairs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not readable JSON ({e}); it must be MUSE's verbmem/forget.json: a list of "
                        '{"prompt": ..., "gt": ...} objects.') from None
    ok = isinstance(pairs, list) and pairs and all(
        isinstance(p, dict) and isinstance(p.get("prompt"), str) and isinstance(p.get("gt"), str) for p in pairs)
    if not ok:
        raise DataError(f'{path} must be a non-empty JSON list of {{"prompt": str, "gt": str}} objects (MUSE\'s '
                        "verbmem/forget.json); fix or remove it.")
    return pairs


def lm_source(name: str | None, forget: str | None = None, split_seed: int = 0) -> LMSource:
    """Parse and read the dataset of an LM run (see the module docstring)."""
    head, _, rest = (name or "qa").partition(":")
    if head in ("qa", "digits"):  # 'digits' is the classifier default the CLI passes when --dataset is not given
        return _qa_source(rest if head == "qa" else "", forget, split_seed)
    if head == "tofu":
        return _tofu_source(rest, forget, split_seed)
    if head == "corpus":
        return _corpus_source(rest, forget, split_seed)
    raise ConfigError(f"dataset {name!r} is not a language-model dataset; use qa[:authors=20,facts=10], tofu, "
                      "tofu:forget10, tofu:DIR, tofu:train=PATH,forget=PATH or corpus:DIR with --task qa.")


__all__ = ["LMSource", "lm_source", "forget_percent", "split_validation", "parse_qa_options", "TOFU_SPLITS",
           "HUB_FORMS"]
