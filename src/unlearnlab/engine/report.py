"""Reports of stored runs: per-scenario leaderboards with seed intervals and the two-oracle noise floor (report.md,
a self-contained report.html, PNG + SVG figures); runs_frame(), the store as a DataFrame. A scenario is every run
sharing (task, dataset, forget, model, split_seed, name); each method setting in it is a row: mean and 95%
t-interval across seeds of the ranking metric (Avg.Gap, lower is better; QA: Forget Quality, higher is better) and
each metric, a paired interval of its difference to the best row over shared seeds, and its cost (RTE/retrain,
optimiser steps). `oracle-floor` runs (a second oracle scored against the first) give the noise floor: differences
below it are not rankings."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StoreError
from .frame import open_store, runs_frame  # noqa: F401  (re-exported: api, tests)
from .stats import CONFIDENCE, _fin, _num, interval  # noqa: F401  (re-exported: benchmarks, figures, tests)

REFERENCE = ("retrain", "original")
FLOOR = "oracle-floor"
SCENARIO_KEYS = ("task", "dataset", "forget", "model", "split_seed", "name")
GAP_METRICS = ("UA", "RA", "TA", "MIA-Eff")
KINDS: dict[str, dict[str, Any]] = {
    "classifier": {"primary": "Avg.Gap", "higher": False, "metrics": GAP_METRICS, "extra": ("KL", "JS"),
                   "same": GAP_METRICS, "forget": "UA"},
    "qa": {"primary": "Forget Quality", "higher": True, "metrics": ("Model Utility", "forget_ROUGE", "retain_ROUGE"),
           "extra": ("PrivLeak",), "same": ("Forget Quality", "Model Utility", "forget_ROUGE", "retain_ROUGE"),
           "forget": "forget_ROUGE"},
    "diffusion": {"primary": "Avg.Gap", "higher": False, "metrics": ("UA", "RA", "IRA", "CRA", "FD"),  # canvas: IRA/CRA
                  "extra": ("FD_forget",), "same": ("UA", "RA", "IRA", "CRA", "FD"), "forget": "UA"},
}
NOOP_TOL = 1e-9


def _name(v: Any) -> str:
    if isinstance(v, dict):
        return str(v.get("name") or json.dumps(v, sort_keys=True))
    return "" if v is None else str(v)


def _sorted(seeds: Iterable[Any]) -> list[Any]:
    try:
        return sorted(seeds)
    except TypeError:
        return sorted(seeds, key=str)


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


# -- grouping -------------------------------------------------------------------------------------------------------
def scenarios(records: Iterable[dict]) -> list[dict[str, Any]]:
    """Completed records grouped by scenario: [{"key", "kind", "settings": {label: {...}}, "floor": [records]}]."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        spec = r.get("spec") if isinstance(r, dict) else None
        if not isinstance(spec, dict) or r.get("status", "completed") != "completed":
            continue
        key = tuple(_canon(spec.get(k) if k != "task" else spec.get(k) or "classifier") for k in SCENARIO_KEYS)
        groups.setdefault(key, []).append(r)
    return [_scenario(rs) for _, rs in sorted(groups.items())]


def _scenario(recs: list[dict]) -> dict[str, Any]:
    spec0 = recs[0]["spec"]
    key = {k: spec0.get(k) for k in SCENARIO_KEYS}
    key["task"] = key["task"] or "classifier"
    floor: dict[str, dict] = {}
    by_method: dict[str, dict[str, dict]] = {}
    for r in sorted(recs, key=lambda r: str(r.get("created", ""))):  # oldest first: a newer rerun replaces it
        s = r["spec"]
        if s.get("method") == FLOOR:
            floor[_canon([s.get("seed"), s.get("config")])] = r
            continue
        setting = _canon({"config": s.get("config") or {}, "recipe": s.get("recipe") or {}})
        by_method.setdefault(str(s.get("method")), {}).setdefault(setting, {})[s.get("seed")] = r
    settings = {}
    for method, per in by_method.items():
        for setting, runs in per.items():
            label = method if len(per) == 1 else f"{method} ({_setting_diff(setting, list(per))})"
            settings[label] = {"method": method, "config": json.loads(setting)["config"], "runs": runs}
    return {"key": key, "kind": key["task"] if key["task"] in KINDS else "classifier", "settings": settings,
            "floor": list(floor.values()), "n_runs": len(recs)}


