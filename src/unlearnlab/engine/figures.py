"""How a report looks: the figures of each scenario (matplotlib, Agg backend, saved as PNG and SVG) and the pages,
report.md and a self-contained report.html with the figures embedded as base64 PNG.

Classifiers: (a) UA vs TA per method, (b) Avg.Gap vs cost with Pareto fronts, (c) per-class accuracy,
(d) histograms of the MIA score on forget vs test. QA models: (e) Forget Quality (log) vs Model Utility, (b) with
Forget Quality. Any task: (f) training curves when records carry "curves". A figure without data is skipped.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

REF_STYLE = {"retrain": ("*", "black", 14, "oracle (retrain)"), "original": ("X", "tab:red", 11, "original")}
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
            "tab:gray", "#1f3a93", "#8e44ad", "#16a085", "#d35400", "#7f8c8d")
_MARKERS = ("o", "s", "^", "D")


def require_matplotlib() -> Any:
    """The matplotlib module with the Agg backend selected; a ConfigError saying how to install it if missing."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("Reports draw figures with matplotlib, which is not installed: "
                          "pip install 'unlearnlab[report]'.") from None
    matplotlib.use("Agg")
    return matplotlib


def _fin(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _half(st: dict) -> float:
    return (st["hi"] - st["lo"]) / 2 if st["n"] >= 2 and _fin(st["hi"]) else 0.0


def _styles(board: dict) -> dict[str, tuple[str, str, float, str]]:
    """(marker, colour, size, legend label) per row: the oracle and the original marked distinctly."""
    out, i = {}, 0
    for row in board["rows"]:
        if row["method_name"] in REF_STYLE and row["reference"]:
            marker, colour, size, label = REF_STYLE[row["method_name"]]
            out[row["method"]] = (marker, colour, size, label if row["method"] == row["method_name"] else row["method"])
        else:
            noop = next((f" ({f})" for f in ("CHANGED NOTHING", "DID NOT FORGET") if f in row["flags"]), "")
            marker = _MARKERS[i // len(_PALETTE) % len(_MARKERS)]  # past the palette, a colour comes back with
            out[row["method"]] = (marker, _PALETTE[i % len(_PALETTE)], 7, row["method"] + noop)  # another marker
            i += 1
    return out


def _title(ax: Any, what: str, board: dict) -> None:
    ax.set_title(f"{what}\n{board['title']}", fontsize=10)


def pareto(points: list[tuple[float, float]], higher: bool = False) -> list[tuple[float, float]]:
    """The (cost, quality) points that no other point beats on both lower cost and better quality, by cost."""
    front: list[tuple[float, float]] = []
    for c, q in sorted(points, key=lambda p: (p[0], -p[1] if higher else p[1])):
        if not front or (q > front[-1][1] if higher else q < front[-1][1]):
            front.append((c, q))
    return front


def _new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (6.4, 4.6), **kw: Any):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


LEGEND_INSIDE = 8  # legend entries that fit inside an axes without covering its points


def _legend(ax: Any, **kw: Any) -> None:
    """The axes' legend: inside ("best") when short; beside the axes when long (a benchmark's 16 rows covered the
    oracle's point), the figure widened by the legend's width so the axes keep their size."""
    n = len(ax.get_legend_handles_labels()[1])
    if n <= LEGEND_INSIDE:
        ax.legend(fontsize=7, loc="best", **kw)
        return
    ncols = 1 if n <= 24 else 2
    ax.figure.set_figwidth(ax.figure.get_figwidth() + 3.2 * ncols)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, ncols=ncols, **kw)


def _means_plot(ax: Any, board: dict, xkey: str, ykey: str) -> int:
    """Per-seed points (faint) and mean ± interval per row of metric ykey against xkey; returns rows drawn."""
    styles, drawn = _styles(board), 0
    for row in board["rows"]:
        pts = [(v.get(xkey), v.get(ykey)) for v in row["by_seed"].values()]
        pts = [(x, y) for x, y in pts if _fin(x) and _fin(y) and (ykey != "Forget Quality" or y > 0)]
        if not pts:
            continue
        marker, colour, size, label = styles[row["method"]]
        ax.scatter(*zip(*pts), color=colour, alpha=0.3, s=14, marker=marker, linewidths=0)
        xs, ys = _stat(row, xkey, board["primary"]), _stat(row, ykey, board["primary"])
        ax.errorbar(xs["mean"], ys["mean"], xerr=_half(xs), yerr=_half(ys), fmt=marker, color=colour, ms=size,
                    capsize=3, label=label, markeredgecolor="white" if marker != "*" else colour,
                    zorder=4 if row["reference"] else 3)
        drawn += 1
    return drawn


