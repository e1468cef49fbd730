"""The diffusion Task of the engine (spec task 'diffusion', chosen by a *-gen dataset): a class-conditional DDPM as
the original, the DDPM retrained without the forgotten conditions (a class; on two-factor data a style or an object)
as the oracle, diffusion methods, and evaluation by judge classifiers on generated samples (UA, RA or IRA / CRA,
judge-feature Frechet distance, sample grids). Stable Diffusion specs (model sd:..., prompt datasets) go to
tasks/diffusion_sd.SDTask, which has no oracle."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from ..config import to_dict
from ..engine.events import collect_curves, emit
from ..engine.records import count_steps, make_record, timed
from ..errors import ConfigError
from ..spec import RunSpec
from .base import Plan, same_weights
from .classifier import method_names, record_spec, validate

KIND = "diffusion"
EVAL_DEFAULTS: dict[str, Any] = {"samples": 50, "sample_steps": 25, "guidance": 2.0, "size": 16, "grid": 8,
                                 "attack": False, "attack_steps": 40, "attack_k": 5, "attack_mode": "prefix"}


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def gen_options(spec: RunSpec) -> dict[str, Any]:
    """Evaluation / data options of a diffusion spec (spec.options over EVAL_DEFAULTS)."""
    out = {**EVAL_DEFAULTS, **spec.options}
    for k in ("samples", "sample_steps", "size", "grid", "attack_steps", "attack_k"):
        if not isinstance(out[k], int) or isinstance(out[k], bool) or out[k] < (2 if k == "samples" else 1):
            raise ConfigError(f"diffusion option {k!r} must be a positive integer (samples >= 2); got {out[k]!r}.")
    if not isinstance(out["attack"], bool) or out["attack_mode"] not in ("prefix", "delta"):
        raise ConfigError(f"diffusion options: attack must be true/false and attack_mode prefix or delta; got "
                          f"{out['attack']!r}, {out['attack_mode']!r}.")
    return out


def _index(val: str, names: list[str]) -> int | None:
    """Position of `val` (an index 0..len-1 or one of `names`) in `names`, or None."""
    if val.isdigit():
        return int(val) if int(val) < len(names) else None
    return names.index(val) if val in names else None


def forget_classes(forget: str, num_classes: int, factors=None) -> list[int]:
    """The condition labels a diffusion run forgets (its forget set = the train examples with these labels):
    `class:K` on single-factor data; `style:S` / `object:O` on two-factor data (`factors`, labels y = o * K + s),
    every condition of that style / object, S and O an index or a name. ConfigError otherwise. Tuning's
    validation scenario val:class:K forgets the class its split forgets, (K + 1) mod num_classes (data/scenarios.py
    validation_indices); on two-factor data val:style:S forgets style (S + 1) mod n_styles and val:object:O object
    (O + 1) mod n_objects, so the reported style / object is an ordinary retained one in every trial (its samples
    count in IRA / CRA) and never the forgotten one."""
    kind, _, val = forget.strip().partition(":")
    validation = kind == "val"
    if validation:
        kind, _, val = val.partition(":")
    val = val.strip()
    if factors is None:
        k = _index(val, [str(c) for c in range(num_classes)]) if kind == "class" else None
        if k is None:
            raise ConfigError(f"diffusion runs forget a whole class (UA is judged on its samples): use --forget "
                              f"class:K with K in 0..{num_classes - 1}; got {forget!r}.")
        return [(k + 1) % num_classes if validation else k]
    names = list(factors.styles if kind == "style" else factors.objects)
    if kind not in ("style", "object"):
        raise ConfigError(f"a two-factor (object x style) dataset forgets every condition of one style or one object: "
                          f"use --forget style:S (S in 0..{factors.n_styles - 1} or one of {', '.join(factors.styles)})"
                          f" or --forget object:O (O in 0..{factors.n_objects - 1}); got {forget!r}.")
    i = _index(val, names)
    if i is None:
        raise ConfigError(f"--forget {kind}:X needs X in 0..{len(names) - 1} or one of {', '.join(names)}; "
                          f"got {forget!r}.")
    if validation:
        i = (i + 1) % len(names)
    return factors.of_style(i) if kind == "style" else factors.of_object(i)


def _data(spec: RunSpec):
    """(bundle, UnlearnData, forgotten condition labels) of a diffusion spec."""
    from ..data import make_split
    from ..data.core import UnlearnData
    from .diffusion_data import gen_bundle

    bundle = gen_bundle(spec.dataset_name, gen_options(spec)["size"])
    factors = getattr(bundle, "factors", None)
    labels = forget_classes(spec.forget, bundle.num_classes, factors)
    if factors is None:
        data = make_split(bundle.train, bundle.test, spec.forget, spec.split_seed, num_classes=bundle.num_classes,
                          name=bundle.name, classes=bundle.classes)
    else:  # the forget set is every train example of the forgotten conditions
        hit = np.isin(bundle.train.y.numpy(), labels)
        data = UnlearnData(bundle.train, bundle.test, np.flatnonzero(hit), np.flatnonzero(~hit), bundle.num_classes,
                           name=bundle.name, scenario=spec.forget.strip(),
                           extra={"classes": bundle.classes, "factors": factors.to_dict()})
    return bundle, data, labels


def _base(spec: RunSpec, bundle, seed: int) -> dict[str, Any]:
    return {"arch": spec.model_spec(), "dataset": bundle.name, "recipe": to_dict(spec.train_config()), "seed": seed,
            "kind": KIND}


@dataclasses.dataclass
class GenContext:
    """What the runs of one seed share: data, model task, original, oracle, judge and the oracle's metrics."""

    data: Any
    task: Any
    original: torch.nn.Module
    oracle: torch.nn.Module
    judge: torch.nn.Module  # the object judge of two-factor data (its features give FD)
    judge_acc: float
    real_feats: dict[int, np.ndarray]
    forget: list[int]
    opts: dict[str, Any]
    retrain_s: float
    seed: int
    factors: Any = None  # two-factor data: diffusion_canvas.Factors
    style_judge: tuple[torch.nn.Module, float] | None = None
    evals: dict[str, tuple[dict, dict, torch.Tensor, int]] = dataclasses.field(default_factory=dict)


