"""Public Python API: unlearn(), evaluate(), run(spec), compare(); the CLI and web layers call only these."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from .eval import OutputCache, evaluate_model
from .eval.aggregate import summarise_runs
from .methods import MethodContext, run_method
from .models import ClassifierTask
from .spec import RunSpec, from_dict, load_yaml
from .tasks.classifier import validate as validate  # noqa: E402,F401  (kept importable)
from .train import TrainConfig, resolve_device

TABLE_METRICS = ("UA", "RA", "TA", "MIA-Eff", "Avg.Gap", "RTE", "RTE/retrain")
LM_TABLE_METRICS = ("Forget Quality", "Model Utility", "forget_ROUGE", "forget_Prob", "retain_ROUGE", "PrivLeak",
                    "RTE")
GEN_TABLE_METRICS = ("UA", "RA", "IRA", "CRA", "FD", "FD_forget", "Avg.Gap", "judge_acc_real",
                     "judge_acc_real_object", "judge_acc_real_style", "RTE", "RTE/retrain")
LM_ATTACK_METRICS = ("Relearn-recovery-ROUGE", "leak@k", "forget_paraphrased_ROUGE")
GEN_ATTACK_METRICS = ("ASR_pre", "ASR_post")


def _task_for(data, task):
    return task if task is not None else ClassifierTask(data.num_classes)


def unlearn(model: nn.Module, data, method: str = "salun", *, task=None, seed: int = 0,
            recipe: TrainConfig | None = None, **overrides: Any) -> nn.Module:
    """Return an unlearned copy of `model` (the input is never modified); `overrides` set method config fields."""
    ctx = MethodContext(seed=seed, recipe=recipe or TrainConfig())
    return run_method(method, model, data, _task_for(data, task), overrides, ctx)


def evaluate(model: nn.Module, data, reference: nn.Module | None = None, *, task=None,
             metrics: list[str] | None = None, cache: OutputCache | None = None) -> dict[str, float]:
    """Metrics of `model` on forget/retain/test (and gaps to `reference`, the retrained model, if given)."""
    return evaluate_model(model, data, _task_for(data, task), reference=reference, cache=cache, names=metrics)


def gen_attack(model: nn.Module, data, judge: nn.Module, *, forget_class: int | None = None, samples: int = 50,
               sample_steps: int = 25, guidance: float = 2.0, seed: int = 0, **config: Any) -> dict[str, Any]:
    """UnlearnDiffAtk-style attack (unlearnlab.eval.gen_attack) on a class-conditional diffusion `model`: searches a
    condition that makes the model explain real images of the forgotten class (data.forget) and reports the judge's
    ASR (%) before and after on the same seeded noise; `config` sets GenAttackConfig fields (mode, k, steps, ...)."""
    from .eval.gen_attack import attack

    cls = int(data.forget.y[0]) if forget_class is None else forget_class
    images = data.forget.x[data.forget.y == cls]
    return attack(model, judge, images, cls, config, samples=samples, sample_steps=sample_steps, guidance=guidance,
                  seed=seed)


def as_spec(spec: RunSpec | dict | str | Path) -> RunSpec:
    """Accept a RunSpec, a dict or a YAML path."""
    if isinstance(spec, RunSpec):
        return spec
    if isinstance(spec, dict):
        return from_dict(spec)
    return load_yaml(spec)


def run(spec: RunSpec | dict | str | Path, *, store=None, progress: Callable[[str], None] | None = None,
        resume: bool = True, backend: str = "serial", workers: int | None = None, address: str | None = None,
        events: Callable[[dict], None] | None = None, cpus_per_job: float = 1.0,
        gpus_per_job: float = 0.0, allow_large: bool = False) -> dict[str, Any]:
    """Run a spec on the engine: every (method, seed) is evaluated against the retrained oracle and stored as it
    completes; with >= 2 seeds, the two-oracle noise floor (method 'oracle-floor') is measured too. A classifier
    spec whose training would take absurdly long is refused with a time estimate unless `allow_large`.

    backend: 'serial' (this process), 'local' (process pool) or 'ray' (cpus/gpus_per_job: each job's Ray request;
    a GPU fraction such as 0.5 packs two jobs per GPU). progress receives text lines, events the
    structured event stream (unlearnlab.engine.events). Returns {"records": [...], "errors": [{"method", "seed",
    "error"}], "table": compare(records)}; a failing job is reported in `errors` and nothing is stored for it.
    """
    from .engine.runner import execute, text_sink

    spec = as_spec(spec)
    if spec.task == "classifier":
        from .tasks.classifier_budget import check_budget

        check_budget(spec, allow_large=allow_large)
    texts = text_sink(progress)
    sink = texts if events is None else (lambda ev: (texts(ev), events(ev)))
    res = execute([spec], store=store, backend=backend, workers=workers, address=address, resume=resume, sink=sink,
                  cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job)
    records = res["records"][0]
    errors = [{k: e[k] for k in ("method", "seed", "error")} for e in res["errors"]]
    return {"records": records, "errors": errors, "table": compare(records)}


def sweep(spec: dict | str | Path, *, store=None, backend: str | None = None, workers: int | None = None,
          address: str | None = None, resume: bool = True, events: Callable[[dict], None] | None = None,
          report_dir: str | Path | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> dict[str, Any]:
    """Run a sweep (a YAML path or dict: see unlearnlab.engine.sweep) as one job graph on a backend.

    Returns {"name", "records", "errors", "jobs", "tables": {scenario: compare rows}, "tuned", "report"}; the
    report (markdown + HTML + figures) is written under `report_dir` (default STORE/reports/NAME) when the
    `report` extra is installed.
    """
    from .engine.sweep import load_sweep
    from .engine.sweep import sweep as _sweep

    d = load_sweep(spec) if isinstance(spec, (str, Path)) else dict(spec)
    res = _sweep(d, store=store, backend=backend, workers=workers, address=address, resume=resume, sink=events,
                 cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job)
    groups: dict[str, list[dict]] = {}
    for r in res["records"]:
        s = r["spec"]
        groups.setdefault(f"{s['dataset']} | forget {s['forget']} | {s['model']}", []).append(r)
    res["tables"] = {k: compare(v) for k, v in groups.items()}
    res["report"] = _maybe_report(res["records"], report_dir or (Path(store.root) / "reports" / str(res["name"])
                                                                 if store is not None else None),
                                  f"sweep {res['name']}", store)
    return res


def audit(run_id: str, *, store=None, attacks: str | list[str] | None = None, population: int = 8,
          canaries: int = 200, backend: str = "serial", workers: int | None = None,
          events: Callable[[dict], None] | None = None, save: bool = True) -> dict[str, Any]:
    """Strict audits of a stored classifier run (unlearnlab.audit): population attacks (klom, eps, ps, ulira, lira,
    rmia) on `population` models per role trained through the engine, representation and recovery attacks (cka,
    probe, relearn, head) on the run's models; each with floor (oracle) and ceiling (original) rows. The result joins
    the run's record as `audit`; returns it with `rows` (one summary row per quantity)."""
    from .audit import audit as _audit
    from .store import Store

    store = store if store is not None else Store()
    res = _audit(run_id, store=store, attacks=attacks, population=population, canaries=canaries, backend=backend,
                 workers=workers, sink=events, save=save)
    return _with_rows(res)


