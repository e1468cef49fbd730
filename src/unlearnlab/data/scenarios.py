"""Forget scenarios: random:<pct>, sample:<n>, class:<c>, subclass:<name> (a whole sub-class, on a dataset with
sub-class labels: cifar20, cifar10-dev-coarse), subclass:<c>:<pct> (a random share of class c), indices:<file>, all
deterministic from a seed; and the audit scenarios of docs/scenarios.md: hard:<pct> / easy:<pct> (memorisation proxy),
worst:<pct>[:ft|ga|rl] (Challenging Forgets), poison:patch|swap:<size>[:known=<pct>]... (corrective unlearning)
and seq:<base>x<k> (sequential deletion requests).

`val:<scenario>` is a validation forget set for hyper-parameter tuning: the same kind and size as <scenario> at the
same split seed, but disjoint from <scenario>'s indices (see `validation_indices`; the audit scenarios' forms are in
docs/scenarios.md), so that selection never touches the forget set that is reported.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from ..seeding import numpy_rng
from .core import UnlearnData, labels_of

SPEC_HELP = ("random:10%, sample:100 (100 random examples), class:3, subclass:dog (every example of one sub-class; "
             "needs a dataset with sub-class labels: cifar20, cifar10-dev-coarse), subclass:3:50% (a random half of "
             "class 3), indices:ids.txt (one id per line, or a JSON list), each "
             "optionally prefixed by val: (a disjoint validation set for tuning); audit scenarios: hard:10%, easy:10%, "
             "worst:10%:ft, poison:patch:100:known=10%, poison:swap:100:known=10%:classes=3-5, seq:random:5%x4")
Fine = tuple[np.ndarray, list[str] | None]  # (sub-class label of each train row, their names): datasets.with_coarse
MODEL_KINDS = ("hard", "easy", "worst")  # the selection needs a trained model (tasks/scenario_split.py)
AUDIT_KINDS = (*MODEL_KINDS, "poison", "seq")
WORST_METHODS = ("ft", "ga", "rl")


@dataclasses.dataclass(frozen=True)
class ForgetSpec:
    """A parsed forget scenario."""

    kind: str
    pct: float | None = None
    cls: int | str | None = None
    path: str | None = None
    val: bool = False
    count: int | None = None
    method: str | None = None  # worst: lower-level method; poison: patch or swap
    known: float | None = None  # poison: % of the poisoned rows the unlearner is given
    pair: tuple[int, int] | None = None  # poison:swap: the two confused classes
    base: str | None = None  # seq: the scenario of one request
    steps: int | None = None  # seq: number of requests

    def __str__(self) -> str:
        if self.val:
            return f"val:{dataclasses.replace(self, val=False)}"
        if self.kind in ("hard", "easy"):
            return f"{self.kind}:{self.pct:g}%"
        if self.kind == "worst":
            return f"worst:{self.pct:g}%:{self.method}"
        if self.kind == "seq":
            return f"seq:{self.base}x{self.steps}"
        if self.kind == "poison":
            size = f"{self.pct:g}%" if self.pct is not None else str(self.count)
            extra = f":target={self.cls}" if self.method == "patch" else f":classes={self.pair[0]}-{self.pair[1]}"
            return f"poison:{self.method}:{size}:known={self.known:g}%{extra}"
        if self.kind == "random":
            return f"random:{self.pct:g}%"
        if self.kind == "sample":
            return f"sample:{self.count}"
        if self.kind == "class":
            return f"class:{self.cls}"
        if self.kind == "subclass":
            return f"subclass:{self.cls}" + (f":{self.pct:g}%" if self.pct is not None else "")
        return f"indices:{self.path}"


def _pct(text: str, spec: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%?\s*", text)
    if not m:
        raise DataError(f"Forget spec {spec!r}: {text!r} is not a percentage. Use e.g. {SPEC_HELP}.")
    v = float(m.group(1))
    if not 0 < v < 100:
        raise DataError(f"Forget spec {spec!r}: the percentage must be in (0, 100); got {v:g}%.")
    return v


def parse_forget(spec: str) -> ForgetSpec:
    """Parse a forget spec string; raise DataError with the accepted forms otherwise."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind == "val":
        base = parse_forget(rest)
        if base.val:
            raise DataError(f"Forget spec {spec!r}: val: can be given once; use e.g. val:random:10%.")
        return dataclasses.replace(base, val=True)
    if kind == "random" and rest:
        return ForgetSpec("random", pct=_pct(rest, spec))
    if kind == "sample" and rest:
        if not rest.strip().isdigit() or int(rest) < 1:
            raise DataError(f"Forget spec {spec!r}: sample:N needs a positive whole number of examples, e.g. "
                            "sample:100 (the SSD authors' random-forgetting protocol).")
        return ForgetSpec("sample", count=int(rest))
    if re.fullmatch(r"[0-9.]+%", spec):
        return ForgetSpec("random", pct=_pct(spec, spec))
    if kind == "class" and rest:
        return ForgetSpec("class", cls=int(rest) if rest.lstrip("-").isdigit() else rest)
    if kind == "subclass":
        c, _, p = rest.partition(":")
        if c:
            return ForgetSpec("subclass", cls=int(c) if c.lstrip("-").isdigit() else c,
                              pct=_pct(p, spec) if p else None)
    if kind == "indices" and rest:
        return ForgetSpec("indices", path=rest)
    if kind in AUDIT_KINDS:
        return _parse_audit(kind, rest, spec)
    raise DataError(f"Malformed forget spec {spec!r}. Accepted forms: {SPEC_HELP}.")


