"""The dashboard's JSON API (FastAPI router): runs with filtering and sorting, one run, the per-run views (class,
instance, layer, attack: read from the analysis cache), trade-off points with Pareto fronts, language-model runs.
Everything is read through the store; nothing heavy is computed per request once a run's analysis is cached."""
from __future__ import annotations

import json
import math
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request

from ..errors import StoreError
from .models import NotAnalysable, run_spec_of

RUN_ID = Path(..., pattern=r"^[0-9a-fA-F]{1,32}$", description="a run id or a unique prefix (hex)")
SHOWN = ("UA", "RA", "TA", "MIA-Eff", "Avg.Gap", "RTE", "Forget Quality", "Model Utility", "audit.ulira.auc",
         "audit.lira.gap", "audit.ps", "audit.relearn.acc")
TEXT_COLS = ("id", "created", "task", "dataset", "forget", "model", "method", "config", "seed", "name", "scenario")
ORACLE_DROP = ("method", "config", "name")


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def scenario_of(spec: dict) -> str:
    """'dataset | forget | model' of a run spec."""
    return f"{spec.get('dataset')} | {spec.get('forget')} | {spec.get('model')}"


def oracle_key(spec: dict) -> str:
    """What a run shares with its retrained oracle: the spec without method, config and name."""
    return json.dumps({k: v for k, v in spec.items() if k not in ORACLE_DROP}, sort_keys=True, default=str)


def _config_text(cfg: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((cfg or {}).items()))


def row_of(rec: dict) -> dict[str, Any]:
    """One runs-table row: identity columns and every finite metric of the run."""
    s = rec.get("spec") or {}
    try:
        run_spec_of(rec)
        analysable = True
    except Exception:  # noqa: BLE001 - any spec the views cannot rebuild
        analysable = False
    row = {"id": rec.get("id"), "created": rec.get("created"), "task": s.get("task", "classifier"),
           "dataset": s.get("dataset"), "forget": s.get("forget"), "model": s.get("model"), "method": s.get("method"),
           "config": _config_text(s.get("config") or {}), "seed": s.get("seed"), "name": s.get("name", ""),
           "scenario": scenario_of(s), "analysable": analysable}
    for k, v in (rec.get("metrics") or {}).items():
        row[k] = _finite(v)
    if rec.get("audit"):  # `unlearnlab audit` results: one column per attack (method's value)
        from ..audit.render import headline

        row.update({k: _finite(v) for k, v in headline(rec["audit"]).items()})
    return row


def all_rows(store) -> list[dict[str, Any]]:
    """Every run as a row, each with `oracle_id` (the retrain run of the same scenario, seed and data, if stored)."""
    records = store.list_runs()
    oracles = {oracle_key(r["spec"]): r["id"] for r in records if r["spec"].get("method") == "retrain"}
    rows = []
    for r in records:
        row = row_of(r)
        row["oracle_id"] = oracles.get(oracle_key(r["spec"]))
        rows.append(row)
    return rows


def _sort_key(col: str):
    def key(row: dict) -> tuple:
        v = row.get(col)
        if v is None:
            return (2, 0, "")
        return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
    return key


def _get_record(store, run_id: str) -> dict:
    try:
        return store.get_run(run_id)
    except StoreError as e:
        raise HTTPException(404, str(e)) from None


def pareto_ids(points: list[dict], x: str, y: str, higher_y: bool) -> list[str]:
    """Ids of the points on the front: lower `x` and lower (or, with higher_y, higher) `y` are better."""
    from ..engine.figures import pareto

    pts = [(p[x], p[y]) for p in points if p.get(x) is not None and p.get(y) is not None]
    front = set(pareto(pts, higher=higher_y))
    return [p["id"] for p in points if (p.get(x), p.get(y)) in front]