def audit_checkpoint(path: str | Path, *, forget: str, dataset: str = "", original: str | Path = "", seed: int = 0,
                     split_seed: int = 0, attacks: str | list[str] | None = None, store=None,
                     events: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Representation and recovery audits (cka, probe, relearn, head) of a model unlearned outside unlearnlab and
    saved as a checkpoint, against the original (`original`, else the one unlearnlab trains for `seed`) and the
    oracle retrained without `forget`; returns the result with `rows`, like `audit` (nothing is stored)."""
    from .audit import audit_checkpoint as _audit_ckpt
    from .store import Store

    store = store if store is not None else Store()
    res = _audit_ckpt(str(path), store=store, forget=forget, dataset=dataset, original=str(original or ""),
                      seed=seed, split_seed=split_seed, attacks=attacks, sink=events)
    return _with_rows(res)


def _with_rows(res: dict[str, Any]) -> dict[str, Any]:
    from .audit.render import summary_rows

    res["rows"] = [dict(zip(("attack", "quantity", "method", "floor", "ceiling", "reading"), r))
                   for r in summary_rows(res)]
    return res


def readings(records: list[dict]) -> list[str]:
    """One line per scenario of `records` that reads its leaderboard (engine.report.reading): does the set-up show
    forgetting, the method closest to retraining, those within the noise floor, those that changed nothing."""
    from .engine.report import leaderboard, reading, scenarios

    return [reading(leaderboard(sc)) for sc in scenarios(records)]


def _maybe_report(records: list[dict], out: str | Path | None, title: str, store=None) -> str | None:
    """Write the report of `records` to `out` when matplotlib is installed (sample grids from `store`'s artifacts);
    its HTML path, else None."""
    from .distributed import is_main

    if out is None or not records or not is_main():  # [distributed] rank 0 alone writes under a launch
        return None
    try:
        from .engine.report import build_report
    except ImportError:
        return None
    from .errors import ConfigError

    try:
        return str(build_report(records, out, title=title,
                                artifact_path=getattr(store, "artifact_path", None))["html"])
    except ConfigError:  # the report extra is missing: runs are stored, the report is optional
        return None


def train_original(*, dataset: str = "digits", model: str = "", epochs: int | None = None, seed: int = 0,
                   device: str = "auto", out: str | Path, amp: bool = False) -> dict[str, Any]:
    """Train the original model of `dataset` on its whole train set and save it as a checkpoint at `out` (`amp`:
    bf16 autocast where it is fast, models/precision.py)."""
    from .config import to_dict
    from .data import load_dataset
    from .eval.metrics import accuracy
    from .eval.outputs import split_outputs
    from .models import build_model, data_init, save_checkpoint
    from .train import train

    recipe = {**({"epochs": epochs} if epochs else {}), **({"amp": True} if amp else {})}
    spec = as_spec({"dataset": dataset, "model": model, "recipe": recipe})
    bundle = load_dataset(spec.dataset, seed=seed)
    arch, rec = spec.model_spec(), spec.train_config()
    task = ClassifierTask(bundle.num_classes, resolve_device(device), amp=rec.amp)
    shape = tuple(bundle.train.x.shape[1:])
    net = data_init(build_model(arch, shape, bundle.num_classes, seed=seed).to(task.device), bundle.train)
    train(net, bundle.train, rec, task, seed=seed)
    meta = {"arch": arch, "dataset": bundle.name, "recipe": to_dict(rec), "seed": seed, "role": "original",
            "num_classes": bundle.num_classes, "data_hash": bundle.train.fingerprint(), "input_shape": list(shape),
            # how raw [0, 1] pixels become its inputs: a Stable Diffusion run's checkpoint judge reads both
            **({"pixel_norm": [list(v) for v in bundle.pixel_norm]} if bundle.pixel_norm is not None else {}),
            "train_acc": accuracy(split_outputs(net, bundle.train, task)),
            "test_acc": accuracy(split_outputs(net, bundle.test, task))}
    save_checkpoint(out, net, meta)
    return meta


def compare(records: list[dict[str, Any]], metrics: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """One row per method (per setting, where records hold several configs of a method, e.g. a sweep's grid):
    mean/std over seeds of each metric, sorted by Avg.Gap (best first)."""
    import json

    configs: dict[str, dict[str, dict]] = {}
    for r in records:
        configs.setdefault(r["spec"]["method"], {})[json.dumps(r["spec"].get("config", {}), sort_keys=True)] = \
            r["spec"].get("config", {})
    groups: dict[str, list[dict[str, float]]] = {}
    for r in records:
        groups.setdefault(_row_name(r["spec"], configs[r["spec"]["method"]]), []).append(r["metrics"])
    rows = []
    for method, ms in groups.items():
        names = metrics or tuple(dict.fromkeys(k for m in ms for k in m))
        summ = summarise_runs([{k: m[k] for k in names if k in m} for m in ms])
        rows.append({"method": method, "n": len(ms), **{k: summ[k] for k in names if k in summ}})

    def order(row):
        special = {"retrain": -3, "oracle-floor": -2, "original": -1}.get(row["method"])
        gap = row.get("Avg.Gap", {}).get("mean", math.inf)
        return (special is None, special if special is not None else (gap if not math.isnan(gap) else math.inf))

    return sorted(rows, key=order)


def _row_name(spec: dict, configs: dict[str, dict]) -> str:
    """'ga' or, when the method ran with several configs, 'ga[lr=0.01]' naming the fields that differ."""
    if len(configs) < 2 or spec["method"] == "oracle-floor":
        return spec["method"]
    cfg = spec.get("config", {})
    differ = [k for k in cfg if len({json_key(c.get(k)) for c in configs.values()}) > 1]
    return f"{spec['method']}[" + ",".join(f"{k}={cfg[k]}" for k in differ) + "]"


def json_key(v: Any) -> str:
    """A hashable JSON form of a config value."""
    import json

    return json.dumps(v, sort_keys=True, default=str)


def tune(spec, methods, *, budget: int, store=None, **kw) -> dict:
    """Tune each method's declared search space with `budget` trials on a disjoint validation forget set."""
    from .engine.tune import tune as _tune

    return _tune(spec, methods, budget=budget, store=store, **kw)


def report(runs: list[str] | str | None = None, *, store=None, out: str | Path = "report", title: str = "",
           command: str = "") -> dict:
    """Write a report (report.md, self-contained report.html, figures/) of stored runs; returns their paths.

    `runs`: None for every run in the store, else run ids / unique prefixes or experiment names (spec.name).
    """
    from .engine.report import build_report, open_store
    from .errors import StoreError

    st = open_store(store)
    everything = st.list_runs()
    records = everything
    if runs is not None:
        chosen: dict[str, dict] = {}
        for item in [runs] if isinstance(runs, str) else list(runs):
            named = [r for r in everything if (r.get("spec") or {}).get("name") == item]
            if not named:
                try:
                    named = [st.get_run(item)]
                except StoreError as e:
                    names = sorted({n for r in everything if (n := (r.get("spec") or {}).get("name"))})
                    raise StoreError(f"{item!r} is neither an experiment name (known: {', '.join(names) or 'none'}) "
                                     f"nor a run id: {e}") from None
            chosen.update((r["id"], r) for r in named)
        records = list(chosen.values())
    if not records:
        raise StoreError(f"No runs to report in {st.db_path}. Run an experiment first (`unlearnlab run ...`), or "
                         "point --results (or $UNLEARNLAB_HOME) at the results directory that holds your runs.")
    return build_report(records, out, title=title, command=command or f"unlearnlab.report(runs={runs!r})",
                        artifact_path=getattr(st, "artifact_path", None))


def runs_frame(store=None, **filters):
    """A pandas DataFrame with one row per stored run (columns spec.*, metrics.*, timings.*, ...); see engine.report."""
    from .engine.report import runs_frame as _runs_frame

    return _runs_frame(store, **filters)
