"""Model populations ("oracle zoo") for audits, trained as ordinary engine runs so they are parallel, cached and
resumable like every sweep.

Two populations serve a target run (dataset, forget set, method + config, seed s):

* fixed: N seeds s, s+1, ... of (original, retrained oracle, the method) on the target's own forget set. KLoM, the
  NeurIPS'23 challenge score and the Comparator privacy score compare the unlearned and retrained populations
  example by example.
* shadows: N shadow runs k = 0..N-1 on a pool of `canaries` training examples; shadow k forgets a random half of the
  pool (an `indices:` forget set written under the store, drawn from k), so every canary is forgotten by about half of
  the shadows and kept by the others. LiRA, U-LiRA and RMIA need exactly this in/out structure (Carlini et al. 2022;
  Hayes et al. 2024). The shadow forget sets are random whatever the target's scenario: the attacks measure the
  method (with the target's hyper-parameters) on per-example forgetting.

Each run stores its per-example outputs (audit.outputs); this module only stacks them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, UnlearnLabError
from .outputs import load_outputs


@dataclasses.dataclass
class Fixed:
    """A fixed-forget-set population: per role ('original', 'retrain', 'unlearned') and split, [N, n, K] logits."""

    seeds: list[int]
    logits: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]
    metrics: dict[str, list[dict]]


@dataclasses.dataclass
class Shadows:
    """A shadow population over a canary pool: [N, T, K] logits per role, forgotten[k, i] = canary i in shadow k's
    forget set, and [N, n_test, K] test logits per role (RMIA's population z)."""

    pool: np.ndarray
    labels: np.ndarray
    forgotten: np.ndarray
    logits: dict[str, np.ndarray]
    test_logits: dict[str, np.ndarray]
    test_labels: np.ndarray


def spec_of_record(record: dict) -> Any:
    """The RunSpec of a stored classifier method run (its method and seed alone), for its populations."""
    from ..tasks.rebuild import run_spec_of

    method = record["spec"].get("method", "")
    if method in ("original", "retrain", "oracle-floor"):
        raise ConfigError(f"Run {record.get('id', '?')} is the {method!r} baseline, not an unlearning method; audit "
                          "a method's run (see `unlearnlab runs list`).")
    return run_spec_of(record, device="auto")


def _execute(specs: list, store: Any, backend: str, workers: int | None, sink: Callable[[dict], None] | None) -> list:
    from ..engine.runner import execute

    res = execute(specs, store=store, backend=backend, workers=workers, sink=sink, floor=False)
    if res["errors"]:
        e = res["errors"][0]
        raise UnlearnLabError(f"{len(res['errors'])} population job(s) failed, e.g. {e['job']}: {e['error']}")
    return res["records"]


def _role(rec: dict, method: str) -> str:
    m = rec["spec"]["method"]
    return "unlearned" if m == method else m


def fixed_population(spec: Any, n: int, *, store: Any, backend: str = "serial", workers: int | None = None,
                     sink: Callable[[dict], None] | None = None) -> Fixed:
    """Train (or reuse) N seeds of original / oracle / method on the target's forget set; stack their outputs."""
    if n < 2:
        raise ConfigError(f"A population needs at least 2 models per role; got {n}.")
    method = spec.methods[0]
    seeds = [spec.seeds[0] + i for i in range(n)]
    records = _execute([dataclasses.replace(spec, seeds=tuple(seeds))], store, backend, workers, sink)[0]
    by: dict[str, dict[int, dict]] = {}
    for rec in records:
        by.setdefault(_role(rec, method), {})[int(rec["spec"]["seed"])] = rec
    logits: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    metrics: dict[str, list[dict]] = {}
    for role, recs in by.items():
        outs = [load_outputs(store, recs[s]) for s in seeds]
        logits[role] = {split: np.stack([o[split]["logits"] for o in outs]) for split in outs[0]}
        labels = {split: outs[0][split]["labels"] for split in outs[0]}
        metrics[role] = [recs[s]["metrics"] for s in seeds]
    return Fixed(seeds, logits, labels, metrics)


def canary_pool(spec: Any, n_train: int, size: int) -> np.ndarray:
    """`size` training rows drawn from the split seed (the same pool for every shadow)."""
    from ..seeding import numpy_rng

    if not 4 <= size <= n_train:
        raise ConfigError(f"canaries must be between 4 and the train set's size {n_train}; got {size}.")
    return np.sort(numpy_rng(spec.split_seed, "audit-canaries", size).choice(n_train, size=size, replace=False))


def _forget_file(root: Path, pool: np.ndarray, k: int) -> str:
    from ..seeding import numpy_rng

    half = np.sort(numpy_rng(k, "audit-shadow-forget").choice(pool, size=len(pool) // 2, replace=False))
    text = json.dumps(half.tolist())
    path = root / "audit" / "forget" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{k}")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


def shadow_population(spec: Any, n: int, canaries: int, *, store: Any, backend: str = "serial",
                      workers: int | None = None, sink: Callable[[dict], None] | None = None) -> Shadows:
    """N shadow runs (seed k, forget = a random half of the canary pool); stacks canary and test outputs."""
    from ..data import load_dataset

    if n < 4:
        raise ConfigError(f"Shadow attacks need at least 4 shadow models (each canary in and out of about half); "
                          f"got {n}.")
    n_train = len(load_dataset(spec.dataset, seed=0).train)
    pool = canary_pool(spec, n_train, canaries)
    specs = [dataclasses.replace(spec, forget=f"indices:{_forget_file(Path(store.root), pool, k)}", seeds=(k,))
             for k in range(n)]
    method = spec.methods[0]
    logits: dict[str, list[np.ndarray]] = {}
    tests: dict[str, list[np.ndarray]] = {}
    forgotten = np.zeros((n, len(pool)), dtype=bool)
    labels = test_labels = np.zeros(0)
    for k, records in enumerate(_execute(specs, store, backend, workers, sink)):
        for rec in records:
            o = load_outputs(store, rec)
            rows = np.concatenate([o["forget"]["index"], o["retain"]["index"]])
            order = np.argsort(rows)
            pos = order[np.searchsorted(rows, pool, sorter=order)]
            lg = np.concatenate([o["forget"]["logits"], o["retain"]["logits"]])[pos]
            labels = np.concatenate([o["forget"]["labels"], o["retain"]["labels"]])[pos]
            forgotten[k] = np.isin(pool, o["forget"]["index"])
            logits.setdefault(_role(rec, method), []).append(lg)
            tests.setdefault(_role(rec, method), []).append(o["test"]["logits"])
            test_labels = o["test"]["labels"]
    return Shadows(pool, labels, forgotten, {r: np.stack(v) for r, v in logits.items()},
                   {r: np.stack(v) for r, v in tests.items()}, test_labels)


__all__ = ["Fixed", "Shadows", "canary_pool", "fixed_population", "shadow_population", "spec_of_record"]