def _check_factors(arch: dict[str, Any], bundle, model_spec: str) -> None:
    """A DDPM with factors=OxS must match the dataset's object x style structure."""
    want = getattr(bundle, "factors", None)
    got = arch.get("factors")
    if got is not None and (want is None or got != (want.n_objects, want.n_styles)):
        need = f"factors={want.spec()}" if want is not None else "no factors field (its labels are single classes)"
        raise ConfigError(f"model {model_spec!r} has factors={got[0]}x{got[1]} but dataset {bundle.name!r} needs "
                          f"{need}.")


def _score(gc: GenContext, x: torch.Tensor, labels: np.ndarray) -> tuple[dict, dict, torch.Tensor, int]:
    """(metrics, details, grid, grid rows) of samples `x` of conditions `labels` (`samples` each, in label order):
    the single judge's UA / RA / FD, or on two-factor data the per-factor judges' UA / IRA / CRA with FD in the
    object judge's features per condition."""
    from ..eval.gen_metrics import canvas_metrics, class_fd, generation_metrics, judge_outputs
    from .diffusion_canvas import canvas_grid

    k, n, g = gc.data.num_classes, gc.opts["samples"], gc.opts["grid"]
    pred, feats = judge_outputs(gc.judge, x)
    if gc.factors is None:
        metrics, details = generation_metrics(pred, feats, labels, gc.real_feats, gc.forget, k)
        metrics["judge_acc_real"] = gc.judge_acc
        grid = x.view(k, n, *x.shape[1:])[:, :min(g, n)].reshape(-1, *x.shape[1:])
        return metrics, details, grid, k
    style_pred, _ = judge_outputs(gc.style_judge[0], x)
    f = gc.factors
    metrics, details = canvas_metrics(pred, style_pred, labels, f.n_objects, f.n_styles, gc.forget)
    fds, details["per_condition_fd"] = class_fd(feats, labels, gc.real_feats, gc.forget, k)
    metrics.update(fds, judge_acc_real_object=gc.judge_acc, judge_acc_real_style=gc.style_judge[1])
    details.update(factors=f.to_dict(), fd_note="Frechet distance in the object judge CNN's penultimate features, "
                   "per condition, not Inception FID")
    per = max(1, g // 4)  # a quarter of `grid` per digit (grid 8: 2 each, 20 columns) keeps the rows readable
    details["grid_layout"] = (f"one row per style ({', '.join(f.styles)}); objects {f.objects[0]}..{f.objects[-1]} "
                              f"left to right, {min(per, n)} sample(s) each")
    grid, rows = canvas_grid(x, f, n, per)
    return metrics, details, grid, rows


class DiffusionTask:
    """Engine Task for class-conditional diffusion models (process-local memo of the last seed contexts)."""

    kind = KIND

    def __init__(self) -> None:
        self._contexts: OrderedDict[str, GenContext] = OrderedDict()
        self._sd_task = None

    def _sd(self, spec: RunSpec):
        """The Stable Diffusion task for an SD spec (model sd:..., a prompts: / sdimages: dataset), else None."""
        from .diffusion_sd import SDTask, is_sd

        if not is_sd(spec):
            return None
        if self._sd_task is None:
            self._sd_task = SDTask()
        return self._sd_task

    def plan(self, spec: RunSpec) -> Plan:
        """Validate the spec and name its models and run records (content keys)."""
        from ..models.ddpm import parse_ddpm, require_diffusers

        if (sd := self._sd(spec)) is not None:
            return sd.plan(spec)
        if "judge" in spec.options:
            raise ConfigError("option judge applies to Stable Diffusion runs (model sd:...); DDPM runs train their "
                              "own judge on the dataset: drop it.")
        require_diffusers()
        arch = parse_ddpm(spec.model_spec())
        if spec.original:
            raise ConfigError("--original is not supported for diffusion runs yet; the original DDPM is trained "
                              "(and cached) by the engine.")
        # retrain is the oracle baseline of every run (the classifier's retrain method does not train a DDPM)
        names = method_names(dataclasses.replace(spec, methods=tuple(m for m in spec.methods if m != "retrain")), KIND)
        validate(spec, names)
        opts = gen_options(spec)
        plan = Plan(methods=["original", "retrain", *(n for n in names if n != "retrain")])
        for seed in spec.seeds:
            bundle, data, _ = _data(spec)
            _check_factors(arch, bundle, spec.model_spec())
            base = _base(spec, bundle, seed)
            plan.model_keys[("original", seed)] = _key("original", base, bundle.train.fingerprint())
            plan.model_keys[("oracle", seed)] = _key("retrain", base, data.fingerprint())
            for m in plan.methods:
                plan.record_specs[(m, seed)] = {**record_spec(spec, m, seed, spec.overrides.get(m, {}),
                                                              data.fingerprint()), "eval": opts}
        for s1, s2 in zip(spec.seeds, spec.seeds[1:]):
            plan.record_specs[("oracle-floor", s1)] = {**plan.record_specs[("retrain", s1)], "method": "oracle-floor",
                                                       "config": {"other_seed": s2}}
        return plan

    def _model(self, spec: RunSpec, seed: int, role: str, store, bundle=None, data=None) -> tuple[Any, float]:
        """The original (trained on all of train) or the oracle (trained from scratch on D_r), cached in the store."""
        from ..models.ddpm import DiffusionModelTask, build_ddpm
        from ..train import resolve_device, train

        if data is None:
            bundle, data, _ = _data(spec)
        device = resolve_device(spec.device)
        base = _base(spec, bundle, seed)
        fp = bundle.train.fingerprint() if role == "original" else data.fingerprint()
        key = _key("original" if role == "original" else "retrain", base, fp)
        model = build_ddpm(spec.model_spec(), bundle.num_classes, gen_options(spec)["size"],
                           channels=bundle.train.x.shape[1], seed=seed).to(device)
        if store is not None and (got := store.load_model(key, model)) is not None:
            return model.eval(), float(got.get("train_s", 0.0))
        train_set = bundle.train if role == "original" else data.retain
        task = DiffusionModelTask(bundle.num_classes, device, seed=seed)
        what = "training the original DDPM" if role == "original" else "retraining the DDPM without the forget set"
        model, t = timed(lambda: train(model, train_set, spec.train_config(), task, seed=seed, key=role, what=what))
        if store is not None:
            store.save_model(key, model, {**base, "data_hash": fp, "role": role, "train_s": t["wall_s"]})
        return model.eval(), t["wall_s"]

    def build(self, spec: RunSpec, seed: int, role: str, store) -> str:
        """Train (or find cached) the original or the oracle DDPM of `seed`; a one-line summary."""
        if (sd := self._sd(spec)) is not None:
            return sd.build(spec, seed, role, store)
        _, seconds = self._model(spec, seed, role, store)
        return f"{role} DDPM ready ({seconds:.1f}s of training)"

    def context(self, spec: RunSpec, seed: int, store) -> GenContext:
        """Data, models, judge and real-image judge features of `seed`, memoised in this process."""
        from ..eval.gen_metrics import judge_outputs
        from ..models.ddpm import DiffusionModelTask
        from ..train import resolve_device
        from .diffusion_judge import judge_for

        ckey = _key(spec.to_dict(), seed)
        if ckey in self._contexts:
            return self._contexts[ckey]
        bundle, data, forget = _data(spec)
        opts, device = gen_options(spec), resolve_device(spec.device)
        original, _ = self._model(spec, seed, "original", store, bundle, data)
        oracle, retrain_s = self._model(spec, seed, "oracle", store, bundle, data)
        factors = getattr(bundle, "factors", None)
        judge, judge_acc = judge_for(bundle, device, store, factor="object" if factors else None)
        style_judge = judge_for(bundle, device, store, factor="style") if factors else None
        _, feats = judge_outputs(judge, bundle.train.x)
        labels = bundle.train.y.numpy()
        real = {c: feats[labels == c] for c in range(bundle.num_classes)}
        task = DiffusionModelTask(bundle.num_classes, device, seed=seed, sample_steps=opts["sample_steps"],
                                  guidance=opts["guidance"])
        gc = GenContext(data, task, original, oracle, judge, judge_acc, real, forget, opts, retrain_s, seed, factors,
                        style_judge)
        self._contexts[ckey] = gc
        while len(self._contexts) > 2:
            self._contexts.popitem(last=False)
        return gc

    def evaluate(self, gc: GenContext, model: torch.nn.Module, name: str) -> tuple[dict, dict, torch.Tensor, int]:
        """(metrics, details, grid images, grid rows) of `model`'s samples: the same noise for every model of the
        seed, `samples` per condition label."""
        from ..models.ddpm import sample
        from ..seeding import torch_generator

        if name in gc.evals:
            return gc.evals[name]
        k, n = gc.data.num_classes, gc.opts["samples"]
        labels = torch.arange(k).repeat_interleave(n)
        x = sample(model, labels, steps=gc.opts["sample_steps"], scale=gc.opts["guidance"],
                   gen=torch_generator(gc.seed, "diffusion-eval-noise")).cpu()
        out = _score(gc, x, labels.numpy())
        if gc.opts["attack"]:
            out[0].update(self._attack(gc, model))
        if name in ("original", "retrain"):
            gc.evals[name] = out
        return out

    @staticmethod
    def _attack(gc: GenContext, model: torch.nn.Module) -> dict[str, float]:
        """UnlearnDiffAtk (eval/gen_attack.py) on the forgotten class from its real train images: ASR before and
        after, with the same seeded noise, and the attack's search time (ASR_pre uses its own noise, not UA's).
        On two-factor data every forgotten condition (each object in the forgotten style, or the forgotten object
        in each style) is attacked on its own real images, as the code attacks one prompt at a time; a sample
        counts as a success when that factor's judge calls it the forgotten style / object. ASRs are the mean over
        the conditions (`samples` each), attack_s their sum, attack_shift their mean."""
        from ..eval.gen_attack import attack
        from ..eval.gen_metrics import forgotten_factor

        cfg = {"steps": gc.opts["attack_steps"], "k": gc.opts["attack_k"], "mode": gc.opts["attack_mode"]}
        kw = {"samples": gc.opts["samples"], "sample_steps": gc.opts["sample_steps"], "guidance": gc.opts["guidance"],
              "seed": gc.seed}
        judge, target = gc.judge, None  # single-factor DDPM or Stable Diffusion: the one forgotten class itself
        if getattr(gc, "factors", None) is not None:
            factor, target = forgotten_factor(gc.forget, gc.factors.n_objects, gc.factors.n_styles)
            judge = gc.style_judge[0] if factor == "style" else gc.judge
        x, y = gc.data.forget.x, getattr(gc.data.forget, "y", None)
        outs = [attack(model, judge, x[y == c] if len(gc.forget) > 1 else x, c, cfg, target=target, **kw)
                for c in gc.forget]
        out = {k: float(np.mean([o[k] for o in outs])) for k in ("ASR_pre", "ASR_post", "attack_shift")}
        return {**out, "attack_s": float(sum(o["attack_s"] for o in outs))}

    def _record(self, gc: GenContext, model, method: str, store, rspec: dict, t: dict, extra: dict) -> dict:
        """Evaluate `model`, add its gaps to the oracle and its sample grid: the run record."""
        from ..eval.gen_metrics import gap_metrics
        from .diffusion_data import grid_png

        metrics, details, grid, rows = self.evaluate(gc, model, method)
        ref = self.evaluate(gc, gc.oracle, "retrain")[0]
        metrics = {**metrics, **gap_metrics(metrics, ref), "RTE": t["wall_s"],
                   "RTE/retrain": t["wall_s"] / gc.retrain_s if gc.retrain_s > 0 else float("nan")}
        artifacts = {}
        if store is not None and hasattr(store, "put_bytes"):
            try:
                artifacts["samples_png"] = store.put_bytes(grid_png(grid, rows))
            except ConfigError as e:  # Pillow missing: the record stands without its grid
                emit("warning", text=str(e))
        shown = ", ".join(f"{k} {metrics[k]:.1f}" for k in ("UA", "RA", "IRA", "CRA", "FD") if k in metrics)
        emit("message", text=f"{method} (seed {gc.seed}): {shown}")
        return make_record(rspec, metrics, t, gc.task.device, details=details,
                           **({"artifacts": artifacts} if artifacts else {}), **extra)

    def run(self, spec: RunSpec, seed: int, method: str, store, rspec: dict) -> dict[str, Any]:
        """Apply `method` to the original DDPM of `seed` (or take a baseline) and evaluate its samples."""
        if (sd := self._sd(spec)) is not None:
            return sd.run(spec, seed, method, store, rspec)
        gc = self.context(spec, seed, store)
        if method == "retrain":
            model, t, extra = gc.oracle, {"wall_s": gc.retrain_s, "cpu_s": float("nan"), "opt_steps": 0}, {}
        else:
            model, t, extra = apply_method(spec, seed, method, gc)
        return self._record(gc, model, method, store, rspec, t, extra)

    def floor(self, spec: RunSpec, seed: int, other: int, store, rspec: dict) -> dict[str, Any]:
        """The oracle of seed `other` scored against the oracle of `seed`: the noise floor."""
        if (sd := self._sd(spec)) is not None:
            return sd.floor(spec, seed, other, store, rspec)
        gc = self.context(spec, seed, store)
        other_oracle, _ = self._model(spec, other, "oracle", store)
        return self._record(gc, other_oracle, "oracle-floor", store, rspec,
                            {"wall_s": 0.0, "cpu_s": 0.0, "opt_steps": 0}, {})


def apply_method(spec: RunSpec, seed: int, method: str, gc) -> tuple[torch.nn.Module, dict, dict]:
    """(model, timing, record extras) of `method` applied to the seed context's original (`original`: the original
    itself); warns when the method left the weights unchanged. Shared by the DDPM and Stable Diffusion tasks."""
    from ..methods import MethodContext, run_method

    ctx = MethodContext(seed=seed, recipe=spec.train_config())
    extra: dict[str, Any] = {}
    if method == "original":
        return gc.original, {"wall_s": 0.0, "cpu_s": 0.0, "opt_steps": 0}, extra
    with count_steps() as box, collect_curves() as curves:
        model, t = timed(lambda: run_method(method, gc.original, gc.data, gc.task, spec.overrides.get(method, {}),
                                            ctx))
    t["opt_steps"] = box[0]
    extra.update({"curves": curves} if curves else {})
    if same_weights(model, gc.original):
        ctx.warnings.append(f"{method} left the weights exactly as the original's: it changed nothing.")
    for w in ctx.warnings:
        emit("warning", text=w)
    extra.update({"method_info": ctx.info} if ctx.info else {})
    extra.update({"warnings": list(ctx.warnings)} if ctx.warnings else {})
    return model, t, extra


__all__ = ["EVAL_DEFAULTS", "DiffusionTask", "apply_method", "forget_classes", "gen_options"]