def _parse_audit(kind: str, rest: str, spec: str) -> ForgetSpec:
    """hard/easy/worst/poison/seq spellings (see SPEC_HELP)."""
    if kind in ("hard", "easy") and rest:
        return ForgetSpec(kind, pct=_pct(rest, spec))
    if kind == "worst" and rest:
        p, _, method = rest.partition(":")
        method = method or "ft"
        if method not in WORST_METHODS:
            raise DataError(f"Forget spec {spec!r}: the worst-case selector's lower level must be one of "
                            f"{', '.join(WORST_METHODS)}; got {method!r}. Use e.g. worst:10%:ga.")
        return ForgetSpec("worst", pct=_pct(p, spec), method=method)
    if kind == "seq":
        base, sep, k = rest.rpartition("x")
        if not sep or not k.strip().isdigit() or int(k) < 1:
            raise DataError(f"Forget spec {spec!r}: write seq:<request>x<k>, e.g. seq:random:5%x4 (4 requests of 5% "
                            "each).")
        b = parse_forget(base)
        if b.kind not in ("random", "sample") or b.val:
            raise DataError(f"Forget spec {spec!r}: each request of a sequence must be random:<pct> or sample:<n>; "
                            f"got {base!r}.")
        return ForgetSpec("seq", base=str(b), steps=int(k))
    if kind == "poison":
        return _parse_poison(rest, spec)
    raise DataError(f"Malformed forget spec {spec!r}. Accepted forms: {SPEC_HELP}.")


def _parse_poison(rest: str, spec: str) -> ForgetSpec:
    """poison:patch|swap:<n or pct>[:known=<pct>][:target=<c>][:classes=<a>-<b>]."""
    how, _, tail = rest.partition(":")
    size, *opts = tail.split(":") if tail else [""]
    if how not in ("patch", "swap") or not size:
        raise DataError(f"Forget spec {spec!r}: write poison:patch:<n> (trigger patch relabelled to a target class) "
                        "or poison:swap:<n> (interclass label swap), e.g. poison:patch:100:known=10%.")
    out = {"method": how, "known": 10.0, "cls": 0 if how == "patch" else None,
           "pair": (3, 5) if how == "swap" else None}
    if size.strip().isdigit() and int(size) > 0:
        out["count"] = int(size)
    else:
        out["pct"] = _pct(size, spec)
    for opt in opts:
        key, _, val = opt.partition("=")
        if key == "known":
            out["known"] = 100.0 if val.strip() in ("100", "100%") else _pct(val, spec)
        elif key == "target" and how == "patch" and val.isdigit():
            out["cls"] = int(val)
        elif key == "classes" and how == "swap" and re.fullmatch(r"\d+-\d+", val) and len(set(val.split("-"))) == 2:
            out["pair"] = tuple(int(v) for v in val.split("-"))
        else:
            raise DataError(f"Forget spec {spec!r}: unknown option {opt!r}; poison options are known=<pct> and "
                            + ("target=<class>" if how == "patch" else "classes=<a>-<b> (two different classes)")
                            + ".")
    return ForgetSpec("poison", **out)


