"""The causal-LM Task of the engine (spec task 'qa'): target and oracle fine-tunes, LM methods, TOFU/MUSE metrics,
robustness attacks. The recipes, presets and fine-tuning live in tasks/lm.py, the attacks in tasks/lm_attacks.py."""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import OrderedDict
from typing import Any

from ..config import build, to_dict
from ..distributed import on_main
from ..engine.events import collect_curves, emit, epoch_hook
from ..engine.records import count_steps, make_record
from ..eval.lm_eval import eval_config, protocol
from ..spec import RunSpec
from .base import Plan
from .lm import (
    SHOWN,
    LMBase,
    LMSetup,
    _measure,
    attack_configs,
    evaluation_rows,
    family,
    finetune_config,
    finetune_role,
    lm_method_names,
    lm_source,
    load_base,
    method_overrides,
    parse_attacks,
    record_spec,
)
from .lm_checks import setup_warnings, unchanged_warning

# spec keys that define the fine-tuned target / oracle (so their job keys change when any of them changes)
_MODEL_KEYS = ("model", "dataset", "forget", "split_seed", "recipe", "system_prompt", "max_length", "device")


def _say(msg: str) -> None:
    emit("message", text=msg)


class QATask:
    """Engine Task for causal language models on QA or document data (process-local memo of loaded setups)."""

    kind = "qa"

    def __init__(self) -> None:
        self._bases: OrderedDict[str, LMBase] = OrderedDict()
        self._setups: OrderedDict[str, LMSetup] = OrderedDict()

    def plan(self, spec: RunSpec) -> Plan:
        """Validate methods, attacks and data (before any training) and name the jobs' content keys."""
        from ..methods import METHODS

        d = spec.lm_dict()
        names = lm_method_names(d.get("methods") or ["all"])
        attack_configs(parse_attacks(d.get("attacks")), family(d.get("model") or "smollm2"), d.get("attack_options"))
        configs = {n: to_dict(build(METHODS.get(n).config, method_overrides(d, n), what=n)) for n in names}
        finetune_config(d.get("model") or "smollm2", d.get("recipe"))
        eval_config(d.get("eval"))
        source = lm_source(d.get("dataset", "qa"), d.get("forget"), int(d.get("split_seed", 0)))
        baselines = ["original", "retrain"] if d.get("baselines", True) else []
        plan = Plan(methods=baselines + names)
        body = {k: d.get(k) for k in _MODEL_KEYS} | {"digest": source.digest}
        for seed in spec.seeds:
            for role in ("original", "oracle"):
                plan.model_keys[(role, seed)] = "lm-" + hashlib.sha256(
                    json.dumps({**body, "role": role, "seed": seed}, sort_keys=True, default=str).encode()
                ).hexdigest()[:24]
            for m in plan.methods:
                plan.record_specs[(m, seed)] = record_spec(d, m, seed, configs.get(m, {}), source.digest)
        if d.get("baselines", True):
            for s1, s2 in zip(spec.seeds, spec.seeds[1:]):
                plan.record_specs[("oracle-floor", s1)] = {**record_spec(d, "oracle-floor", s1, {}, source.digest),
                                                           "config": {"other_seed": s2}}
        return plan

    def _base(self, spec: RunSpec) -> LMBase:
        d = spec.lm_dict()
        key = json.dumps({k: d.get(k) for k in (*_MODEL_KEYS, "attacks")}, sort_keys=True, default=str)
        if key not in self._bases:
            source = lm_source(d.get("dataset", "qa"), d.get("forget"), int(d.get("split_seed", 0)))
            self._bases[key] = load_base(d, progress=_say, source=source)
            while len(self._bases) > 1:
                self._bases.popitem(last=False)
        return self._bases[key]

    def build(self, spec: RunSpec, seed: int, role: str, store) -> str:
        """Fine-tune (or find cached) the target ('original') or the retain oracle of `seed`."""
        which = "target" if role == "original" else "oracle"
        _, seconds = finetune_role(self._base(spec), which, seed=seed, store=store, progress=_say)
        return f"{which} ready ({seconds:.1f}s of fine-tuning)"

    def setup(self, spec: RunSpec, seed: int, store) -> LMSetup:
        """Target, oracle, evaluation rows, output cache and attack runner of `seed` (memoised per process)."""
        from ..eval.lm_eval import LMOutputCache
        from .lm_attacks import AttackRunner

        d = spec.lm_dict()
        key = json.dumps({"spec": d, "seed": seed}, sort_keys=True, default=str)
        if key in self._setups:
            return self._setups[key]
        lb = self._base(spec)
        target, target_s = finetune_role(lb, "target", seed=seed, store=store, progress=_say)
        oracle, oracle_s = finetune_role(lb, "oracle", seed=seed, store=store, progress=_say)
        attacks = parse_attacks(d.get("attacks"))
        rows = lb.data.extra.get("rows", {}).get("forget", [])
        runner = AttackRunner(attack_configs(attacks, family(lb.model_spec), d.get("attack_options")), lb.tokenizer,
                              rows, target, oracle, seed=seed) if attacks else None
        setup = LMSetup(lb.data, lb.tokenizer, lb.task, lb.base, target, oracle,
                        {"load_s": lb.load_s, "target_s": target_s, "oracle_s": oracle_s},
                        evaluation_rows(lb.data, int(d.get("eval_rows") or 0), int(d.get("split_seed", 0))),
                        LMOutputCache(), runner, eval_config(d.get("eval")))
        self._setups[key] = setup
        while len(self._setups) > 1:
            self._setups.popitem(last=False)
        return setup

    def run(self, spec: RunSpec, seed: int, method: str, store, rspec: dict) -> dict[str, Any]:
        """Apply an LM method to the target (or take a baseline), evaluate and attack it: the run record."""
        from ..methods import MethodContext, run_method

        setup = self.setup(spec, seed, store)
        wall, cpu, extra, steps, curves = 0.0, float("nan"), {}, 0, {}
        if method == "original":
            model, extra["finetune_s"] = setup.target, setup.timings["target_s"]
        elif method == "retrain":
            model, wall = setup.oracle, setup.timings["oracle_s"]
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            hook = _trajectory(setup, extra) if spec.lm_dict().get("trajectory") else contextlib.nullcontext()
            with count_steps() as box, collect_curves() as curves, hook:
                model = run_method(method, setup.target, setup.data, setup.task,
                                   method_overrides(spec.lm_dict(), method), MethodContext(seed=seed))
            wall, cpu, steps = time.perf_counter() - t0, time.process_time() - c0, box[0]
            wall -= extra.get("trajectory_s", 0.0)  # the per-epoch evaluations are not the method's cost
        # [distributed] evaluation is not data parallel: rank 0 evaluates, the other ranks wait for its metrics
        metrics, extra = on_main(lambda: (_measure(model, setup, extra), extra))
        _say(f"{method} (seed {seed}): " + ", ".join(f"{k} {metrics[k]:.3f}" for k in SHOWN if k in metrics))
        traj = extra.pop("trajectory", None)
        answers = on_main(_answers, model, setup, store) if store is not None else None
        warns = on_main(_warnings, method, model, setup, metrics)
        for w in warns:
            emit("warning", text=w)
        return make_record(rspec, {**metrics, "RTE": wall}, {"wall_s": wall, "cpu_s": cpu, "opt_steps": steps,
                                                             **extra}, setup.task.device,
                           eval=protocol(setup.eval_cfg), **({"curves": curves} if curves else {}),
                           **({"warnings": warns} if warns else {}), **({"trajectory": traj} if traj else {}),
                           **({"answers": answers} if answers else {}))

    def floor(self, spec: RunSpec, seed: int, other: int, store, rspec: dict) -> dict[str, Any]:
        """The oracle of seed `other` scored against the oracle (and target) of `seed`: the noise floor."""
        setup = self.setup(spec, seed, store)
        other_oracle, _ = finetune_role(self._base(spec), "oracle", seed=other, store=store, progress=_say)
        metrics = on_main(_measure, other_oracle, setup, {})  # [distributed] rank 0 evaluates
        return make_record(rspec, metrics, {"wall_s": 0.0, "cpu_s": 0.0, "opt_steps": 0}, setup.task.device,
                           eval=protocol(setup.eval_cfg))


