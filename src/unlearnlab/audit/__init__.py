"""Strict audits of a stored classifier run: population privacy attacks, representation and recovery attacks.

`audit(run_id, attacks=...)` trains (or reuses) the populations the attacks need as ordinary engine runs, computes
each attack with its floor and ceiling rows, and stores the result in the run's record under `audit`.
`audit_checkpoint(path, forget=...)` audits a model unlearned elsewhere (a checkpoint file) with the model attacks
against the original and the oracle of the same data and forget set.

Attacks (names as in `unlearnlab audit --attacks`):
    klom     KLoM per split at upper quantiles (fixed-forget-set population)
    eps      NeurIPS'23 unlearning-challenge forget score F and F x RA/TA ratios (fixed population)
    ps       Unlearning Comparator's worst-case privacy score per seed (fixed population)
    ulira    U-LiRA, "unlearned" vs "retrained" per canary (shadow population)
    lira     LiRA membership game on the unlearned shadows (kept vs forgotten canaries)
    rmia     RMIA, the same game (shadow population)
    cka      per-layer linear CKA to the original and the oracle on forget / retain
    probe    linear probe and k-NN accuracy of frozen features on the forget set
    relearn  relearning attack: fine-tune on half of the forget set, accuracy on the other half
    head     head recovery: retrain only the last layer on retain data, forget accuracy
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError

FIXED = ("klom", "eps", "ps")
SHADOW = ("ulira", "lira", "rmia")
MODEL = ("cka", "probe", "relearn", "head")
ATTACKS = FIXED + SHADOW + MODEL
DEFAULT_ATTACKS = ("klom", "eps", "ps", "ulira", "lira", "cka", "probe", "relearn", "head")


def parse_attacks(attacks: str | Sequence[str] | None) -> tuple[str, ...]:
    """Attack names from 'a,b' or a list ('all' = every attack); unknown names are a ConfigError."""
    import difflib

    if attacks is None:
        return DEFAULT_ATTACKS
    names = [a.strip() for a in (attacks.split(",") if isinstance(attacks, str) else attacks) if a.strip()]
    if names == ["all"]:
        return ATTACKS
    for a in names:
        if a not in ATTACKS:
            close = difflib.get_close_matches(a, ATTACKS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown attack {a!r}.{hint} Choose from {', '.join(ATTACKS)} (or 'all').")
    if not names:
        raise ConfigError(f"No attack given; choose from {', '.join(ATTACKS)} (or 'all').")
    return tuple(dict.fromkeys(names))


def audit(run_id: str, *, store: Any, attacks: str | Sequence[str] | None = None, population: int = 8,
          canaries: int = 200, backend: str = "serial", workers: int | None = None,
          sink: Callable[[dict], None] | None = None, save: bool = True) -> dict:
    """Audit the stored run `run_id`; returns {"run", "method", "population", "attacks", "wall_s"} and (save) stores
    it as the record's `audit` (a later audit with other attacks adds to it)."""
    from ..eval import model_audits as M
    from . import privacy as PR
    from .outputs import load_outputs
    from .populations import fixed_population, shadow_population, spec_of_record

    names = parse_attacks(attacks)
    if population < 2:
        raise ConfigError(f"population must be at least 2 models per role; got {population}.")
    record = store.get_run(run_id)
    spec = spec_of_record(record)
    stored = load_outputs(store, record)
    t0 = time.time()
    result: dict = {"run": record["id"], "method": spec.methods[0], "attacks": {},
                    "population": {"models_per_role": population}}
    say = sink or (lambda ev: None)
    if any(a in FIXED for a in names):
        say({"kind": "message", "t": time.time(), "text": f"fixed population: {population} seeds x (original, "
                                                           f"oracle, {spec.methods[0]})"})
        pop = fixed_population(spec, population, store=store, backend=backend, workers=workers, sink=sink)
        for a, fn in (("klom", PR.klom_audit), ("eps", PR.challenge_audit), ("ps", PR.privacy_score_audit)):
            if a in names:
                result["attacks"][a] = fn(pop)
    if any(a in SHADOW for a in names):
        say({"kind": "message", "t": time.time(), "text": f"shadow population: {population} shadows on "
                                                           f"{canaries} canaries"})
        sh = shadow_population(spec, population, canaries, store=store, backend=backend, workers=workers, sink=sink)
        result["population"]["canaries"] = int(len(sh.pool))
        for a in ("ulira", "lira", "rmia"):
            if a in names:
                result["attacks"][a] = PR.ulira_audit(sh) if a == "ulira" else PR.membership_audit(sh, a)
    if any(a in MODEL for a in names):
        say({"kind": "message", "t": time.time(), "text": "representation and recovery attacks"})
        m = rebuild(record, spec, store)
        result["rebuilt_max_logit_gap"] = M.stored_gap(m, stored)
        for a, fn in (("cka", M.cka_audit), ("probe", M.decodability_audit), ("relearn", M.relearn_audit),
                      ("head", M.head_recovery_audit)):
            if a in names:
                result["attacks"][a] = fn(m)
    result["wall_s"] = time.time() - t0
    if save:
        previous = (record.get("audit") or {}).get("attacks", {})
        merged = {**result, "attacks": {**previous, **result["attacks"]}}
        store.annotate(record["id"], "audit", merged)
    return result