def _setting_diff(setting: str, all_settings: list[str]) -> str:
    """'lr=0.001, epochs=5': the config/recipe fields in which this setting differs from the method's others."""
    def leaves(d: dict) -> dict[str, str]:
        return {f"{g}.{k}" if g == "recipe" else k: _canon(v) for g in ("config", "recipe") for k, v in d[g].items()}

    mine, others = leaves(json.loads(setting)), [leaves(json.loads(s)) for s in all_settings]
    keys = [k for k in dict.fromkeys(k for o in others for k in o) if len({o.get(k) for o in others}) > 1]

    def text(leaf: dict[str, str], short: bool) -> str:  # floats to 3 significant digits if labels stay apart
        vals = {k: json.loads(leaf[k]) if k in leaf else "-" for k in keys}
        return ", ".join(f"{k}={f'{v:.3g}' if short and isinstance(v, float) else v}" for k, v in vals.items())
    return text(mine, len({text(o, True) for o in others}) == len(others)) or "duplicate"


# -- leaderboard ----------------------------------------------------------------------------------------------------
def _values(rec: dict, ref: dict | None, kind: str) -> dict[str, float]:
    """The record's numeric metrics, completed with Avg.Gap / RTE/retrain from the oracle run when missing."""
    m = {k: _num(v) for k, v in (rec.get("metrics") or {}).items()}
    if rec["spec"].get("method") == "retrain":
        m.setdefault("RTE/retrain", 1.0)
        if kind in ("classifier", "diffusion"):
            m.setdefault("Avg.Gap", 0.0)
    rm = {k: _num(v) for k, v in ((ref or {}).get("metrics") or {}).items()}
    if kind == "classifier" and not _fin(m.get("Avg.Gap")) and rm:
        diffs = [abs(m[k] - rm[k]) for k in GAP_METRICS if _fin(m.get(k)) and _fin(rm.get(k))]
        m["Avg.Gap"] = float(np.mean(diffs)) if diffs else math.nan
    if not _fin(m.get("RTE/retrain")) and _fin(m.get("RTE")) and _num(rm.get("RTE")) > 0:
        m["RTE/retrain"] = m["RTE"] / rm["RTE"]
    m["opt_steps"] = _num((rec.get("timings") or {}).get("opt_steps"))
    return m


def _row(label: str, entry: dict, sc: dict, prim: str, shown: list[str], oracle: dict) -> dict[str, Any]:
    runs = entry["runs"]
    by_seed = {s: _values(runs[s], oracle.get(s), sc["kind"]) for s in _sorted(runs)}
    vals = list(by_seed.values())
    gaps = {m: interval(abs(v[m] - _values(oracle[s], None, sc["kind"]).get(m, math.nan))
                        for s, v in by_seed.items() if s in oracle and _fin(v.get(m))) for m in shown}
    return {"method": label, "method_name": entry["method"], "config": entry["config"],
            "reference": entry["method"] in REFERENCE, "rank": None, "seeds": list(by_seed), "n": len(by_seed),
            "ids": [runs[s].get("id") for s in by_seed], "primary": interval(v.get(prim) for v in vals),
            "metrics": {m: interval(v.get(m) for v in vals) for m in shown}, "gaps": gaps,
            "cost": interval(v.get("RTE/retrain") for v in vals), "opt_steps": interval(v["opt_steps"] for v in vals),
            "diff_to_best": None, "flags": [], "by_seed": by_seed,
            "warnings": list(dict.fromkeys(w for s in by_seed for w in runs[s].get("warnings") or [])),
            "info": _info(runs[s].get("method_info") or {} for s in by_seed)}


def _info(infos: Iterable[dict]) -> dict[str, float]:
    """Mean over seeds of each numeric method_info value (e.g. SSD's selected_fraction)."""
    vals: dict[str, list[float]] = {}
    for info in infos:
        for k, v in info.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals.setdefault(k, []).append(float(v))
    return {k: float(np.mean(v)) for k, v in vals.items()}


def _floor(sc: dict, prim: str, shown: list[str], oracle: dict) -> dict[str, Any] | None:
    if not sc["floor"]:
        return None
    vals = [(r["spec"].get("seed"), _values(r, oracle.get(r["spec"].get("seed")), sc["kind"])) for r in sc["floor"]]
    ref = {s: _values(oracle[s], None, sc["kind"]) for s, _ in vals if s in oracle}
    return {"n": len(vals), "primary": interval(v.get(prim) for _, v in vals),
            "metrics": {m: interval(abs(v.get(m, math.nan) - ref[s].get(m, math.nan)) for s, v in vals if s in ref)
                        for m in shown},
            "pairs": [[r["spec"].get("seed"), (r["spec"].get("config") or {}).get("other_seed")] for r in sc["floor"]],
            "ids": [r.get("id") for r in sc["floor"]]}


