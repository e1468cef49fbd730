"""The audit command: strict privacy, representation and recovery audits of a stored run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import UnlearnLabError
from . import Lazy, _store, app, err, fail, out
from .commands import RESULTS_HELP

api = Lazy("unlearnlab.api")
ATTACK_HELP = ("comma-separated: klom, eps (challenge score), ps (privacy score), ulira, lira, rmia, cka, probe, "
               "relearn, head; 'all' = every one (default: all but rmia)")


def _num(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _is_checkpoint(arg: str) -> bool:
    p = Path(arg)
    return p.suffix in (".safetensors", ".json") or p.with_suffix(".json").is_file() or \
        p.with_suffix(".safetensors").is_file()


@app.command("audit")
def audit_cmd(
    run: str = typer.Argument(..., help="run id (or unique prefix) of a classifier method run, or the path of a "
                              "checkpoint unlearned elsewhere (PATH.safetensors + PATH.json with its arch)"),
    attacks: str = typer.Option("", help=ATTACK_HELP + "; a checkpoint: cka, probe, relearn, head (its default)"),
    population: int = typer.Option(8, min=2, help="models per role in each population (seeds / shadow models)"),
    canaries: int = typer.Option(200, min=4, help="training examples the shadow attacks (ulira, lira, rmia) score; "
                                 "each shadow forgets a random half of them"),
    backend: str = typer.Option("local", help="serial, local (process pool) or ray: where the populations train"),
    workers: int | None = typer.Option(None, min=1, help="parallel jobs (default: the machine's cores)"),
    forget: str = typer.Option("", help="checkpoint only: the forget set it was unlearned on (class:3, random:10%)"),
    dataset: str = typer.Option("", help="checkpoint only: its dataset (default: the one its metadata names)"),
    original: str = typer.Option("", help="checkpoint only: the original checkpoint it was unlearned from (default: "
                                 "the original unlearnlab trains with the dataset's recipe and --seed)"),
    seed: int = typer.Option(0, help="checkpoint only: seed of the oracle (and of the original unlearnlab trains)"),
    split_seed: int = typer.Option(0, help="checkpoint only: seed of the forget-set selection"),
    results: Path | None = typer.Option(None, help=RESULTS_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the whole audit as JSON on stdout"),
) -> None:
    """Audit a stored run with population attacks (KLoM, challenge score, privacy score, U-LiRA, LiRA, RMIA) and
    representation / recovery attacks (CKA, linear probe, k-NN, relearning, head recovery), or a checkpoint
    unlearned elsewhere with the representation / recovery attacks.

    The populations (original, oracle and method over seeds; shadow models over a canary pool) train as ordinary
    engine runs, cached and resumable. Each quantity is printed beside its floor (what retraining gives) and ceiling
    (the original, no unlearning); the audit joins the run's record (`unlearnlab runs show RUN`). A checkpoint's
    audit is printed, not stored.

    Example: unlearnlab audit 3f2a --attacks ulira,klom,relearn --population 8
    """
    from ..engine.events import renderer

    ckpt = _is_checkpoint(run)
    try:
        if not ckpt and (forget or dataset or original):
            raise UnlearnLabError("--forget, --dataset and --original describe a checkpoint; a stored run already "
                                  f"knows them. {run!r} is not a checkpoint path (PATH.json not found).")
        store = _store(results, existing=not ckpt)
        with renderer() as sink:
            if ckpt:
                res = api.audit_checkpoint(run, forget=forget, dataset=dataset, original=original, seed=seed,
                                           split_seed=split_seed, attacks=attacks or None, store=store, events=sink)
            else:
                res = api.audit(run, store=store, attacks=attacks or None, population=population,
                                canaries=canaries, backend=backend, workers=workers, events=sink)
    except UnlearnLabError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps(res, indent=1, default=str))
        return
    title = (f"audit of checkpoint {res['run']}" if ckpt else
             f"audit of run {res['run']} ({res['method']}), {population} models per role")
    t = Table(title=escape(title))
    for c in ("attack", "quantity", "method", "floor / oracle", "ceiling / original", "reading"):
        t.add_column(c, justify="right" if c in ("method", "floor / oracle", "ceiling / original") else "left")
    for r in res["rows"]:
        t.add_row(r["attack"], escape(r["quantity"]), _num(r["method"]), _num(r["floor"]), _num(r["ceiling"]),
                  escape(r["reading"]))
    out.print(t)
    notes = {n for a in res["attacks"].values() for n in a.get("notes", [])}
    for n in sorted(notes):
        err.print(f"note: {n}", highlight=False, markup=False)
    if res.get("rebuilt_max_logit_gap", 0.0) > 1e-3:
        err.print(f"note: the re-run method's forget logits differ from the stored run's by up to "
                  f"{res['rebuilt_max_logit_gap']:.3g} (non-deterministic kernels?); model attacks used the re-run.",
                  highlight=False, markup=False)
