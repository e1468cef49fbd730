"""Language models in the engine: fine-tune target and retain oracle (cached), method presets, records.

The engine Task is tasks/lm_task.py (QATask); `run_lm(spec)` runs a spec dict through it. Spec keys (RunSpec keys;
the LM extras below travel in RunSpec.options):
  model    'smollm2' (default), 'tiny[:opts]', or a Hugging Face id / local folder
  dataset  'qa[:authors=20,facts=10,holdout=2]' (generated fictitious authors), 'tofu[:forget10]' (locuslab/TOFU
           from the hub), 'tofu:DIR' / 'tofu:train=..,forget=..'
           (TOFU's JSON files) or 'corpus:DIR' (MUSE-style documents); see data/lm_sources.py
  forget   '10%' (also 'authors:10%' / 'random:10%': a percentage of the authors; tofu:DIR: 1%, 5% or 10%)
  methods  list of LM method names, or ['all']; seeds: list of ints; split_seed: the QA generator seed
  recipe   overrides of the fine-tune recipe (FinetuneLMConfig), {"preset": "tofu"} (or the string "tofu") for TOFU /
           OpenUnlearning's standard fine-tune; overrides: {method: {field: value}}
  epochs / lr  optional overrides applied to every method's config; device; max_length; baselines (bool)
  attacks  'relearn', 'leak', 'paraphrase' metrics added to every record (tasks/lm_attacks.py); attack_options
  eval_rows  score retain / real_authors / world_facts on a seeded subset of this many rows (0 = all; D_f and the
           holdout authors stay complete), as TOFU scores a retain subset
  system_prompt  system turn before every question (None = the template's own; SmolLM2's costs 18 tokens)
  eval     evaluation protocol overrides (eval/lm_eval.py LMEvalConfig: max_new_tokens, utility_sets, knowmem, ...);
           the defaults are the reference code's, and every record stores the protocol used under "eval"
  trajectory  evaluate every method after each of its epochs (record key "trajectory": forget ROUGE / Prob, Model
           Utility, Forget Quality per epoch), so methods can be compared at matched forgetting
Each record: {"spec", "metrics", "timings": {"wall_s", "cpu_s", "eval_s", "attack_s"}, "memory", "env"};
'original' (the target, timings.finetune_s) and 'retrain' (the retain-only oracle) are included unless baselines=False.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import to_dict
from ..data.lm_sources import LMSource, lm_source, parse_qa_options
from ..errors import ConfigError, UnlearnLabError
from ..train import resolve_device, train
from .lm_attacks import AttackRunner, attack_configs, check_attack_data, describe, evaluation_rows, parse_attacks
from .lm_attacks import with_system_prompt as with_system_prompt
from .lm_recipe import (  # noqa: F401  (re-exported: the recipe API lives in lm_recipe.py)
    METHOD_PRESETS,
    PRESETS,
    FinetuneLMConfig,
    family,
    finetune_config,
    recipe_dict,
    train_config,
)

Progress = Callable[[str], None]


def _tied_free_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without duplicated (tied) tensors, each a standalone copy (safetensors rejects shared memory)."""
    seen: set[int] = set()
    out = {}
    for k, v in model.state_dict().items():
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        out[k] = v.detach().cpu().clone()
    return out


