"""What an LM run measures beyond evaluate_lm: robustness attacks (spec key `attacks`) and the evaluation set-up.

`run_lm` adds, for every (method, seed) record whose spec asks for them (eval/lm_attacks.py has the definitions):
  relearn     Relearn-recovery-ROUGE / Relearn-recovery-Prob (0 = nothing restored, 1 = the target's level is
              back) and the raw relearn_{ROUGE,Prob}_{before,after,target,oracle} on the held-out half of D_f.
  leak        leak@k (max over the temperature/top-p grid) and leak@k[T=..,p=..] per grid point, on D_f.
  paraphrase  forget_paraphrased_ROUGE / forget_paraphrased_Prob: D_f asked with reworded questions.
Options per attack come from `spec["attack_options"]` ({"relearn": {"steps": 20}, "leak": {"k": 4}}) over the
model family's ATTACK_PRESETS over the defaults below. The target's and the oracle's relearning values are
computed once per seed and shared by every record (same seeded split of D_f).
The evaluation set-up: `evaluation_rows` (spec key eval_rows: a seeded subset of retain / utility rows) and
`with_system_prompt` (spec key system_prompt: a shorter system turn than the chat template's default).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from torch import nn

from ..config import build, param, to_dict
from ..errors import ConfigError, UnknownNameError

ATTACKS = ("relearn", "leak", "paraphrase")


@dataclasses.dataclass(frozen=True)
class RelearnAttackConfig:
    """Relearning attack (Hu et al. 2024, 'Jogging the Memory of Unlearned LLMs'; Lynch et al. 2024): a few
    AdamW steps of answer NLL on part of D_f, recovery measured on the rest."""

    steps: int = param(10, "optimisation steps on the relearn half (a few: Hu et al. 2024)", low=1)
    lr: float = param(1e-4, "AdamW learning rate of the relearning fine-tune", low=0.0)
    batch_size: int = param(4, "forget examples per relearning step", low=1)
    frac: float = param(0.5, "fraction of D_f the attacker trains on (recovery is measured on the rest)",
                        low=0.0, high=1.0)


@dataclasses.dataclass(frozen=True)
class LeakAttackConfig:
    """leak@k (Scholten et al. 2024, 'A Probabilistic Perspective on Unlearning and Alignment for LLMs')."""

    k: int = param(8, "samples per forget question", low=1)
    threshold: float = param(0.8, "ROUGE-L recall vs the true answer that counts as a leak", low=0.0, high=1.0)
    grid: tuple = param(((0.7, 0.9), (1.0, 0.9), (1.0, 1.0)), "(temperature, top-p) pairs sampled")


CONFIGS: dict[str, type | None] = {"relearn": RelearnAttackConfig, "leak": LeakAttackConfig, "paraphrase": None}
# Per model family. tiny: lr 3e-4. Measured on qa:authors=10,facts=4, forget 20%, GA/NPO at lr 1e-3 for 3 epochs
# (10 relearning steps on half of D_f, held-out ROUGE before -> after): at 3e-3 the attack erases the target's own
# held-out answers (1.000 -> 0.000) and everyone's, so it measures damage, not recovery; at 1e-3 GA falls
# 0.917 -> 0.250; at 3e-4 the target keeps 1.000, the oracle control moves 0.000 -> 0.083 and GA / NPO recover
# 0.917 -> 0.833 / 0.667 -> 0.833. The rule: the attacker must leave a model that knows D_f intact.
ATTACK_PRESETS: dict[str, dict[str, dict[str, Any]]] = {"tiny": {"relearn": {"lr": 3e-4, "batch_size": 2}}}


def parse_attacks(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """'relearn,leak' / ['relearn'] / None -> validated tuple of attack names (in ATTACKS order, no repeats)."""
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    for n in names:
        if n not in ATTACKS:
            raise UnknownNameError("attack", n, ATTACKS)
    return tuple(a for a in ATTACKS if a in names)


def attack_configs(attacks: tuple[str, ...], family: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The config of each requested attack: defaults, then the family's preset, then `options[attack]`."""
    options = dict(options or {})
    for k in options:
        if k not in ATTACKS:
            raise UnknownNameError("attack_options key", k, ATTACKS)
    out: dict[str, Any] = {}
    for a in attacks:
        cls = CONFIGS[a]
        given = {**ATTACK_PRESETS.get(family, {}).get(a, {}), **(options.get(a) or {})}
        if cls is None:
            if given:
                raise ConfigError(f"The {a} attack takes no options; got {sorted(given)}. Remove them.")
            out[a] = None
            continue
        if "grid" in given:
            given["grid"] = tuple(tuple(float(x) for x in g) for g in given["grid"])
        cfg = build(cls, given, what=f"{a} attack")
        if isinstance(cfg, RelearnAttackConfig) and not 0 < cfg.frac < 1:
            raise ConfigError(f"relearn frac must lie strictly between 0 and 1. Got {cfg.frac} instead.")
        out[a] = cfg
    return out