def tradeoff_data(rows: list[dict], scenario: str | None = None) -> dict[str, Any]:
    """Trade-off points of table rows (all scenarios, or one) and the ids on each scenario's Pareto fronts."""
    rows = [row for row in rows if row["method"] != "oracle-floor"]
    if scenario is not None:
        rows = [row for row in rows if row["scenario"] == scenario]
    keep = ("id", "method", "config", "seed", "scenario", "Avg.Gap", "RTE", "UA", "TA", "Forget Quality",
            "Model Utility")
    points = [{k: row.get(k) for k in keep} for row in rows]
    fronts: dict[str, dict[str, list[str]]] = {}
    for sc in sorted({p["scenario"] for p in points}):
        pts = [p for p in points if p["scenario"] == sc]
        fq = [{**p, "-MU": -p["Model Utility"] if p.get("Model Utility") is not None else None} for p in pts]
        fronts[sc] = {"gap_rte": pareto_ids(pts, "RTE", "Avg.Gap", False),
                      "fq_mu": pareto_ids(fq, "-MU", "Forget Quality", True)}
    return {"points": points, "fronts": fronts, "scenarios": sorted(fronts)}


def _answers_of(store, rec: dict | None, split: str) -> list[dict] | None:
    if not rec or not rec.get("answers"):
        return None
    return json.loads(store.artifact_path(rec["answers"]).read_text()).get(split)


def answers_side_by_side(store, rec: dict, split: str, limit: int) -> dict[str, Any]:
    """The run's per-question answers with its target's and oracle's (same scenario and seed), from stored tables."""
    if rec["spec"].get("task") != "qa":
        raise HTTPException(409, f"Run {rec['id']} is not a language-model run; per-question answers exist for "
                                 "--task qa runs.")
    if not rec.get("answers"):
        raise HTTPException(404, f"Run {rec['id']} stored no per-question answers (runs made before they were "
                                 "recorded, or corpus data); run it again with --fresh.")
    key = oracle_key(rec["spec"])
    by = {r["spec"].get("method"): r for r in store.list_runs() if oracle_key(r["spec"]) == key}
    roles = {"target": by.get("original"), "oracle": by.get("retrain"), "run": rec}
    tables = {role: _answers_of(store, r, split) for role, r in roles.items()}
    if tables["run"] is None:
        raise HTTPException(404, f"Run {rec['id']} has no answers for split {split!r}.")
    out = []
    for i, row in enumerate(tables["run"][:limit]):
        item = {"question": row["question"], "expected": row["target"]}
        for role, t in tables.items():
            got = t[i] if t is not None and i < len(t) and t[i]["question"] == row["question"] else None
            item[role] = None if got is None else {k: got[k] for k in ("answer", "rouge", "truth_ratio")}
        out.append(item)
    return {"run": rec["id"], "method": rec["spec"].get("method"), "split": split,
            "ids": {role: (r or {}).get("id") for role, r in roles.items()}, "questions": out}


def filter_rows(rows: list[dict], filters: dict[str, Any], q: str | None, sort: str, order: str) -> list[dict]:
    """Rows matching every non-None filter (exact) and `q` (substring of a text column), sorted by `sort`
    (missing values last in either order)."""
    for col, val in filters.items():
        if val is not None:
            rows = [row for row in rows if row.get(col) == val]
    if q:
        needle = q.lower()
        rows = [row for row in rows if any(needle in str(row.get(c, "")).lower() for c in TEXT_COLS)]
    ordered = sorted(rows, key=_sort_key(sort), reverse=order == "desc")
    return [row for row in ordered if row.get(sort) is not None] + [row for row in ordered if row.get(sort) is None]


