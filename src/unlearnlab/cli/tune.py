"""`unlearnlab tune`: the same trial budget for every method, selected on a validation forget set."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import UnlearnLabError
from . import Lazy, _store, app, err, fail, fmt, out
from .commands import DATASETS_HELP, RESULTS_HELP, _parse_overrides

api = Lazy("unlearnlab.api")


@app.command("tune")
def tune_cmd(
    method: str = typer.Option(..., "--method", help="comma-separated methods to tune, e.g. ft,ga,salun"),
    budget: int = typer.Option(..., min=1, help="trials per method (every method gets the same budget)"),
    task: str = typer.Option("classifier", help="classifier or qa (language models); a *-gen dataset (digits-gen) "
                             "picks diffusion, whose trials forget class (K + 1) mod 10 for --forget class:K"),
    dataset: str = typer.Option("digits", help=f"{DATASETS_HELP}; with --task qa: qa[:authors=20,facts=10], "
                                "tofu:DIR, tofu:train=PATH,forget=PATH, corpus:DIR"),
    forget: str = typer.Option("random:10%", help="the forget set to report: random:10%, class:3, subclass:3:50%, "
                               "indices:FILE; --task qa: N% of the authors (tofu:DIR: 1%, 5% or 10%); trials run on "
                               "the disjoint val:<forget>"),
    model: str = typer.Option("", help="mlp, cnn:width=16, resnet18:width=0.25 (default: per dataset); --task qa: "
                              "tiny, smollm2, a Hugging Face model name"),
    seeds: int = typer.Option(1, min=1, help="number of seeds (0..N-1); the objective is their mean"),
    epochs: int | None = typer.Option(None, help="epochs of the original/retrain recipe (--task qa: of the target "
                                      "and oracle fine-tunes)"),
    set_: list[str] = typer.Option([], "--set", help="fixed override under the sampled values, e.g. --set ga.epochs=3"),
    floor: float | None = typer.Option(None, min=0.0, help="a trial is infeasible when its utility falls more than "
                                       "this below the validation oracle's: classifiers: points of test accuracy "
                                       "(default 2); diffusion: points of RA (default 10); --task qa: a fraction "
                                       "of Model Utility (default 0.1 = 10%)"),
    objective: str | None = typer.Option(None, help="what selects: classifiers Avg.Gap (default), --task qa "
                                         "Forget.Gap (default: mean |gap to oracle| of the forget metrics) or "
                                         "'Forget Quality' (maximised); any metric name as |gap to oracle|"),
    sampler: str = typer.Option("tpe", help="tpe (seeded TPE with the utility constraint) or random"),
    tune_seed: int = typer.Option(0, "--tune-seed", help="seed of the samplers"),
    warm_start: bool = typer.Option(False, "--warm-start", help="make each method's first trial its default setting "
                                    "(config defaults under --set), so the choice is never worse on the validation "
                                    "set than the default; the other budget - 1 trials come from the sampler"),
    stratify: bool = typer.Option(False, "--stratify", help="spread each categorical field's values over the "
                                  "sampler's random start-up trials (no value repeats before each was tried), "
                                  "instead of independent draws that can repeat some and miss others"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps"),
    backend: str | None = typer.Option(None, help="where each trial's jobs run (as `unlearnlab run --backend`: "
                                       "local, serial or ray); default: api.run's"),
    workers: int | None = typer.Option(None, min=1, help="parallel jobs per trial (with --backend local/ray)"),
    results: Path | None = typer.Option(None, help=RESULTS_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the tuning summary + final records as JSON on stdout"),
    config: Path | None = typer.Option(None, help="YAML spec file (keys of RunSpec: dataset, forget, model, recipe, "
                                       "options such as a diffusion run's size / samples, overrides ...); its "
                                       "methods are replaced by --method and the data / model options here ignored"),
) -> None:
    """Tune methods' declared search spaces with a fixed trial budget on a validation forget set disjoint from the
    reported one; run each best setting on the reported forget set; show how sensitive each method was.

    Exit codes: 0 ok, 1 some method had no feasible trial, 2 usage/config/data errors or a failed final run.

    Example: unlearnlab tune --method ft,ga --budget 20 --dataset digits --forget random:10% --seeds 3
    From a spec file (e.g. a diffusion run's size and samples): unlearnlab tune --method esd --budget 4 --config
    examples/diffusion-digits.yaml
    Language models: unlearnlab tune --task qa --model tiny --dataset qa:authors=8,facts=4 --method ga,npo --budget 4
    --set ga.epochs=2 --set npo.epochs=2
    """
    try:
        recipe = {"epochs": epochs} if epochs is not None else {}
        spec = {"dataset": dataset, "forget": forget, "model": model, "seeds": seeds, "recipe": recipe,
                "overrides": _parse_overrides(set_), "device": device, "task": task}
        if config is not None:
            spec = api.as_spec(config).to_dict()
        store = _store(results)
        run_kwargs = {k: v for k, v in {"backend": backend, "workers": workers}.items() if v is not None}
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True, disable=not sys.stderr.isatty()) as bar:
            job = bar.add_task("starting", total=None)
            result = api.tune(spec, method, budget=budget, store=store, utility_floor=floor, objective=objective,
                              sampler=sampler, seed=tune_seed, progress=lambda m: bar.update(job, description=m),
                              run_kwargs=run_kwargs, warm_start=warm_start, stratify=stratify)
    except UnlearnLabError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps(result, indent=1, default=str))
    else:
        print_tune(result)
    code = 0
    for name, entry in result["methods"].items():
        for e in entry["errors"]:
            err.print(f"error: {e['method']} (seed {e['seed']}): {e['error']}", highlight=False, markup=False)
            code = 2
        if entry["best"] is None:
            err.print(f"warning: {name}: {entry['note']}", highlight=False, markup=False)
            code = code or 1
    if code:
        raise typer.Exit(code)


def _num(v: Any, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _params(params: dict[str, Any] | None) -> str:
    if not params:
        return "-"
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def print_tune(result: dict[str, Any]) -> None:
    """One table per method (its trials on the validation set), then the summary: best, reported, sensitivity."""
    obj, lm = result["objective"], result.get("task") == "qa"
    better = "higher" if result.get("direction") == "maximize" else "lower"
    digits = 3 if lm else 2
    for name, entry in result["methods"].items():
        cols = list(dict.fromkeys(k for tr in entry["trials"] for k in tr.get("utility", ("RA", "TA"))))
        t = Table(title=f"{name}: {result['budget']} trials on {result['validation_forget']} ({obj}, {better} is "
                        "better)")
        for c in ("trial", "setting", obj, *cols, "feasible"):
            t.add_column(c, justify="left" if c == "setting" else "right")
        best = (entry["best"] or {}).get("trial")
        for tr in entry["trials"]:
            mark = "error" if tr["error"] else ("yes" if tr["feasible"] else "no (utility)")
            t.add_row(f"{tr['number']}{' *' if tr['number'] == best else ''}", _params(tr["params"]),
                      _num(tr["value"], digits), *(_num(tr.get(c), digits) for c in cols), mark)
        out.print(t)
    floor = f"{result['utility_floor']:.0%} of the oracle's utility" if lm else f"{result['utility_floor']:g}"
    s = Table(title=f"{result['spec']['dataset']} | forget {result['spec']['forget']} | budget {result['budget']} | "
                    f"utility floor {floor}")
    for c in ("method", "best setting", f"val {obj}", f"reported {obj}", "feasible", "median", "IQR", "near best"):
        s.add_column(c, justify="left" if c in ("method", "best setting") else "right")
    for name, entry in result["methods"].items():
        sens, rep = entry["sensitivity"], entry["reported"] or {}
        # a stored metric shows as in `unlearnlab run` (mean, with a CI over seeds); a gap as tune scored it
        reported = fmt(rep[obj], digits) if obj in ("Avg.Gap", "Forget Quality") and obj in rep else \
            _num((entry.get("reported_score") or {}).get("value"), digits)
        s.add_row(name, _params((entry["best"] or {}).get("params")),
                  _num((entry["best"] or {}).get("value"), digits), reported,
                  f"{sens['frac_feasible']:.0%}", _num(sens["median"], digits), _num(sens["iqr"], digits),
                  f"{sens['frac_near_best']:.0%}")
    out.print(s)