def _stat(row: dict, key: str, primary: str) -> dict:
    from .report import interval

    if key == primary:
        return row["primary"]
    return row["metrics"].get(key) or interval(v.get(key) for v in row["by_seed"].values())


def fig_accuracy(board: dict, sc: dict):
    """(a) UA (100 - forget accuracy) vs TA per method; the oracle's values as dotted guides."""
    if board["task"] == "qa" or not {"UA", "TA"} <= set(board["metrics"]):
        return None
    fig, axes = _new_figure()
    ax = axes[0][0]
    if not _means_plot(ax, board, "UA", "TA"):
        return None
    oracle = next((r for r in board["rows"] if r["method_name"] == "retrain" and r["reference"]), None)
    if oracle is not None and _fin(oracle["metrics"]["UA"]["mean"]):
        ax.axvline(oracle["metrics"]["UA"]["mean"], color="black", ls=":", lw=1)
        ax.axhline(oracle["metrics"]["TA"]["mean"], color="black", ls=":", lw=1)
    ax.set(xlabel="UA = 100 − forget accuracy (%)", ylabel="TA, test accuracy (%)")
    _title(ax, "Forgetting vs test accuracy", board)
    _legend(ax)
    ax.grid(alpha=0.3)
    return fig


def fig_quality(board: dict, sc: dict):
    """(e) QA models: Forget Quality (log scale, higher is better) vs Model Utility per method."""
    if board["task"] != "qa" or "Model Utility" not in board["metrics"]:
        return None
    fig, axes = _new_figure()
    ax = axes[0][0]
    if not _means_plot(ax, board, "Model Utility", "Forget Quality"):
        return None
    ax.set_yscale("log")
    ax.set(xlabel="Model Utility", ylabel="Forget Quality (log; higher is better)")
    _title(ax, "Forget quality vs model utility", board)
    _legend(ax)
    ax.grid(alpha=0.3, which="both")
    return fig


def fig_cost(board: dict, sc: dict):
    """(b) ranking metric vs cost (RTE/retrain) with Pareto fronts over method means and over every run."""
    prim, higher = board["primary"], board["higher_is_better"]
    rows = [r for r in board["rows"] if r["method_name"] != "original"]
    runs = [(v["RTE/retrain"], v[prim], r) for r in rows for v in r["by_seed"].values()
            if _fin(v.get("RTE/retrain")) and v["RTE/retrain"] > 0 and _fin(v.get(prim))]
    means = [(r["cost"]["mean"], r["primary"]["mean"], r) for r in rows
             if _fin(r["cost"]["mean"]) and r["cost"]["mean"] > 0 and _fin(r["primary"]["mean"])]
    if not means:
        return None
    fig, axes = _new_figure()
    ax, styles = axes[0][0], _styles(board)
    for c, q, r in runs:
        ax.scatter(c, q, color=styles[r["method"]][1], alpha=0.3, s=14, linewidths=0)
    for c, q, r in means:
        marker, colour, size, label = styles[r["method"]]
        ax.errorbar(c, q, xerr=_half(r["cost"]), yerr=_half(r["primary"]), fmt=marker, color=colour, ms=size,
                    capsize=3, label=label, zorder=4 if r["reference"] else 3)
    xmax = max(c for c, _, _ in runs + means)
    for pts, style, label in ((runs, dict(color="gray", ls="--", lw=1), "Pareto front, every run"),
                              (means, dict(color="black", lw=1.5), "Pareto front, method means")):
        front = pareto([(c, q) for c, q, _ in pts], higher)
        if front:
            xs, ys = [c for c, _ in front] + [xmax], [q for _, q in front] + [front[-1][1]]
            ax.step(xs, ys, where="post", label=label, **style)
    floor = board.get("floor")
    if floor and _fin(floor["primary"]["mean"]):
        f = floor["primary"]["mean"]
        if higher:
            ax.axhline(f, color="tab:olive", ls="-.", label="noise floor (two oracles)")
        else:
            ax.axhspan(0, f, color="tab:olive", alpha=0.15, label="noise floor (two oracles)")
    costs = [c for c, _, _ in runs + means]
    if max(costs) / min(costs) > 10:
        ax.set_xscale("log")
    if higher and prim == "Forget Quality" and all(q > 0 for _, q, _ in runs + means):
        ax.set_yscale("log")
    ax.set(xlabel="cost: RTE / retrain (fraction of retraining time)",
           ylabel=f"{prim} ({'higher' if higher else 'lower'} is better)")
    _title(ax, f"{prim} vs cost", board)
    _legend(ax)
    ax.grid(alpha=0.3, which="both")
    return fig