def make_router() -> APIRouter:
    """The /api routes; handlers read app.state.store and app.state.analyses (an AnalysisCache)."""
    r = APIRouter(prefix="/api")

    @r.get("/runs")
    def list_runs(request: Request, dataset: str | None = None, method: str | None = None,
                  forget: str | None = None, task: Literal["classifier", "qa"] | None = None,
                  seed: int | None = None, q: str | None = Query(None, max_length=200),
                  sort: str = Query("created", max_length=64, pattern=r"^[\w.\-/ ]+$"),
                  order: Literal["asc", "desc"] = "desc", limit: int = Query(1000, ge=1, le=100_000),
                  offset: int = Query(0, ge=0)) -> dict[str, Any]:
        """Runs as table rows, filtered (exact dataset/method/forget/task/seed, `q` a substring of the text columns),
        sorted by any column (`sort`, missing values last) and paged."""
        rows = all_rows(request.app.state.store)
        metrics = sorted({k for row in rows for k in row if k not in TEXT_COLS + ("analysable", "oracle_id")})
        if sort not in TEXT_COLS + tuple(metrics):
            raise HTTPException(422, f"sort must be a column: {', '.join(TEXT_COLS + tuple(metrics))}. "
                                     f"Got {sort!r} instead.")
        rows = filter_rows(rows, {"dataset": dataset, "method": method, "forget": forget, "task": task,
                                  "seed": seed}, q, sort, order)
        return {"total": len(rows), "offset": offset, "shown_metrics": [m for m in SHOWN if m in metrics],
                "metrics": metrics, "runs": rows[offset:offset + limit]}

    @r.get("/runs/{run_id}")
    def get_run(request: Request, run_id: str = RUN_ID) -> dict[str, Any]:
        """One stored run record, with `oracle_id` and whether its analysis is cached."""
        store = request.app.state.store
        rec = _get_record(store, run_id)
        oracles = [x for x in store.list_runs(dataset=rec["spec"].get("dataset"), method="retrain")
                   if oracle_key(x["spec"]) == oracle_key(rec["spec"])]
        return {**rec, "oracle_id": oracles[0]["id"] if oracles else None,
                "analysis_cached": request.app.state.analyses.cached(rec)}

    def view(name: str):
        def handler(request: Request, run_id: str = RUN_ID) -> dict[str, Any]:
            rec = _get_record(request.app.state.store, run_id)
            try:
                a = request.app.state.analyses.get(rec, request.app.state.compute)
            except NotAnalysable as e:
                raise HTTPException(409, str(e)) from None
            return {"run_id": rec["id"], "method": rec["spec"].get("method"), "classes": a["classes"],
                    "reproduced": a["reproduced"], name: a[name]}
        handler.__name__ = f"run_{name}"
        handler.__doc__ = f"The {name}-level view data of one run (computed once, then read from the store)."
        return handler

    for name in ("class", "instance", "layer", "attack"):
        r.add_api_route(f"/runs/{{run_id}}/{name}", view(name), methods=["GET"], name=f"run_{name}",
                        summary=f"{name} view of a run")

    @r.get("/tradeoff")
    def tradeoff(request: Request, scenario: str | None = Query(None, max_length=500)) -> dict[str, Any]:
        """Per run: Avg.Gap, RTE, UA, TA (classifiers) and Forget Quality, Model Utility (language models), with the
        ids on each Pareto front (Avg.Gap vs RTE: both lower is better; utility vs forget quality: both higher)."""
        return tradeoff_data(all_rows(request.app.state.store), scenario)

    @r.get("/lm")
    def lm_runs(request: Request) -> dict[str, Any]:
        """Language-model runs: their metrics (forget quality vs model utility, ROUGE, truth ratio) per method."""
        rows = [row for row in all_rows(request.app.state.store) if row["task"] == "qa"]
        return {"runs": rows, "note": "click a run for its per-question answers beside the target's and the oracle's"}

    @r.get("/lm/{run_id}/answers")
    def lm_answers(request: Request, run_id: str = RUN_ID, split: str = Query("forget", pattern=r"^\w+$"),
                   limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        """Per question of `split`: the target answer and the answers, ROUGE-L recall and truth ratio of the target
        model (original), the retrained oracle and this run, side by side."""
        return answers_side_by_side(request.app.state.store, _get_record(request.app.state.store, run_id), split,
                                    limit)

    return r


__all__ = ["all_rows", "answers_side_by_side", "filter_rows", "make_router", "oracle_key", "pareto_ids", "row_of",
           "scenario_of", "tradeoff_data"]