def audit_checkpoint(path: str, *, store: Any, forget: str, dataset: str = "", original: str = "", seed: int = 0,
                     split_seed: int = 0, attacks: str | Sequence[str] | None = None,
                     sink: Callable[[dict], None] | None = None) -> dict:
    """Audit a model unlearned outside unlearnlab, saved as a checkpoint (PATH.safetensors + PATH.json with at least
    `arch`, as `unlearnlab train` / `models.save_checkpoint` write), with the model attacks (cka, probe, relearn,
    head). Floor and ceiling come from the oracle retrained on the retain set of `forget` and from the original:
    `original` (the user's checkpoint the model was unlearned from) or the one unlearnlab trains with the dataset's
    recipe and `seed`. Population attacks re-run a method over seeds, which a checkpoint does not carry: they are
    refused. The checkpoint is read afresh every time (nothing is answered from a cache); the result is returned,
    not stored, and names the file's SHA-256."""
    import hashlib
    from pathlib import Path

    from ..eval import model_audits as M
    from ..eval.model_audits import Models
    from ..models import build_model
    from ..models.checkpoint import load_checkpoint, read_meta
    from ..spec import from_dict
    from ..tasks.classifier import ClassifierTask

    names = parse_attacks(attacks) if attacks else MODEL
    bad = [a for a in names if a not in MODEL]
    if bad:
        raise ConfigError(f"{', '.join(bad)} re-run the unlearning method over seeds and shadow models; a checkpoint "
                          f"carries no method to re-run. Audit a checkpoint with {', '.join(MODEL)}, or run the "
                          "method through unlearnlab (`unlearnlab run`) and audit that run's id.")
    if not forget:
        raise ConfigError("Auditing a checkpoint needs the forget set it was unlearned on, e.g. --forget class:3 or "
                          "--forget random:10% (with --split-seed as when it was made).")
    meta = read_meta(path)
    dataset = dataset or meta.get("dataset", "")
    if not dataset:
        raise ConfigError(f"Checkpoint {path} does not say its dataset; pass --dataset (e.g. digits, cifar10-dev).")
    spec = from_dict({"dataset": dataset, "forget": forget, "model": meta.get("arch", ""), "methods": [],
                      "seeds": [seed], "split_seed": split_seed, "original": original})
    say = sink or (lambda ev: None)
    say({"kind": "message", "t": time.time(), "text": "original and oracle (trained or from the store's cache)"})
    t0 = time.time()
    task = ClassifierTask()
    sc = task.context(spec, seed, store)
    other, _ = task._model(spec, seed + 1, "oracle", store)
    arch = spec.model_spec()
    model = build_model(arch, sc.data.input_shape, sc.data.num_classes, seed=seed).to(sc.task.device)
    load_checkpoint(path, model, expect={"arch": arch, "dataset": sc.bundle.name})
    m = Models(model.eval(), sc.original, sc.oracle, other, sc.data, sc.task, sc.recipe, seed)
    digest = hashlib.sha256(Path(path).with_suffix(".safetensors").read_bytes()).hexdigest()
    result: dict = {"run": str(path), "method": "checkpoint", "checkpoint_sha256": digest, "spec": spec.to_dict(),
                    "attacks": {}, "population": {"models_per_role": 1}}
    say({"kind": "message", "t": time.time(), "text": "representation and recovery attacks"})
    for a, fn in (("cka", M.cka_audit), ("probe", M.decodability_audit), ("relearn", M.relearn_audit),
                  ("head", M.head_recovery_audit)):
        if a in names:
            result["attacks"][a] = fn(m)
    result["wall_s"] = time.time() - t0
    return result


def rebuild(record: dict, spec: Any, store: Any) -> Any:
    """The run's models (tasks.rebuild) plus the oracle of the next seed (the CKA floor)."""
    from ..eval.model_audits import Models
    from ..tasks.classifier import ClassifierTask
    from ..tasks.rebuild import rebuild as rebuild_run

    rm = rebuild_run(record, store)
    seed = spec.seeds[0]
    other, _ = ClassifierTask()._model(spec, seed + 1, "oracle", store)
    return Models(rm.model, rm.original, rm.oracle, other, rm.data, rm.task, spec.train_config(), seed)


__all__ = ["ATTACKS", "DEFAULT_ATTACKS", "audit", "audit_checkpoint", "parse_attacks", "rebuild"]
