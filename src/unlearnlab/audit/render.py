"""One summary row per attack quantity: the method beside its floor (oracle-like) and ceiling (original-like)."""
from __future__ import annotations

import math
from typing import Any


def _v(x: Any) -> float:
    if isinstance(x, dict):
        x = x.get("value", x.get("auc", math.nan))
    return float(x) if isinstance(x, (int, float)) else math.nan


def reading(method: float, floor: float, ceiling: float) -> str:
    """Where the method sits between the floor (what retraining gives) and the ceiling (no unlearning)."""
    if any(math.isnan(v) for v in (method, floor, ceiling)) or abs(ceiling - floor) < 1e-9:
        return "floor = ceiling: this set-up cannot show it" if not math.isnan(floor + ceiling) else "-"
    p = (method - floor) / (ceiling - floor)
    if p > 1.25:
        return "beyond the original: further from retraining than no unlearning (overshoot?)"
    if p < -0.25:
        return "beyond the oracle, away from the original (over-forgetting?)"
    return "near floor (as retrained)" if p < 0.25 else "near ceiling (as original)" if p > 0.75 else \
        f"between ({100 * p:.0f}% of the way to the original)"


def _klom_rows(a: dict) -> list[tuple]:
    rows = []
    for split, r in a["splits"].items():
        if "floor" in r:
            rows.append(("klom", f"q95 KLoM {split} (N/2)", r["method@N/2"]["q95"], r["floor"]["q95"],
                         r["ceiling"]["q95"]))
        else:
            rows.append(("klom", f"q95 KLoM {split}", r["method"]["q95"], math.nan, math.nan))
    return rows


def summary_rows(result: dict) -> list[tuple[str, str, float, float, float, str]]:
    """(attack, quantity, method, floor, ceiling, reading) rows of an audit result."""
    a = result["attacks"]
    rows: list[tuple] = []
    if "klom" in a:
        rows += _klom_rows(a["klom"])
    if "eps" in a and "F" in a["eps"]:
        e = a["eps"]
        rows.append(("eps", "challenge F (N/2)" if "floor" in e else "challenge F", e.get("F@N/2", e["F"]),
                     e.get("floor", math.nan), e.get("ceiling", math.nan)))
    if "ps" in a:
        rows.append(("ps", "privacy score", _v(a["ps"]["method"]), _v(a["ps"]["floor"]), _v(a["ps"]["ceiling"])))
    if "ulira" in a:
        u = a["ulira"]
        rows.append(("ulira", "U-LiRA AUC", _v(u["method"]), _v(u["floor"]), _v(u["ceiling"])))
    for k in ("lira", "rmia"):
        if k in a:
            rows.append((k, f"{k.upper()} AUC kept vs forgotten", _v(a[k]["method"]), _v(a[k]["oracle"]),
                         _v(a[k]["original"])))
    if "cka" in a:
        last = a["cka"]["layers"][-2] if len(a["cka"]["layers"]) > 1 else a["cka"]["layers"][-1]
        for split, r in a["cka"]["splits"].items():
            floor = r.get("floor oracle~oracle(seed+1)", {}).get(last, math.nan)
            rows.append(("cka", f"CKA to oracle, {last}, {split}", r["unlearned~oracle"][last], floor,
                         r["ceiling original~oracle"][last]))
    if "probe" in a:
        for k in ("probe", "knn"):
            p = a["probe"][k]
            rows.append(("probe", f"{k} forget acc %", p["method"]["forget"], p["oracle"]["forget"],
                         p["original"]["forget"]))
    for k, what in (("relearn", "forget acc % after relearning"), ("head", "forget acc % after head retrain")):
        if k in a:
            rows.append((k, what, a[k]["method"]["after"], a[k]["oracle"]["after"], a[k]["original"]["after"]))
    return [(*r, reading(*r[2:5])) for r in rows]


def headline(result: dict) -> dict[str, float]:
    """A flat {name: value} of each attack's method value (runs tables, the dashboard): audit.<attack>[.<what>]."""
    keys = {"klom": "audit.klom.q95", "eps": "audit.eps.F", "ps": "audit.ps", "ulira": "audit.ulira.auc",
            "lira": "audit.lira.auc", "rmia": "audit.rmia.auc", "relearn": "audit.relearn.acc",
            "head": "audit.head.acc"}
    out: dict[str, float] = {}
    for attack, quantity, method, *_ in summary_rows(result):
        if attack in ("klom", "cka"):
            split = quantity.split()[-2] if attack == "klom" else quantity.rsplit(", ", 1)[-1]
            name = f"audit.{attack}.{split}" if attack == "cka" else f"{keys['klom']}.{split}"
        elif attack == "probe":
            name = f"audit.{quantity.split()[0]}.forget"
        else:
            name = keys[attack]
        out[name] = method
    for k in ("lira", "rmia"):
        if k in result.get("attacks", {}):
            out[f"audit.{k}.gap"] = result["attacks"][k]["gap_to_oracle"]
    return out


__all__ = ["headline", "reading", "summary_rows"]