def describe(configs: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly form of attack_configs() for run records."""
    return {a: (to_dict(c) if c is not None else {}) for a, c in configs.items()}


def with_system_prompt(tokenizer: Any, text: str | None) -> Any:
    """Make the tokenizer's chat template open every conversation without a system turn with `text` (None: as is)."""
    from ..models.lm_format import has_chat_template

    if text is None:
        return tokenizer
    if not has_chat_template(tokenizer):
        raise ConfigError("system_prompt needs a tokenizer with a chat template; this one formats prompts as "
                          "'Question: ...\\nAnswer:'. Drop system_prompt for this model.")
    tokenizer.chat_template = ("{%- if messages and messages[0]['role'] != 'system' %}{%- set messages = "
                               "[{'role': 'system', 'content': " + json.dumps(text, ensure_ascii=False) +
                               "}] + messages %}{%- endif %}" + tokenizer.chat_template)
    return tokenizer


def evaluation_rows(data, cap: int = 0, seed: int = 0) -> dict[str, list[dict]]:
    """QA rows per evaluated split; retain and the utility sets cut to a seeded subset of `cap` rows when cap > 0."""
    from ..seeding import numpy_rng

    if not data.extra.get("rows"):
        return {}  # a document corpus: evaluate_lm scores the documents themselves
    rows = {**data.extra.get("utility", {}), **data.extra["rows"]}
    rows.pop("test", None)  # the holdout authors again
    for split in ("retain", "real_authors", "world_facts"):
        if cap and len(rows.get(split, ())) > cap:
            keep = np.sort(numpy_rng(seed, "eval-rows", split).choice(len(rows[split]), cap, replace=False))
            rows[split] = [rows[split][int(i)] for i in keep]
    return rows


def check_attack_data(attacks: tuple[str, ...], forget_rows: list[dict]) -> None:
    """Fail before any training when the forget rows cannot support a requested attack."""
    if attacks and not forget_rows:
        raise ConfigError(f"The attacks ({', '.join(attacks)}) ask questions about D_f; this dataset has no QA "
                          "rows (a document corpus). Drop --attacks for corpus runs.")
    if "relearn" in attacks and len(forget_rows) < 2:
        raise ConfigError(f"The relearn attack trains on part of D_f and scores the rest, so it needs >= 2 forget "
                          f"rows; this forget set has {len(forget_rows)}. Forget more authors or drop 'relearn'.")
    if "paraphrase" in attacks and not any(r.get("paraphrased_question") for r in forget_rows):
        raise ConfigError("The paraphrase attack needs forget rows with a 'paraphrased_question'; this data has "
                          "none. Drop 'paraphrase' or add the field (TOFU's name) to the rows.")


class AttackRunner:
    """Runs the requested attacks on a model against one setup (tokenizer, forget rows, target, oracle, seed)."""

    def __init__(self, configs: dict[str, Any], tokenizer: Any, forget_rows: list[dict], target: nn.Module,
                 oracle: nn.Module, *, seed: int = 0, max_new_tokens: int = 32, batch_size: int = 16):
        self.configs = configs
        self.tokenizer = tokenizer
        self.rows = list(forget_rows)
        self.target, self.oracle = target, oracle
        self.seed, self.max_new_tokens, self.batch_size = seed, max_new_tokens, batch_size
        self._anchors: dict[str, float] | None = None  # relearn_*_target / relearn_*_oracle, once per runner

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """Metrics of every configured attack on `model`."""
        res: dict[str, float] = {}
        if "relearn" in self.configs:
            res |= self.relearn(model)
        if "leak" in self.configs:
            res |= self.leak(model)
        if "paraphrase" in self.configs:
            res |= self.paraphrase(model)
        return res

    def relearn(self, model: nn.Module) -> dict[str, float]:
        """Relearning attack; the target/oracle anchors are computed on the first call and reused."""
        from ..eval.lm_attacks import relearn_attack
        from ..eval.lm_metrics import recovery

        c: RelearnAttackConfig = self.configs["relearn"]
        kw = {"frac": c.frac, "steps": c.steps, "lr": c.lr, "batch_size": c.batch_size, "seed": self.seed,
              "max_new_tokens": self.max_new_tokens}
        first = self._anchors is None
        res = relearn_attack(model, self.tokenizer, self.rows, target=self.target if first else None,
                             reference=self.oracle if first else None, **kw)
        if first:
            self._anchors = {k: v for k, v in res.items() if k.endswith(("_target", "_oracle"))}
        res |= self._anchors
        for k in ("ROUGE", "Prob"):
            res[f"Relearn-recovery-{k}"] = recovery(res[f"relearn_{k}_after"], res[f"relearn_{k}_before"],
                                                    res[f"relearn_{k}_target"])
        return res

    def leak(self, model: nn.Module) -> dict[str, float]:
        """leak@k over the sampling grid on the forget questions."""
        from ..eval.lm_attacks import leak_at_k

        c: LeakAttackConfig = self.configs["leak"]
        return leak_at_k(model, self.tokenizer, self.rows, k=c.k, grid=c.grid, threshold=c.threshold,
                         max_new_tokens=self.max_new_tokens, batch_size=self.batch_size * 2, seed=self.seed)

    def paraphrase(self, model: nn.Module) -> dict[str, float]:
        """Prob and ROUGE of the forget answers asked with the paraphrased questions."""
        from ..eval.lm_attacks import paraphrased_eval

        res = paraphrased_eval(model, self.tokenizer, self.rows, max_new_tokens=self.max_new_tokens,
                               batch_size=self.batch_size)
        return {f"forget_{k}": v for k, v in res.items()}


__all__ = ["ATTACKS", "ATTACK_PRESETS", "AttackRunner", "LeakAttackConfig", "RelearnAttackConfig", "attack_configs",
           "check_attack_data", "describe", "evaluation_rows", "parse_attacks", "with_system_prompt"]