def _details(sc: dict, row: dict, part: str) -> list[dict]:
    runs = sc["settings"][row["method"]]["runs"].values()
    return [d[part] for r in runs if isinstance(d := r.get("details"), dict) and isinstance(d.get(part), dict)]


def fig_per_class(board: dict, sc: dict):
    """(c) per-class accuracy (mean over seeds) of each method on the forget and test splits, grouped bars."""
    per = {r["method"]: _details(sc, r, "per_class_acc") for r in board["rows"]}
    per = {m: d for m, d in per.items() if d}
    if not per:
        return None
    splits = [s for s in ("forget", "test") if any(s in d for ds in per.values() for d in ds)]
    if not splits:
        return None
    fig, axes = _new_figure(1, len(splits), size=(9.0, 3.4), sharey=True)
    styles, width = _styles(board), 0.8 / len(per)
    for ax, split in zip(axes[:, 0], splits):
        n = 0
        for j, (m, ds) in enumerate(per.items()):
            table = [[np.nan if a is None else float(a) for a in d[split]] for d in ds if split in d]
            if not table:
                continue
            k = max(len(t) for t in table)
            arr = np.array([t + [np.nan] * (k - len(t)) for t in table])
            n = max(n, k)
            cnt = np.isfinite(arr).sum(axis=0)
            acc = np.where(cnt > 0, np.nansum(arr, axis=0) / np.maximum(cnt, 1), np.nan)  # nan: class not in split
            ax.bar(np.arange(k) + (j - (len(per) - 1) / 2) * width, np.nan_to_num(acc), width,
                   color=styles[m][1], label=styles[m][3])
        ax.set(ylabel=f"{split} accuracy (%)")
        _title(ax, f"Per-class accuracy on {split}", board)
        ax.set_xticks(range(0, n, 1 if n <= 30 else max(1, n // 20)))
        ax.grid(alpha=0.3, axis="y")
    axes[-1][0].set_xlabel("class")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if len(labels) <= LEGEND_INSIDE:
        axes[0][0].legend(fontsize=7, ncols=min(len(labels), 4), loc="lower left")
    else:  # beside both panels, the figure widened by its width (inside, 16 rows covered the bars)
        fig.set_figwidth(fig.get_figwidth() + 3.2)
        fig.legend(handles, labels, fontsize=7, loc="outside right upper")
    return fig


def fig_hist(board: dict, sc: dict):
    """(d) histograms of the MIA score (p(true class)) on forget vs test per method, the oracle's overlaid."""
    hists = {r["method"]: _details(sc, r, "hist") for r in board["rows"]}
    hists = {m: [h for h in hs if h.get("bins") and h.get("forget")] for m, hs in hists.items()}
    hists = {m: hs for m, hs in hists.items() if hs}
    if not hists:
        return None
    oracle_label = next((r["method"] for r in board["rows"] if r["method_name"] == "retrain" and r["reference"]), None)
    oracle, styles = hists.get(oracle_label), _styles(board)
    ncols = min(3, len(hists))
    nrows = math.ceil(len(hists) / ncols)
    fig, axes = _new_figure(ncols, nrows, size=(4.2, 3.0), sharex=True)
    for ax, (m, hs) in zip(axes.flat, hists.items()):
        edges = np.asarray(hs[0]["bins"], dtype=float)
        for split, colour in (("forget", "tab:red"), ("test", "tab:blue")):
            counts = _summed(hs, split, len(edges) - 1)
            if counts is not None:
                ax.stairs(counts, edges, fill=True, alpha=0.35, color=colour, label=split)
        ref = _summed(oracle or [], "forget", len(edges) - 1)
        if ref is not None and m != oracle_label:
            ax.stairs(ref, edges, color="black", ls="--", lw=1.2, label="oracle forget")
        ax.set_title(styles[m][3], fontsize=9)
        ax.set_xlabel(hs[0].get("score", "score"), fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(hists):]:
        ax.set_visible(False)
    fig.suptitle(f"MIA score on forget vs test\n{board['title']}", fontsize=10)
    return fig


def _summed(hs: list[dict], split: str, nbins: int) -> np.ndarray | None:
    """Counts of `split` summed over seeds and normalised to fractions (None when absent)."""
    rows = [np.asarray(h[split], dtype=float) for h in hs if len(h.get(split) or []) == nbins]
    if not rows:
        return None
    total = np.sum(rows, axis=0)
    return total / total.sum() if total.sum() > 0 else total


def fig_curves(board: dict, sc: dict):
    """(f) training curves ("curves": {name: [[step, value], ...]}) of every run, coloured by method."""
    styles = _styles(board)
    found = [(r["method"], rec) for r in board["rows"] for rec in sc["settings"][r["method"]]["runs"].values()
             if isinstance(rec.get("curves"), dict) and rec["curves"]]
    names = list(dict.fromkeys(n for _, rec in found for n in rec["curves"]))
    if not names:
        return None
    ncols = min(3, len(names))
    fig, axes = _new_figure(ncols, math.ceil(len(names) / ncols), size=(4.6, 3.2))
    for ax, name in zip(axes.flat, names):
        seen: set[str] = set()
        for m, rec in found:
            pts = [p for p in rec["curves"].get(name) or [] if len(p) == 2 and _fin(p[0]) and _fin(p[1])]
            if pts:
                ax.plot(*zip(*pts), color=styles[m][1], lw=1, alpha=0.8, label=None if m in seen else styles[m][3])
                seen.add(m)
        ax.set(title=name, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Training curves\n{board['title']}", fontsize=10)
    return fig


FIGURES = (("accuracy", fig_accuracy, "Forgetting (UA) vs test accuracy (TA): mean ± 95% interval over seeds, "
            "faint points are single seeds; the star is the retrained oracle, the cross the original."),
           ("quality", fig_quality, "Forget Quality (log) vs Model Utility per method; faint points are single seeds."),
           ("cost", fig_cost, "Ranking metric vs cost (RTE/retrain) with the Pareto front over method means (solid) "
            "and over every run (dashed); the two-oracle noise floor, when measured, is shaded (or dash-dotted)."),
           ("per-class", fig_per_class, "Per-class accuracy on the forget and test splits (mean over seeds)."),
           ("mia-hist", fig_hist, "MIA score p(true class) on forget vs test per method, the oracle's forget "
            "histogram dashed."),
           ("curves", fig_curves, "Training curves of every run."))


def scenario_figures(board: dict, sc: dict, fig_dir: Path, slug: str) -> list[dict[str, Any]]:
    """Draw and save every applicable figure of one scenario: [{"kind", "caption", "png", "svg"}]."""
    mpl = require_matplotlib()
    made = []
    for kind, draw, caption in FIGURES:
        fig = draw(board, sc)
        if fig is None:
            continue
        png, svg = Path(fig_dir) / f"{slug}-{kind}.png", Path(fig_dir) / f"{slug}-{kind}.svg"
        with mpl.rc_context({"svg.hashsalt": "unlearnlab"}):
            fig.savefig(png, dpi=110)
            fig.savefig(svg, metadata={"Date": None})
        made.append({"kind": kind, "caption": caption, "png": png, "svg": svg})
    return made



# -- pages ---------------------------------------------------------------------------------------------------------
def render_markdown(blocks: list[tuple]) -> str:
    """Markdown text of report blocks (figures linked under figures/)."""
    lines: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + rest[0], ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in rest[0]] + [""]
        elif kind == "table":
            head, rows = rest[0], rest[1]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
        elif kind == "fig":
            cap, png, svg = rest
            lines += [f"![{cap}](figures/{Path(png).name})", "", f"*{cap}* ([SVG](figures/{Path(svg).name}))", ""]
    return "\n".join(lines)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right}td:nth-child(2),th:nth-child(2),td:last-child{text-align:left}th{background:#f2f2f2}"
        "tr.ref{background:#f7f7fb}tr.floor{background:#fff8e0;font-style:italic}tr.noop{background:#fde2e2}"
        "code{background:#f2f2f2;padding:0 3px}figure{margin:1em 0}img{max-width:100%}figcaption{color:#555}")


def _inline(text: str) -> str:
    import html

    t = html.escape(str(text))
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)


def render_html(blocks: list[tuple], out_dir: str | Path = ".") -> str:
    """One self-contained HTML page of report blocks: inline CSS, figures embedded as base64 PNG."""
    import base64

    title = next((b[1] for b in blocks if b[0] == "h1"), "Unlearning report")
    body: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{_inline(rest[0])}</{kind}>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            head, rows, classes = rest
            body.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>" + "".join(
                f"<tr class=\"{c}\">" + "".join(f"<td>{_inline(x)}</td>" for x in r) + "</tr>"
                for r, c in zip(rows, classes)) + "</table>")
        elif kind == "fig":
            cap, png, _ = rest
            data = base64.b64encode(Path(out_dir, "figures", Path(png).name).read_bytes()).decode("ascii")
            body.append(f"<figure><img alt=\"{_inline(cap)}\" src=\"data:image/png;base64,{data}\">"
                        f"<figcaption>{_inline(cap)}</figcaption></figure>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_inline(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


__all__ = ["FIGURES", "pareto", "render_html", "render_markdown", "require_matplotlib", "scenario_figures"]