def _unchanged(row: dict, original: dict | None, keys: tuple[str, ...]) -> bool:
    """True when every seed of `row` has the original's values (|diff| < NOOP_TOL) on all `keys` present."""
    if original is None or not row["by_seed"]:
        return False
    for s, v in row["by_seed"].items():
        o = original["by_seed"].get(s)
        common = [k for k in keys if o is not None and _fin(v.get(k)) and _fin(o.get(k))]
        if not common or max(abs(v[k] - o[k]) for k in common) >= NOOP_TOL:
            return False
    return True


def _flag(row: dict, best: dict | None, floor: dict | None, original: dict | None, kind: dict,
          oracle_row: dict | None = None) -> list[str]:
    flags = []
    if row is best:
        flags.append("best")
    d = row["diff_to_best"]
    if row is not best and d and d["n"] >= 2 and d["lo"] <= 0 <= d["hi"]:
        flags.append("ties best")
    f, m = (floor or {}).get("primary", {}).get("mean", math.nan), row["primary"]["mean"]
    if row["method_name"] != "retrain" and _fin(f) and _fin(m) and (m >= f if kind["higher"] else m <= f):
        flags.append("within noise floor")
    from .reading import did_not_forget, nothing_to_forget

    if not row["reference"] and _unchanged(row, original, kind["same"]):
        flags.append("CHANGED NOTHING")
    elif not row["reference"] and did_not_forget(row, original, floor, kind, oracle_row):
        flags.append("DID NOT FORGET")

    if row["method_name"] == "original" and nothing_to_forget(row, floor, oracle_row, kind):
        flags.append("NOTHING TO FORGET")
    return flags