TRAJECTORY = ("forget_ROUGE", "forget_Prob", "retain_ROUGE", "Model Utility", "Forget Quality")


@contextlib.contextmanager
def _trajectory(setup: LMSetup, extra: dict):
    """Evaluate the model after each epoch of the method's training (a fresh output cache each time: the weights
    change under the same object); points go to extra['trajectory'], their seconds to extra['trajectory_s']."""
    from ..eval.lm_eval import LMOutputCache, evaluate_lm

    points: list[dict[str, float]] = []
    extra["trajectory"], extra["trajectory_s"] = points, 0.0

    def at_epoch(what: str, epoch: int, model) -> None:
        t0 = time.perf_counter()
        m = on_main(lambda: evaluate_lm(model, setup.tokenizer, setup.eval_rows or setup.data, reference=setup.oracle,
                                        cache=LMOutputCache(), config=setup.eval_cfg, knowmem=False))
        points.append({"epoch": epoch, "what": what, **{k: m[k] for k in TRAJECTORY if k in m}})
        extra["trajectory_s"] += time.perf_counter() - t0

    with epoch_hook(at_epoch):
        yield


def _forget_metrics(model, setup: LMSetup) -> dict[str, float] | None:
    """`model`'s metrics on the forget split only (QA rows; None for a document corpus), sharing the setup's cache."""
    from ..eval.lm_eval import evaluate_lm

    if not setup.eval_rows:
        return None
    return evaluate_lm(model, setup.tokenizer, setup.eval_rows, splits=("forget",), cache=setup.cache,
                       config=setup.eval_cfg, knowmem=False)


