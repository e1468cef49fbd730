"""Diffusion benchmark: every diffusion unlearning method on the CPU-sized class-conditional DDPM, several seeds,
equal tuning budgets, the noise floor, the prompt attack, and the papers' directions checked one by one.

    .venv/bin/python benchmarks/diffusion_bench.py --results results/bench-gen --out docs/benchmark_diffusion.md
    .venv/bin/python benchmarks/diffusion_bench.py --dataset digits-canvas-gen --forget style:thick ...
    .venv/bin/python benchmarks/diffusion_bench.py --report-only ...   # rebuild the doc from the stored runs

Set-up: the spec of examples/diffusion-digits.yaml (8x8 digits, `ddpm:small,timesteps=200`, 40 epochs), so its
cached originals and oracles are reused. Each method runs at a CPU-sized step count (a few dozen optimiser steps
instead of its code's 200-1000; `STEPS` below, the same ones the tests check); with `--budget` > 0 every method
gets the same number of Optuna trials over its config's search space (learning rate and the method's own knobs)
on the validation scenario (engine/tune.py: class forgetting tunes on forgetting class (c + 1) mod K, never the
reported class), selected by Avg.Gap with a floor on retained accuracy. The engine adds the noise floor (a second
oracle of another seed scored against the first). With `--attack` every record also carries the
UnlearnDiffAtk-style attack's ASR before and after (eval/gen_attack.py).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
from report_doc import leaderboard_lines, run_log, tune_side_by_side

from unlearnlab.engine.events import LineRenderer
from unlearnlab.engine.report import build_report, interval, reading
from unlearnlab.engine.runner import execute
from unlearnlab.spec import from_dict
from unlearnlab.store import Store

RECIPE = {"epochs": 40, "lr": 0.002, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 64,
          "schedule": "cosine", "warmup": 0.05, "ema": 0.995}
# CPU-sized step counts and batch sizes (the settings tests/gen check); learning rates are these defaults unless tuned
STEPS = {
    "esd": {"iterations": 40, "ddim_steps": 10, "lr": 3e-4, "batch_size": 8},
    "ga_gen": {"iterations": 8, "lr": 1e-4, "batch_size": 64},
    "salun_gen": {"iterations": 40, "lr": 2e-4, "batch_size": 64},
    "sfd": {"iterations": 50, "batch_size": 16, "lr": 1e-3, "g_forget_coef": 0.1, "sg_forget_coef": 0.1, "ema": 0},
    "unguide": {"iterations": 40, "lr": 3e-4, "ddim_steps": 10, "batch_size": 8, "t_enc": 5, "repeats": 8},
    "doco": {"iterations": 60, "warm_up": 20, "batch_size": 16, "lr": 3e-4, "dlr": 1e-3, "anchor_images": 64},
    # the UNet (ESD-u's subset): training only the condition table gives no robustness here (docs/diffusion.md)
    "advunlearn": {"train_method": "esd-u", "iterations": 40, "warmup_iter": 10, "attack_step": 3, "ddim_steps": 10,
                   "lr": 3e-4},
}
# extra rows: SalUn's relabelling without the mask (the SalUn check); AdvUnlearn on the condition table (its
# paper's text-encoder choice, our table's analogue)
VARIANTS = [("salun_gen", {"threshold": 1.0}, "salun_gen (no mask)"),
            ("advunlearn", {"train_method": "cond", "lr": 1e-2}, "advunlearn (table)")]
SHOWN = ("UA", "RA", "FD", "IRA", "CRA", "ASR_pre", "ASR_post", "Avg.Gap")


def _sink() -> LineRenderer:
    return LineRenderer(sys.stderr, every_s=60)


def _spec(args, forget: str, methods: list[str], seeds: list[int], overrides: dict, name: str = "",
          attack: bool = True) -> dict:
    canvas = "canvas" in args.dataset
    # the two-factor set: 20 epochs and guidance 1, 20 samples per condition (examples/diffusion-canvas-long.yaml;
    # docs/diffusion.md: at 10 epochs the model ignores the digit asked for, CRA at chance, and at guidance 2 its
    # styles overshoot, so neither IRA nor CRA could separate methods)
    samples = args.samples or (20 if canvas else 100)
    options = {"size": 8, "samples": samples, "sample_steps": 25, "guidance": 1.0 if canvas else 2.0, "grid": 8}
    if args.attack and attack:
        options["attack"] = True
    model = args.model or ("ddpm:small,timesteps=200,factors=10x4" if canvas
                           else "ddpm:small,timesteps=200")
    return {"dataset": args.dataset, "forget": forget, "model": model, "methods": methods, "seeds": seeds,
            "recipe": {**RECIPE, **({"epochs": 20} if canvas else {})}, "options": options,
            "overrides": overrides, "name": name or args.name}


def phase_tune(args, store: Store, methods: list[str], log: dict) -> dict[str, dict]:
    """Equal Optuna budgets per method on the validation scenario; returns {method: chosen overrides}. Trials run
    without the prompt attack: selection (Avg.Gap over UA and RA, or IRA/CRA) does not read ASR. With
    --warm-start each method's first trial is its `STEPS` setting. The validation original and oracle are trained
    first, then the methods' studies run side by side, one worker process per core."""
    t0 = time.perf_counter()
    spec = _spec(args, args.forget, methods, args.tune_seeds, {m: dict(STEPS.get(m, {})) for m in methods},
                 attack=False)
    execute([from_dict({**spec, "forget": f"val:{args.forget}", "methods": [], "overrides": {},
                        "name": f"{args.name}:val"})],
            store=store, sink=_sink(), backend=args.backend, workers=args.workers)
    res = tune_side_by_side(spec, methods, budget=args.budget, results=args.results, workers=args.workers,
                            warm_start=args.warm_start)
    log["tuning"] = {"seconds": time.perf_counter() - t0, "budget": args.budget, "seeds": args.tune_seeds,
                     "warm_start": args.warm_start,
                     "objective": res["objective"], "utility_floor": res["utility_floor"],
                     "validation": res["validation_forget"],
                     "methods": {m: {"best": e["best"], "sensitivity": e["sensitivity"], "note": e.get("note")}
                                 for m, e in res["methods"].items()}}
    return {m: (e["best"] or {}).get("params", {}) for m, e in res["methods"].items()}