class _Cacheable:
    """Adapter giving the Store a tied-weight-safe state_dict / load_state_dict for an HF model."""

    def __init__(self, model: nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return _tied_free_state(self.model)

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> Any:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        expected_missing = set(self.model.state_dict()) - set(self.state_dict())
        if unexpected or set(missing) - expected_missing:
            raise UnlearnLabError(f"Cached LM weights do not match the model (missing {missing[:3]}, unexpected "
                                  f"{unexpected[:3]}); delete the cache entry and run again.")
        return missing, unexpected


def cache_key(which: str, model_spec: str, data, cfg: FinetuneLMConfig, seed: int) -> str:
    """Content key of a fine-tuned model: model spec, the tokens it trains on (the target: all training QA, so
    every forget split of the same data, a validation split included, shares one target; the oracle: the retain
    split), recipe, seed."""
    ds = data.train if which == "target" else data.retain
    content = ds.fingerprint() if callable(getattr(ds, "fingerprint", None)) else data.fingerprint()
    body = json.dumps({"which": which, "model": model_spec, "data": content, "cfg": recipe_dict(cfg),
                       "seed": seed}, sort_keys=True)
    return f"lm-{which}-" + hashlib.sha256(body.encode()).hexdigest()[:24]


def _load_cached(key: str, model: nn.Module, store, cache_dir: Path | None) -> dict | None:
    if store is not None and hasattr(store, "load_model"):
        return store.load_model(key, _Cacheable(model))
    if cache_dir is not None and (cache_dir / f"{key}.safetensors").is_file():
        from safetensors.torch import load_file

        _Cacheable(model).load_state_dict(load_file(str(cache_dir / f"{key}.safetensors")))
        return json.loads((cache_dir / f"{key}.json").read_text())
    return None


def _save_cached(key: str, model: nn.Module, meta: dict, store, cache_dir: Path | None) -> None:
    if store is not None and hasattr(store, "save_model"):
        store.save_model(key, _Cacheable(model), meta)
    elif cache_dir is not None:
        from safetensors.torch import save_file

        from ..models.checkpoint import atomic_write

        state = _tied_free_state(model)
        atomic_write(cache_dir / f"{key}.safetensors", lambda t: save_file(state, t))
        atomic_write(cache_dir / f"{key}.json", lambda t: Path(t).write_text(json.dumps(meta)))


def finetune(base: nn.Module, data, which: str, cfg: FinetuneLMConfig, task, *, seed: int = 0, store=None,
             cache_dir: str | Path | None = None, model_spec: str = "") -> tuple[nn.Module, float]:
    """A fine-tuned copy of `base`: 'target' on all training QA, 'oracle' on the retain split only.

    Returns (model, training seconds); a cached model (Store or `cache_dir`) returns its recorded seconds.
    """
    import copy

    if which not in ("target", "oracle"):
        raise ConfigError(f"finetune which must be 'target' or 'oracle'. Got {which!r} instead.")
    spec = model_spec or getattr(base, "unlearnlab_spec", type(base).__name__)
    key = cache_key(which, spec, data, cfg, seed)
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    model = copy.deepcopy(base)
    meta = _load_cached(key, model, store, cache_dir)
    if meta is not None:
        return model.eval(), float(meta.get("seconds", float("nan")))
    ds = data.train if which == "target" else data.retain
    t0 = time.perf_counter()
    train(model, ds, train_config(cfg), task, seed=seed, key=f"lm-{which}", what=f"fine-tuning the {which} model")
    seconds = time.perf_counter() - t0
    _save_cached(key, model, {"which": which, "model": spec, "seconds": seconds, "examples": len(ds)},
                 store, cache_dir)
    return model.eval(), seconds


@dataclasses.dataclass
class LMSetup:
    """Everything a method run needs: data, tokenizer, task, the target and oracle models and their timings."""

    data: Any
    tokenizer: Any
    task: Any
    base: nn.Module
    target: nn.Module
    oracle: nn.Module
    timings: dict[str, float]
    eval_rows: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    cache: Any = None  # an LMOutputCache shared by every evaluation of this setup (oracle passes run once)
    attacks: AttackRunner | None = None
    eval_cfg: Any = None  # the LMEvalConfig of the spec's `eval` options


def parse_dataset(name: str) -> dict[str, Any]:
    """Generator options of 'qa[:authors=20,facts=10,holdout=2,style=short]' (other dataset kinds: lm_source)."""
    head, _, rest = (name or "qa").partition(":")
    if head not in ("qa", "digits"):
        raise ConfigError(f"dataset {name!r} is not a generated QA dataset ('qa' or 'qa:authors=20,facts=10').")
    return parse_qa_options(rest)


@dataclasses.dataclass
class LMBase:
    """The base model, tokenizer, tokenised data and fine-tune recipe of one LM spec (before any fine-tune)."""

    base: nn.Module
    tokenizer: Any
    data: Any
    task: Any
    cfg: FinetuneLMConfig
    model_spec: str
    load_s: float


def load_base(spec: dict[str, Any], *, progress: Progress | None = None,
              source: LMSource | None = None) -> LMBase:
    """Read or generate the data (data/lm_sources.py), load the base model and tokenise; checks that the requested
    attacks can run on this data before anything is fine-tuned."""
    from ..data.qa import row_texts
    from ..data.tofu import idk_answers, utility_sets
    from ..models.lm import LMTask, load_lm

    progress = progress or (lambda msg: None)
    model_spec = spec.get("model") or "smollm2"
    source = source or lm_source(spec.get("dataset", "qa"), spec.get("forget"), int(spec.get("split_seed", 0)))
    utility = utility_sets() if source.kind != "corpus" else {}
    system = spec.get("system_prompt")
    texts = source.texts + [t for rows in utility.values() for t in row_texts(rows)] + idk_answers() + [system or ""]
    device = resolve_device(spec.get("device", "auto"))
    t0 = time.perf_counter()
    progress(f"loading {model_spec}")
    base, tok = load_lm(model_spec, device=device, texts=texts)
    with_system_prompt(tok, system)
    load_s = time.perf_counter() - t0
    cfg = finetune_config(model_spec, spec.get("recipe"))
    data = source.build(tok, cfg.max_length, utility)
    check_attack_data(parse_attacks(spec.get("attacks")), data.extra.get("rows", {}).get("forget", []))
    return LMBase(base, tok, data, LMTask(tok, device), cfg, model_spec, load_s)


def finetune_role(lb: LMBase, which: str, *, seed: int, store=None, cache_dir: str | Path | None = None,
                  progress: Progress | None = None) -> tuple[nn.Module, float]:
    """The fine-tuned 'target' (all QA) or 'oracle' (retain QA only) of `lb`, cached in the store."""
    progress = progress or (lambda msg: None)
    progress("fine-tuning the target model (all QA)" if which == "target" else
             "fine-tuning the retain oracle (retain QA only)")
    return finetune(lb.base, lb.data, which, lb.cfg, lb.task, seed=seed, store=store, cache_dir=cache_dir,
                    model_spec=lb.model_spec)


def prepare_lm(spec: dict[str, Any], *, store=None, progress: Progress | None = None,
               cache_dir: str | Path | None = None, seed: int = 0, source: LMSource | None = None) -> LMSetup:
    """Load base model and data (load_base), fine-tune (or load cached) target and oracle: an LMSetup."""
    from ..eval.lm_eval import LMOutputCache, eval_config

    lb = load_base(spec, progress=progress, source=source)
    target, target_s = finetune_role(lb, "target", seed=seed, store=store, cache_dir=cache_dir, progress=progress)
    oracle, oracle_s = finetune_role(lb, "oracle", seed=seed, store=store, cache_dir=cache_dir, progress=progress)
    attacks = parse_attacks(spec.get("attacks"))
    forget_rows = lb.data.extra.get("rows", {}).get("forget", [])
    runner = AttackRunner(attack_configs(attacks, family(lb.model_spec), spec.get("attack_options")), lb.tokenizer,
                          forget_rows, target, oracle, seed=seed) if attacks else None
    return LMSetup(lb.data, lb.tokenizer, lb.task, lb.base, target, oracle,
                   {"load_s": lb.load_s, "target_s": target_s, "oracle_s": oracle_s},
                   evaluation_rows(lb.data, int(spec.get("eval_rows") or 0), int(spec.get("split_seed", 0))),
                   LMOutputCache(), runner, eval_config(spec.get("eval")))


def lm_method_names(requested: list[str] | tuple[str, ...]) -> list[str]:
    """Requested LM methods ('all' = every method registered for kind 'lm'), validated."""
    from ..methods import METHODS

    lm = [n for n, m in METHODS.items() if "lm" in m.kinds]
    names = lm if not requested or list(requested) == ["all"] else list(requested)
    for n in names:
        m = METHODS.get(n)
        if "lm" not in m.kinds:
            raise ConfigError(f"Method {n!r} does not apply to language models; LM methods: {', '.join(lm)}.")
    return names


def method_overrides(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """Config overrides of `name`, later layers winning: the LM optimisation defaults (for a method whose config
    is the classifier's, e.g. GA), the model family's preset, the method's named preset (overrides[name]['preset'],
    e.g. RMU's 'tofu'), spec epochs/lr, then the other fields of spec overrides[name]."""
    from ..config import fields
    from ..methods import METHODS
    from ..methods._lm_common import LMUnlearnConfig, lm_training_defaults
    from ..methods.base import with_preset

    cls = METHODS.get(name).config
    known = {f.name for f in fields(cls)}
    presets = METHOD_PRESETS.get(family(spec.get("model") or "smollm2"), {})
    user = dict((spec.get("overrides") or {}).get(name, {}))
    # GA shares the classifier config (SGD, lr 1e-3, batch 128): on an LM it trains like every other LM method
    base = {} if issubclass(cls, LMUnlearnConfig) else lm_training_defaults()
    named = with_preset(cls, {"preset": user["preset"]}) if user.get("preset") is not None else {}
    out = {k: v for k, v in {**base, **presets.get("*", {}), **presets.get(name, {}), **named}.items() if k in known}
    out.update({k: spec[k] for k in ("epochs", "lr") if spec.get(k) is not None and k in known})
    out.update(user)
    return out


def _evaluate(model: nn.Module, setup: LMSetup) -> dict[str, float]:
    """evaluate_lm on the setup's evaluation rows, against the oracle, sharing the setup's output cache."""
    from ..eval.lm_eval import evaluate_lm

    return evaluate_lm(model, setup.tokenizer, setup.eval_rows or setup.data, reference=setup.oracle,
                       target=setup.target, cache=setup.cache, config=setup.eval_cfg)


def record_spec(spec: dict, method: str, seed: int, config: dict, digest: str | None = None) -> dict[str, Any]:
    """The stored spec of one LM (method, seed) run: enough to reproduce and to resume (`digest`: content hash of
    file-based data, so an edited file is not matched to an old run)."""
    model = spec.get("model") or "smollm2"
    out = {"task": "qa", "dataset": spec.get("dataset", "qa"), "forget": spec.get("forget", "10%"),
           "split_seed": spec.get("split_seed", 0), "model": model,
           "recipe": recipe_dict(finetune_config(model, spec.get("recipe"))), "method": method, "config": config,
           "seed": seed, "name": spec.get("name", "")}
    attacks = parse_attacks(spec.get("attacks"))
    if attacks:  # only when set, so records stored before these keys existed are still found on resume
        out["attacks"] = list(attacks)
        out["attack_options"] = describe(attack_configs(attacks, family(model), spec.get("attack_options")))
    if spec.get("eval_rows"):
        out["eval_rows"] = int(spec["eval_rows"])
    if digest is not None:
        out["data_digest"] = digest
    if spec.get("system_prompt") is not None:
        out["system_prompt"] = spec["system_prompt"]
    if spec.get("trajectory"):
        out["trajectory"] = True
    if spec.get("eval"):
        from ..eval.lm_eval import eval_config

        out["eval"] = to_dict(eval_config(spec["eval"]))
    return out


SHOWN = ("forget_ROUGE", "retain_ROUGE", "Model Utility", "Forget Quality", "Relearn-recovery-ROUGE")


def _measure(model: nn.Module, setup: LMSetup, timings: dict[str, float]) -> dict[str, float]:
    """Evaluation metrics plus the requested attacks' metrics; their seconds go into `timings`."""
    t0 = time.perf_counter()
    metrics = _evaluate(model, setup)
    timings["eval_s"] = time.perf_counter() - t0
    if setup.attacks is not None:
        t0 = time.perf_counter()
        metrics |= setup.attacks(model)
        timings["attack_s"] = time.perf_counter() - t0
    return metrics


def run_lm(spec: dict[str, Any], *, store=None, progress: Progress | None = None, resume: bool = True,
           errors: list[dict] | None = None) -> list[dict]:
    """Run every (method, seed) of an LM spec dict through the engine (serial); see tasks/lm_task.py."""
    from .lm_task import run_lm as _run

    return _run(spec, store=store, progress=progress, resume=resume, errors=errors)


__all__ = ["FinetuneLMConfig", "finetune", "finetune_config", "train_config", "recipe_dict", "cache_key", "family",
           "PRESETS",
           "METHOD_PRESETS", "run_lm", "prepare_lm", "load_base", "finetune_role", "LMBase",
           "LMSetup", "lm_method_names", "method_overrides", "record_spec", "evaluation_rows", "with_system_prompt"]