def leaderboard(sc: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard of one scenario (see the module docstring): rows, best row, noise floor and flags."""
    kind = KINDS[sc["kind"]]
    prim, higher = kind["primary"], kind["higher"]
    settings = sc["settings"]
    present = {k for e in settings.values() for r in e["runs"].values() for k in (r.get("metrics") or {})}
    shown = [m for m in (*kind["metrics"], *kind["extra"]) if m in present]
    firsts = {e["method"]: e for e in reversed(settings.values())}
    oracle = firsts["retrain"]["runs"] if "retrain" in firsts else {}
    rows = [_row(label, e, sc, prim, shown, oracle) for label, e in settings.items()]
    refs = sorted((r for r in rows if r["reference"]), key=lambda r: REFERENCE.index(r["method_name"]))
    sign = -1.0 if higher else 1.0
    cands = sorted((r for r in rows if not r["reference"]),
                   key=lambda r: (not _fin(r["primary"]["mean"]), sign * _num(r["primary"]["mean"]), r["method"]))
    best = cands[0] if cands and _fin(cands[0]["primary"]["mean"]) else None
    for i, r in enumerate(cands, 1):
        r["rank"] = i
        if best is not None:
            common = [s for s in r["by_seed"] if s in best["by_seed"]]
            d = interval(r["by_seed"][s].get(prim, math.nan) - best["by_seed"][s].get(prim, math.nan) for s in common)
            r["diff_to_best"] = {**d, "seeds": common}
    floor = _floor(sc, prim, shown, oracle)
    original = next((r for r in refs if r["method_name"] == "original"), None)
    oracle_row = next((r for r in refs if r["method_name"] == "retrain"), None)
    for r in rows:
        r["flags"] = _flag(r, best, floor, original, kind, oracle_row)
    key = sc["key"]
    title = " · ".join(p for p in (_name(key["dataset"]), f"forget {_name(key['forget'])}", _name(key["model"]),
                                   f"split seed {key['split_seed']}", f"“{key['name']}”" if key["name"] else "") if p)
    return {"scenario": key, "title": title, "task": key["task"], "kind": sc["kind"], "primary": prim,
            "higher_is_better": higher, "metrics": shown, "rows": refs + cands,
            "best": best["method"] if best else None, "floor": floor, "n_runs": sc["n_runs"], "figures": [],
            "no_oracle": _no_oracle(settings)}


def _no_oracle(settings: dict) -> str:
    """The 'no oracle: ...' note records of a task without a retrained oracle carry (Stable Diffusion), or ''."""
    return next((n for e in settings.values() for r in e["runs"].values() for n in r.get("notes") or []
                 if isinstance(n, str) and n.startswith("no oracle")), "")


# -- building -------------------------------------------------------------------------------------------------------
def _slug(i: int, board: dict) -> str:
    key = board["scenario"]
    text = "-".join(_name(key[k]) for k in ("dataset", "forget", "model", "name") if key[k])
    return f"s{i}-" + re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60]


def build_report(records: Iterable[dict], out_dir: str | Path, *, title: str = "", command: str = "",
                 artifact_path: Any = None) -> dict:
    """Write report.md, report.html and figures/ (PNG + SVG) for `records` into `out_dir`; returns the paths.

    Returns {"markdown": Path, "html": Path, "figures": [Path], "scenarios": [leaderboard dicts]}. `command` is
    quoted in the report as the way it was produced.
    """
    from .figures import render_html, render_markdown, require_matplotlib, scenario_figures
    from .grids import sample_grids

    require_matplotlib()
    scs = scenarios(records)
    if not scs:
        raise ConfigError("There are no completed run records to report. Run an experiment first "
                          "(`unlearnlab run ...`), or check the run ids / experiment names you gave.")
    out = Path(out_dir)
    fig_dir = out / "figures"
    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"Cannot create the report directory {fig_dir} ({e}); choose another --out.") from None
    boards, figures = [], []
    for i, sc in enumerate(scs, 1):
        board = leaderboard(sc)
        board["figures"] = scenario_figures(board, sc, fig_dir, _slug(i, board)) + sample_grids(  # generative runs
            sc, fig_dir, _slug(i, board), artifact_path)
        figures += [p for f in board["figures"] for p in (f["png"], f["svg"])]
        boards.append(board)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    blocks = report_blocks(boards, title or "Unlearning report", command or "unlearnlab.engine.report.build_report()",
                           when)
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_markdown(blocks), encoding="utf-8")
    page.write_text(render_html(blocks, out), encoding="utf-8")
    return {"markdown": md, "html": page, "figures": figures, "scenarios": boards}


# -- report content: blocks that figures.render_markdown / render_html turn into pages -----------------------------
def _fmt(x: Any) -> str:
    x = _num(x)
    return "–" if not math.isfinite(x) else f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _ci(st: dict | None) -> str:
    if not st or not _fin(st["mean"]):
        return "–"
    return _fmt(st["mean"]) + (f" [{_fmt(st['lo'])}, {_fmt(st['hi'])}]" if st["n"] >= 2 else "")


def _pm(st: dict | None) -> str:
    if not st or not _fin(st["mean"]):
        return "–"
    return _fmt(st["mean"]) + (f" ± {_fmt((st['hi'] - st['lo']) / 2)}" if st["n"] >= 2 else "")


def _table(b: dict) -> tuple:
    prim, ms = b["primary"], b["metrics"]
    head = ["#", "method", "n", f"{prim} (95% CI)", "Δ to best (paired 95% CI)", *ms, "cost (RTE/retrain)",
            "opt steps", "flags"]
    rows, classes = [], []
    for r in b["rows"]:
        if r["rank"] == 1 and b["floor"]:
            f = b["floor"]
            rows.append(["floor", "noise floor (oracle vs oracle)", str(f["n"]), _ci(f["primary"]), "",
                         *[f"|Δ| {_pm(f['metrics'][m])}" for m in ms], "", "", ""])
            classes.append("floor")
        diff = "(best)" if "best" in r["flags"] else _ci(r["diff_to_best"])
        rows.append([str(r["rank"] or "ref"), r["method"], str(r["n"]), _ci(r["primary"]), diff,
                     *[_pm(r["metrics"][m]) for m in ms], _pm(r["cost"]), _fmt(r["opt_steps"]["mean"]),
                     ", ".join(r["flags"])])
        classes.append("noop" if {"CHANGED NOTHING", "DID NOT FORGET"} & set(r["flags"]) else
                       "ref" if r["reference"] else "")
    return ("table", head, rows, classes)


def _notes(b: dict) -> list[tuple]:
    prim, f, better = b["primary"], b["floor"], "above" if b["higher_is_better"] else "below"
    if f:
        per = "; ".join(f"{m} {_pm(st)}" for m, st in f["metrics"].items() if _fin(st["mean"]))
        text = (f"**Noise floor.** A second retrained oracle scored against the first (seed pairs "
                f"{', '.join(f'{a}/{c}' for a, c in f['pairs'])}) has {prim} {_ci(f['primary'])}"
                + (f"; per metric |Δ|: {per}" if per else "") + f". Differences in {prim} smaller than this are seed "
                "noise, not rankings.")
    elif b.get("no_oracle"):
        text = (f"**No oracle.** {b['no_oracle']}. Rows are not ranked; read each method's metrics against the "
                "original's.")
    else:
        text = (f"**Noise floor.** Not measured: there are no `{FLOOR}` runs in this scenario. Run 2 or more seeds "
                "(e.g. `--seeds 3`) so the engine adds them; until then small differences may be seed noise.")
    items = []
    for r in b["rows"]:
        m = r["method"]
        if "best" in r["flags"]:
            items.append(f"**{m}** ranks first ({prim} {_ci(r['primary'])}).")
        if "ties best" in r["flags"]:
            d = r["diff_to_best"]
            items.append(f"{m} ties the best: the paired 95% interval of its {prim} difference to {b['best']} "
                         f"({_ci(d)}, seeds {', '.join(map(str, d['seeds']))}) contains 0.")
        if "within noise floor" in r["flags"]:
            items.append(f"{m} is within the noise floor: its mean {prim} {_fmt(r['primary']['mean'])} is at or "
                         f"{better} the two-oracle floor {_fmt(f['primary']['mean'])}"
                         + (" — the forget set leaves no trace this scenario can measure." if m == "original"
                            else ", as close to the oracle as a second retrained model."))
        if "CHANGED NOTHING" in r["flags"]:
            items.append(f"**{m}: CHANGED NOTHING** — its {', '.join(KINDS[b['kind']]['same'])} equal the original "
                         f"model's on every seed (max |Δ| < 1e-9): at this setting the method changed nothing "
                         "these metrics can see. Check its config (learning rate, steps, epochs) before "
                         "reading its row.")
        fm = KINDS[b["kind"]]["forget"]
        if "DID NOT FORGET" in r["flags"]:
            items.append(f"**{m}: DID NOT FORGET** — its {fm} moved from the original's by no more than two oracles "
                         f"differ ({_pm(f['metrics'][fm])}), or by less than 5% of the original's distance to the "
                         "oracle: it changed the model, but not what the forget set "
                         "measures. A tuned setting this weak usually means every stronger one broke the utility "
                         "floor on the validation set; read the row as 'not usable here', not as a ranking.")
        if "NOTHING TO FORGET" in r["flags"]:
            items.append(f"**NOTHING TO FORGET** — the original's {fm} is within the noise floor of the oracle's "
                         f"(two oracles differ by {_pm(f['metrics'][fm])}): this set-up cannot show forgetting, so "
                         "no row here measures it. Choose a forget set the original remembers (a class, or a model "
                         "with a train-test gap).")
        for w in r.get("warnings", []):
            items.append(f"**{m}: warning** — {w}")
        if r.get("info"):
            items.append(f"{m}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["info"].items()) + " (mean over seeds).")
    if any(r["n"] == 1 for r in b["rows"]):
        items.append("Rows with one seed have no interval: run more seeds (e.g. `--seeds 3`).")
    return [("p", text), ("ul", items)] if items else [("p", text)]


def report_blocks(boards: list[dict], title: str, command: str, when: str) -> list[tuple]:
    """The report as blocks (h1, h2, p, ul, table, fig), rendered by figures.render_markdown / render_html."""
    n = sum(b["n_runs"] for b in boards)
    blocks: list[tuple] = [
        ("h1", title),
        ("p", f"Produced by `{command}` on {when} from {n} runs in {len(boards)} scenario(s)."),
        ("p", "One row per method setting; `original` (before unlearning) and `retrain` (the retrained oracle, the "
              "gold standard) are reference rows. Classifiers rank by Avg.Gap, the mean |metric − oracle's| over "
              "UA, RA, TA and MIA-Eff, diffusion models over UA and RA (UA, IRA, CRA on a two-factor set; lower is "
              "better); QA models by Forget Quality (higher is better). Intervals are 95% Student-t intervals across "
              "seeds; Δ to best is paired by seed over the seeds both rows share. Cost is RTE/retrain, the fraction "
              "of the retraining time, and the optimiser steps taken.")]
    for i, b in enumerate(boards, 1):
        blocks += [("h2", f"{i}. {b['title']}"), ("p", f"**Reading.** {reading(b)}"), _table(b), *_notes(b)]
        blocks += [("fig", f["caption"], f["png"], f["svg"]) for f in b["figures"]]
    return blocks


# -- selecting runs and the DataFrame view ----------------------------------------------------------------------------


from .reading import reading  # noqa: E402  (the one-line reading of a leaderboard; needs the helpers above)

__all__ = ["build_report", "interval", "leaderboard", "open_store", "reading", "runs_frame", "scenarios"]