def phase_report(args, store: Store, methods: list[str], chosen: dict, log: dict) -> tuple[list[dict], float]:
    """The chosen (tuned or fixed) settings on the reported scenario, all seeds; returns this run's records (stored
    ones reused) and the seconds taken."""
    over = {m: {**STEPS.get(m, {}), **chosen.get(m, {})} for m in methods}
    t0 = time.perf_counter()  # the reference rows first: the models' training is timed apart from the methods
    execute([from_dict(_spec(args, args.forget, [], args.seeds, {}))], store=store, sink=_sink(),
            backend=args.backend, workers=args.workers)
    log["phases"]["originals and oracles of the reported seeds, their records and the noise floor"] = \
        time.perf_counter() - t0
    specs = [from_dict(_spec(args, args.forget, methods, args.seeds, over))]
    for m, extra, _ in VARIANTS:
        if m in methods:
            specs.append(from_dict(_spec(args, args.forget, [m], args.seeds, {m: {**over[m], **extra}})))
    t0 = time.perf_counter()
    res = execute(specs, store=store, sink=_sink(), backend=args.backend, workers=args.workers)
    for e in res["errors"]:
        print(f"error: {e}", file=sys.stderr)
    return [r for recs in res["records"] for r in recs], time.perf_counter() - t0


def reported_records(args, store: Store, log: dict) -> list[dict]:
    """The records of the last reported phase under this --name, by run id (kept in the log). Selecting by method
    name among every stored run of the name mixed a tuned run's rows with an earlier fixed-setting run's."""
    ids = set(log.get("report_ids") or ())
    if not ids:
        sys.exit(f"{args.results}/diffusion_log_{args.name}.json names no reported runs (written before the log kept "
                 "run ids, or never run): run without --report-only first")
    records = [r for r in store.list_runs() if r.get("id") in ids and r.get("status", "completed") == "completed"]
    if len(records) < len(ids):
        print(f"warning: {len(ids) - len(records)} of the {len(ids)} runs the log names are no longer stored",
              file=sys.stderr)
    return records


def _label(rec: dict) -> str:
    cfg, m = rec["spec"].get("config") or {}, rec["spec"]["method"]
    return next((label for v, extra, label in VARIANTS if v == m and all(cfg.get(k) == x for k, x in extra.items())),
                m)