def _class_id(cls: int | str, classes: list[str] | None, num_classes: int, spec: str) -> int:
    if isinstance(cls, str):
        if classes and cls in classes:
            return classes.index(cls)
        raise DataError(f"Forget spec {spec!r}: unknown class {cls!r}; classes are {classes}.")
    if not 0 <= cls < num_classes:
        raise DataError(f"Forget spec {spec!r}: class {cls} is out of range; use 0..{num_classes - 1}.")
    return cls


def read_indices(path: str | Path) -> np.ndarray:
    """Read example ids from a text file (one per line) or a JSON list."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Indices file {str(p)!r} does not exist.")
    text = p.read_text().strip()
    try:
        vals = json.loads(text) if text.startswith("[") else [ln.strip() for ln in text.splitlines() if ln.strip()]
        return np.asarray([int(v) for v in vals], dtype=np.int64)
    except (ValueError, TypeError):
        raise DataError(f"{p} must hold integer ids, one per line or as a JSON list.") from None


def _sub_class(s: ForgetSpec, fine: Fine | None, shift: int = 0) -> np.ndarray:
    """Train rows of sub-class s.cls (subclass:<name>), or of the sub-class `shift` places after it."""
    if fine is None:
        raise DataError(f"Forget spec {str(s)!r} forgets a sub-class, so it needs a dataset with sub-class labels "
                        "(cifar20:/path/to/cifar-100-python, or cifar10-dev-coarse on this machine); for a random "
                        f"share of a class use subclass:{s.cls}:50%.")
    labels, names = np.asarray(fine[0]), fine[1]
    f = len(names) if names else int(labels.max()) + 1  # the next sub-class wraps over all of them, named or seen
    return np.flatnonzero(labels == (_class_id(s.cls, names, f, str(s)) + shift) % f)


def forget_indices(spec: ForgetSpec | str, labels: np.ndarray, seed: int, *, classes: list[str] | None = None,
                   num_classes: int | None = None, fine: Fine | None = None) -> np.ndarray:
    """Sorted train indices selected by `spec` for this `seed`; `fine` = (sub-class label per train row, sub-class
    names) for subclass:<name>."""
    s = parse_forget(spec) if isinstance(spec, str) else spec
    n = len(labels)
    k = int(num_classes or (labels.max() + 1 if n else 0))
    if s.val:
        return _checked(validation_indices(s, labels, seed, classes=classes, num_classes=k, fine=fine), n, s)
    if s.kind in MODEL_KINDS:
        raise DataError(f"Forget spec {str(s)!r} is chosen with a trained model: run it from a spec (unlearnlab run "
                        "--forget ...) or build the split with unlearnlab.tasks.scenario_split.build_split.")
    if s.kind == "seq":
        return _checked(np.concatenate(sequence_steps(s, labels, seed)), n, s)
    if s.kind == "poison":
        from .poison import known_indices, poisoned_indices

        return _checked(known_indices(poisoned_indices(s, labels, seed, k), s, seed), n, s)
    rng = numpy_rng(seed, "forget", str(s))
    if s.kind == "random":
        m = max(1, int(round(n * s.pct / 100)))
        idx = rng.choice(n, size=m, replace=False)
    elif s.kind == "sample":
        if s.count >= n:
            raise DataError(f"Forget spec {str(s)!r} asks for {s.count} examples but the train set has {n}; choose "
                            "fewer.")
        idx = rng.choice(n, size=s.count, replace=False)
    elif s.kind == "class":
        idx = np.flatnonzero(labels == _class_id(s.cls, classes, k, str(s)))
    elif s.kind == "subclass" and s.pct is None:
        idx = _sub_class(s, fine)
    elif s.kind == "subclass":
        pool = np.flatnonzero(labels == _class_id(s.cls, classes, k, str(s)))
        idx = rng.choice(pool, size=max(1, int(round(len(pool) * s.pct / 100))), replace=False) if len(pool) else pool
    else:
        idx = np.unique(read_indices(s.path))
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            raise DataError(f"Indices file {s.path}: ids {bad[:5].tolist()} are outside the train set [0, {n}).")
    return _checked(idx, n, s)


def sequence_steps(spec: ForgetSpec | str, labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """The k disjoint forget sets of seq:<base>x<k> (each the size of <base>), each sorted, in request order.
    val:seq:<base>x<k> -> the next k requests of the same seeded order, disjoint from all k reported ones."""
    s = parse_forget(spec) if isinstance(spec, str) else spec
    n = len(labels)
    b = parse_forget(s.base)
    m = b.count if b.kind == "sample" else max(1, int(round(n * b.pct / 100)))
    need = m * s.steps * (2 if s.val else 1)
    if need >= n:
        raise DataError(f"Forget spec {str(s)!r}: {s.steps} requests of {m} examples need {need} of the {n} training "
                        "examples" + (" (the reported sequence and its disjoint validation sequence)" if s.val else "")
                        + ", leaving nothing to retain; use fewer or smaller requests.")
    order = numpy_rng(seed, "forget-seq", str(dataclasses.replace(s, val=False))).permutation(n)
    start = m * s.steps if s.val else 0
    return [np.sort(order[start + i * m:start + (i + 1) * m]).astype(np.int64) for i in range(s.steps)]


def _checked(idx: np.ndarray, n: int, s: ForgetSpec) -> np.ndarray:
    idx = np.sort(np.asarray(idx, dtype=np.int64))
    if idx.size == 0:
        raise DataError(f"Forget spec {str(s)!r} selects no training example; choose another spec.")
    if idx.size == n:
        raise DataError(f"Forget spec {str(s)!r} selects the whole training set; nothing would be retained.")
    return idx


def validation_indices(spec: ForgetSpec | str, labels: np.ndarray, seed: int, *, classes: list[str] | None = None,
                       num_classes: int | None = None, fine: Fine | None = None) -> np.ndarray:
    """Sorted indices of the validation set of `spec` (with or without its val: prefix), disjoint from its forget set.

    random:p, sample:n and indices:FILE -> as many examples, drawn (seeded) from the rest of the train set; when the
    rest has no more than that (random:50% and above) half of the rest, so that something is still retained;
    class:c -> class (c+1) mod K (a different class of the same scenario type); subclass:<name> -> the next
    sub-class (in the dataset's sub-class order); subclass:c:p -> as many examples
    from the non-forgotten rest of class c when it has enough, else from class (c+1) mod K; seq:<base>x<k> -> the
    next k requests of the same seeded order; poison -> the known part of another poisoned set of the same size drawn
    from the clean rows (its own original: the train set is manipulated differently). hard / easy / worst need a
    trained model: tasks/scenario_split.py chooses their validation rows.
    """
    s = parse_forget(spec) if isinstance(spec, str) else spec
    base = dataclasses.replace(s, val=False)
    n = len(labels)
    k = int(num_classes or (labels.max() + 1 if n else 0))
    if base.kind in MODEL_KINDS:
        raise DataError(f"Forget spec 'val:{base}' is chosen with a trained model: run it from a spec (unlearnlab run "
                        "--forget ...) or build the split with unlearnlab.tasks.scenario_split.build_split.")
    if base.kind == "seq":
        return np.concatenate(sequence_steps(dataclasses.replace(base, val=True), labels, seed))
    if base.kind == "poison":
        from .poison import known_indices, poisoned_indices

        v = dataclasses.replace(base, val=True)
        return known_indices(poisoned_indices(v, labels, seed, k), v, seed)
    if base.kind == "subclass" and base.pct is None:
        return _sub_class(base, fine, shift=1)
    taken = forget_indices(base, labels, seed, classes=classes, num_classes=k)
    rng = numpy_rng(seed, "forget-val", str(base))
    if base.kind == "class":
        return np.flatnonzero(labels == (_class_id(base.cls, classes, k, str(base)) + 1) % k)
    if base.kind == "subclass":
        c = _class_id(base.cls, classes, k, str(base))
        pool = np.setdiff1d(np.flatnonzero(labels == c), taken)
        if len(pool) < len(taken):
            pool = np.flatnonzero(labels == (c + 1) % k)
    else:
        pool = np.setdiff1d(np.arange(n), taken)
        if len(pool) <= len(taken) and len(pool) >= 4:
            return np.sort(rng.choice(pool, size=len(pool) // 2, replace=False))
    if len(pool) < len(taken) or (base.kind != "subclass" and len(pool) == len(taken)):
        raise DataError(f"Forget spec 'val:{base}': the rest of the train set has {len(pool)} examples, too few for "
                        f"a disjoint validation set of {len(taken)} (with something left to retain); use a smaller "
                        "forget set.")
    return np.sort(rng.choice(pool, size=len(taken), replace=False))


def make_split(train: Dataset, test: Dataset, spec: ForgetSpec | str, seed: int, *, num_classes: int,
               name: str = "custom", classes: list[str] | None = None,
               selector: Callable[[ForgetSpec, Dataset], np.ndarray] | None = None) -> UnlearnData:
    """Build UnlearnData from a train/test pair and a forget spec. hard/easy/worst need `selector(spec, train)` -> the
    chosen train rows (tasks/scenario_split.py trains the models it needs); poison manipulates the train set first."""
    s = parse_forget(spec) if isinstance(spec, str) else spec
    labels = labels_of(train)
    fine = (getattr(train, "fine", None), getattr(train, "fine_classes", None))  # datasets.with_coarse
    fine = None if fine[0] is None else fine
    extra: dict = {"classes": classes} if classes else {}
    if getattr(train, "pixel_norm", None) is not None:  # [0,1]-pixel normalisation of image data (datasets.Bundle)
        extra["pixel_norm"] = train.pixel_norm
    if s.kind == "poison":  # val: another, disjoint set of poisoned rows (poison.poisoned_indices)
        from .poison import manipulate, poisoned_indices

        bad = poisoned_indices(s, labels, seed, num_classes)
        train, extra["splits"] = manipulate(train, test, s, bad)
        extra["oracle_forget"] = bad  # the oracle never saw any manipulated row (docs/scenarios.md)
        extra["forget_record"] = {"poisoned": bad.tolist()}
    if s.kind in MODEL_KINDS:  # val: the selector returns the validation rows (tasks/scenario_split.py)
        if selector is None:
            raise DataError(f"Forget spec {str(s)!r} is chosen with a trained model; pass make_split(..., selector=) "
                            "or use unlearnlab.tasks.scenario_split.build_split.")
        f = _checked(selector(s, train), len(labels), s)
    else:
        f = forget_indices(s, labels, seed, classes=classes, num_classes=num_classes, fine=fine)
    if s.kind == "seq":
        extra["steps"] = sequence_steps(s, labels, seed)
    if s.kind in AUDIT_KINDS:  # stored in each run record: the rows, and per class how many (worst-case sets cluster)
        extra["forget_record"] = {"scenario": str(s), "forget": f.tolist(), **extra.get("forget_record", {}),
                                  "class_counts": np.bincount(labels[f], minlength=num_classes).tolist()}
        if s.kind == "seq":
            extra["forget_record"]["requests"] = [st.tolist() for st in extra["steps"]]
    r = np.setdiff1d(np.arange(len(labels)), f)
    return UnlearnData(train=train, test=test, forget_idx=f, retain_idx=r, num_classes=num_classes, name=name,
                       scenario=str(s), extra=extra)