def _warnings(method: str, model, setup: LMSetup, metrics: dict[str, float]) -> list[str]:
    """The sanity warnings of one record (tasks/lm_checks.py): set-up warnings on 'original', unchanged on methods."""
    if method == "original":
        return setup_warnings(metrics, _forget_metrics(setup.oracle, setup), setup.eval_rows.get("forget", []))
    if method == "retrain":
        return []
    return unchanged_warning(method, model, setup.target, metrics, lambda: _forget_metrics(setup.target, setup))


def _answers(model: Any, setup: Any, store: Any) -> str | None:
    """Store the per-question answers (question, target, answer, ROUGE, truth ratio) of a QA run as a JSON artifact;
    its digest joins the record as `answers` (the dashboard's side-by-side view). None for corpus (MUSE) data."""
    from ..eval.lm_eval import answer_rows

    data = setup.eval_rows or setup.data
    if not isinstance(data, dict) and not getattr(data, "extra", {}).get("rows"):
        return None
    table = answer_rows(model, setup.tokenizer, data, cache=setup.cache, config=setup.eval_cfg)
    return store.put_bytes(json.dumps(table, sort_keys=True).encode()) if table else None


def run_lm(spec: dict[str, Any], *, store=None, progress=None, resume: bool = True,
           errors: list[dict] | None = None) -> list[dict]:
    """Run every (method, seed) of an LM spec dict on the serial engine; returns one record each, stored (and
    resumed) via `store`. A failing method goes to `errors` ({"method", "seed", "error"}) when a list is given,
    else raises; a failure to build the target or oracle (data or config) always raises."""
    from ..engine import runner
    from ..spec import from_dict

    rs = from_dict({**spec, "task": "qa"})
    res = runner.execute([rs], store=store, backend="serial", resume=resume, sink=runner.text_sink(progress),
                         floor=False)
    for e in res["errors"]:
        if e.get("exception") is not None and (errors is None or e["kind"] == "build"):
            raise e["exception"]
    if errors is not None:
        errors.extend({k: e[k] for k in ("method", "seed", "error")} for e in res["errors"])
    return res["records"][0]


__all__ = ["QATask", "run_lm"]