def _by(records: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for r in records:
        if r["spec"]["method"] == "oracle-floor":
            continue
        out.setdefault(_label(r), {})[r["spec"]["seed"]] = r
    return out


def _cell(recs: dict[int, dict], key: str) -> str:
    vals = [r["metrics"][key] for r in recs.values() if _fin(r["metrics"].get(key))]
    if not vals:
        return "–"
    st, fmt = interval(vals), ".3f" if key == "RTE/retrain" else ".1f"
    return f"{st['mean']:{fmt}}" + (f" ± {(st['hi'] - st['lo']) / 2:{fmt}}" if st["n"] > 1 else "")


def _fin(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def table(by: dict[str, dict[int, dict]]) -> list[str]:
    """Mean ± half the 95% t-interval across seeds per method; cost = method time / the oracle's training time."""
    keys = [k for k in SHOWN if any(k in r["metrics"] for recs in by.values() for r in recs.values())]
    keys += ["RTE/retrain"]
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    order = ["original", "retrain"] + sorted(k for k in by if k not in ("original", "retrain"))
    for m in order:
        if m in by:
            lines.append(f"| {m} | " + " | ".join(_cell(by[m], k) for k in keys) + " |")
    return lines


def checks(by: dict, floor: dict) -> list[str]:
    """The papers' directions, each reproduced or not (paired by seed; the noise floor beside)."""
    f_ua = floor.get("UA", math.nan)
    out = []
    canvas = any("IRA" in r["metrics"] for recs in by.values() for r in recs.values())
    kept = ("IRA", "CRA") if canvas else ("RA",)  # retained quality: UnlearnCanvas's two retain accuracies
    d_ua = _paired(by, "salun_gen", "salun_gen (no mask)", "UA")
    if d_ua is not None:
        out.append(f"- SalUn keeps retained quality better than unmasked relabelling at equal UA (SalUn paper, "
                   f"diffusion half): UA difference {d_ua['mean']:+.1f} [{d_ua['lo']:+.1f}, {d_ua['hi']:+.1f}] "
                   f"(two oracles differ in UA by {f_ua:.1f}); "
                   + "; ".join(f"{k} of SalUn minus no-mask: "
                               + _verdict(_paired(by, "salun_gen", "salun_gen (no mask)", k), "above") for k in kept))
    d_asr = _paired(by, "advunlearn", "esd", "ASR_post")
    if d_asr is not None:
        d_pre = _paired(by, "advunlearn", "esd", "ASR_pre")
        d_kept = {k: _paired(by, "advunlearn", "esd", k) for k in kept}
        shown = ", ".join(f"{k} difference {d['mean']:+.1f}" for k, d in d_kept.items() if d)
        out.append("- AdvUnlearn lowers post-attack ASR vs ESD (AdvUnlearn paper): ASR_post of AdvUnlearn minus "
                   "ESD: " + _verdict(d_asr, "below") + (f"; pre-attack ASR difference {d_pre['mean']:+.1f}, "
                                                          f"{shown} (the paper compares at matched erasure and "
                                                          "utility)" if d_pre and shown else ""))
    if canvas:
        methods = [m for m in by if m not in ("original", "retrain")]
        mean = {m: {k: np.mean([r["metrics"][k] for r in by[m].values()]) for k in ("UA", "IRA", "CRA")}
                for m in methods}
        best = {k: max(methods, key=lambda m, k=k: mean[m][k]) for k in ("UA", "IRA", "CRA")}
        one = len(set(best.values())) == 1
        out.append("- No method wins all UnlearnCanvas metrics (UnlearnCanvas paper): best UA "
                   f"{best['UA']}, best IRA {best['IRA']}, best CRA {best['CRA']}: "
                   + ("**not reproduced** (one method wins all)" if one else "**reproduced**"))
    return out


def _paired(by: dict, a: str, b: str, key: str) -> dict | None:
    if a not in by or b not in by:
        return None
    seeds = [s for s in by[a] if s in by[b] and key in by[a][s]["metrics"] and key in by[b][s]["metrics"]]
    return interval(by[a][s]["metrics"][key] - by[b][s]["metrics"][key] for s in seeds) if seeds else None


def _verdict(d: dict | None, want: str) -> str:
    if d is None:
        return "not run"
    side = "below" if d["hi"] < 0 else "above" if d["lo"] > 0 else "tie"
    if d["n"] < 2:
        side = "below" if d["mean"] < 0 else "above"
    return f"{side} (paired Δ {d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}], n={d['n']}); " + \
        ("**reproduced**" if side == want else "**not reproduced**")


def floor_of(records: list[dict]) -> dict[str, float]:
    """Mean |second oracle - first oracle| per metric over the floor records (Avg.Gap is already a gap)."""
    oracle = {r["spec"]["seed"]: r["metrics"] for r in records if r["spec"]["method"] == "retrain"}
    fl = [(r["metrics"], oracle.get(r["spec"]["seed"], {})) for r in records if r["spec"]["method"] == "oracle-floor"]
    out = {}
    for k in ("UA", "RA", "IRA", "CRA", "FD", "ASR_post", "Avg.Gap"):
        d = [abs(m[k] - (0.0 if k == "Avg.Gap" else o[k])) for m, o in fl if k in m and (k == "Avg.Gap" or k in o)]
        if d:
            out[k] = float(np.mean(d))
    return out


def write_doc(args, records: list[dict], log: dict, out: Path, store: Store) -> None:
    rep_dir = out.with_suffix("")
    rep = build_report(records, rep_dir, title="Diffusion benchmark: leaderboards", command=log["command"],
                       artifact_path=store.artifact_path)  # the sample grid of every method setting (its first seed)
    boards = [b for b in rep["scenarios"] if not b["scenario"]["name"].endswith(":val")]
    by, floor = _by(records), floor_of(records)
    lines = [f"# Diffusion benchmark: {args.dataset}, forget {args.forget}", "", f"Command: `{log['command']}`", "",
             f"Machine: {platform.machine()}, {log['cores']} cores, shared with other work; {log['date']}.", "",
             "## Time", ""]
    lines += [f"- {k}: {v / 60:.1f} min" for k, v in log["phases"].items()]
    lines += ["- originals and oracles are cached in the results store (trained once per seed; a rerun reuses them, "
              "so its phases show only what it computed)",
              "", "## Results", "",
              f"Seeds {sorted({r['spec']['seed'] for r in records})}; mean ± half the 95% t-interval across seeds. "
              "UA = 100 - judge accuracy on the forgotten class's samples, RA = judge accuracy on the retained "
              "classes' samples, FD = Fréchet distance in the judge's features (not Inception FID), ASR = % of "
              "samples from the attacked condition judged the forgotten class, before / after the prompt attack; "
              "cost = method time / the oracle's training time.", ""]
    lines += table(by)
    lines += ["", "Noise floor (a second oracle of another seed against the first, mean |difference| over the "
              "seed pairs): "
              + ", ".join(f"{k} {v:.2f}" for k, v in floor.items()), ""]
    for b in boards:
        lines += [f"Reading ({b['scenario']['name']}): {reading(b)}", ""]
    tuned = log.get("tuning")
    if tuned:
        start = (" (the first one each method's `STEPS` setting, `--warm-start`)" if tuned.get("warm_start")
                 else "")
        lines += [f"Tuning: {tuned['budget']} trials per method{start} on {tuned['validation']} "
                  f"(seeds {tuned['seeds']}), without the prompt attack (selection does not read ASR), "
                  f"{tuned['objective']} to the validation oracle, utility floor {tuned['utility_floor']}; "
                  f"{tuned['seconds'] / 60:.1f} min.", "", "| method | chosen | val objective | feasible |",
                  "|---|---|---|---|"]
        for m, e in tuned["methods"].items():
            b, sens = e["best"] or {}, e["sensitivity"]
            lines.append(f"| {m} | {b.get('params', e.get('note'))} | {b.get('value', math.nan):.2f} | "
                         f"{sens['n_feasible']}/{sens['n_trials']} |")
        lines.append("")
    else:
        lines += ["Settings: fixed CPU-sized settings per method (`STEPS` in the script; `--budget 0`), not tuned.",
                  ""]
    lines += ["## The papers' directions", "", *checks(by, floor), ""]
    lines += leaderboard_lines(rep, rep_dir, "## Leaderboards (engine report)")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits-gen")
    ap.add_argument("--forget", default="class:3")
    ap.add_argument("--model", default="")
    ap.add_argument("--methods", default=",".join(STEPS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=0, help="tuning trials per method (0: the fixed STEPS settings)")
    ap.add_argument("--tune-seeds", type=int, default=1)
    ap.add_argument("--warm-start", action="store_true",
                    help="each method's first trial is its STEPS setting (engine/tune.py warm_start)")
    ap.add_argument("--samples", type=int, default=0,
                    help="samples per class, or per condition on canvas (0: 100 per class, 20 per condition)")
    ap.add_argument("--attack", action="store_true", help="run the prompt attack on every model (ASR pre/post)")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--name", default="bench-gen")
    ap.add_argument("--results", default="results/bench-gen")
    ap.add_argument("--out", default="docs/benchmark_diffusion.md")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.seeds, args.tune_seeds = list(range(args.seeds)), list(range(args.tune_seeds))
    store = Store(args.results)
    log_path = Path(args.results) / f"diffusion_log_{args.name}.json"
    log = run_log(log_path, {"phases": {}}, args.report_only)
    if not args.report_only:
        log["phases"] = {}  # this invocation's phases only (an earlier one's names and times must not linger)
        chosen = {}
        if args.budget > 0:
            t0 = time.perf_counter()
            chosen = phase_tune(args, store, methods, log)
            log["phases"]["tuning"] = time.perf_counter() - t0
        else:
            log.pop("tuning", None)  # a fixed-setting rerun under a name once tuned must not print the old tuning
            log["phases"].pop("tuning", None)
        recs, secs = phase_report(args, store, methods, chosen, log)
        log["phases"]["reported runs (the methods and variants, all seeds)"] = secs
        log["report_ids"] = sorted({r["id"] for r in recs if r.get("status", "completed") == "completed"})
        log_path.write_text(json.dumps(log, indent=1, default=str))
    records = reported_records(args, store, log)
    if not records:
        sys.exit("no stored runs to report; run without --report-only first")
    write_doc(args, records, log, Path(args.out), store)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
