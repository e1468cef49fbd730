"""Language-model benchmark: TOFU-style fictitious authors on SmolLM2-135M-Instruct, forget 10% of the authors.

Fine-tunes the target (all QA) and the retain oracle (retain QA only), runs every LM method from the target, scores
each against the oracle (Forget Quality, Model Utility, forget/retain ROUGE, forget Prob, PrivLeak) with the
paraphrased-question and relearning attacks on every row (the oracle is the relearning control: what a few steps
on half of D_f teach a model that never saw it about the other half), and checks: the target's forget ROUGE is
high and the oracle's low (else the set-up measures nothing); where each method lands between them; GA's utility
collapses quickly while NPO's degrades markedly slower (Zhang et al. 2024, NPO), on a small curve of utility vs
unlearning epochs (constant lr, so each point is a prefix of one trajectory); and a few relearning steps restore
most of GA's forgotten answers (Hu et al. 2024), on the table's GA and at every curve point. Resumable: the
fine-tunes and every finished run live in the Store under --results, so a rerun reuses them. Writes a markdown
report (with this command) to --out.

Budget (2 CPU cores): SmolLM2 trains at ~2.7 s per 16-example step with short answers and the system prompt
'Answer briefly.'; 40 authors x 10 facts, 10 fine-tune epochs: target + oracle ~20 min; 10 methods x 3 epochs
~5 min; 12 evaluations (40-row utility sets) ~9 min; attacks ~6 min; GA/NPO curve at 1 and 3 epochs ~6 min.

    .venv/bin/python benchmarks/lm_tofu.py --out docs/benchmark_lm_tofu.md
    .venv/bin/python benchmarks/lm_tofu.py --quick --results /tmp/lmq --out /tmp/lmq/report.md   # tiny model
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from unlearnlab.store import Store
from unlearnlab.tasks.lm import METHOD_PRESETS, family, run_lm

METHODS = "ga,grad_diff,kl,npo,simnpo,idk_nll,idk_dpo,rmu,undial,wga"
# Full run: 40 authors x 10 facts = 400 trained QA (+4 holdout authors); 10 fine-tune epochs (3 memorise only 22%
# of short answers; 10 reach 96%) and 3 unlearning epochs. Measured at 20 authors: fine-tunes 11 + 5 min (with
# other jobs on the machine), 10 methods ~11 min, curve ~5 min; 40 authors roughly doubles the fine-tunes, so the
# full run is expected near 50-60 minutes on 2 CPU cores. lr 1e-4 for the methods keeps
# TOFU's ratio of unlearning to fine-tuning movement (TOFU: same lr in both phases, ~1/10 of the steps).
FULL = {"model": "smollm2", "authors": 40, "facts": 10, "ft_epochs": 10, "epochs": 3, "lr": 1e-4, "eval_rows": 40,
        "curve_epochs": "1,3,6", "curve_lr": "1e-4,2e-5", "threads": 2, "system_prompt": "Answer briefly.",
        "attacks": "relearn,paraphrase"}
QUICK = {"model": "tiny", "authors": 6, "facts": 4, "ft_epochs": 60, "epochs": 3, "lr": None, "eval_rows": 12,
         "curve_epochs": "1,3", "curve_lr": "", "threads": 1, "system_prompt": "Answer briefly.",
         "attacks": "relearn,paraphrase"}
COLUMNS = (("Forget Quality", "FQ", ".3g"), ("Model Utility", "MU", ".3f"), ("forget_ROUGE", "forget ROUGE", ".3f"),
           ("forget_Prob", "forget Prob", ".3f"), ("retain_ROUGE", "retain ROUGE", ".3f"),
           ("PrivLeak", "PrivLeak", ".1f"), ("forget_paraphrased_ROUGE", "paraphrased ROUGE", ".3f"),
           ("Relearn-recovery-ROUGE", "relearn recovery", ".2f"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; unset ones take the --quick or full defaults."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model and 6 authors: the whole pipeline in seconds")
    p.add_argument("--authors", type=int, help="trained authors (10 QA each; full: 40 -> 400 QA)")
    p.add_argument("--epochs", type=int, help="unlearning epochs of every method (full: 3)")
    p.add_argument("--methods", default=METHODS, help="comma-separated LM methods")
    p.add_argument("--ft-epochs", type=int, help="target/oracle fine-tune epochs (full: 3)")
    p.add_argument("--lr", type=float, help="learning rate of every method (full: 1e-4; quick: the tiny preset)")
    p.add_argument("--eval-rows", type=int, help="retain / real-author / world-fact rows scored (0 = all)")
    p.add_argument("--curve-epochs", help="GA/NPO curve points in epochs, e.g. 1,3 (empty: no curve)")
    p.add_argument("--curve-lr", help="learning rates of the GA/NPO curve, e.g. 1e-4,2e-5 (default: --lr; "
                   "the first one counts toward the benchmark's time budget, later ones are reported apart)")
    p.add_argument("--threads", type=int, help="torch threads (full: 2)")
    p.add_argument("--attacks", help="attacks on every table row (default relearn,paraphrase; empty: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default="results/benchmark_lm_tofu", help="Store folder (reused on rerun)")
    p.add_argument("--out", default="docs/benchmark_lm_tofu.md")
    a = p.parse_args(argv)
    d = QUICK if a.quick else FULL
    for key in ("authors", "epochs", "ft_epochs", "lr", "eval_rows", "curve_epochs", "curve_lr", "threads",
                "attacks"):
        if getattr(a, key) is None:
            setattr(a, key, d[key])
    a.model, a.facts, a.system_prompt = d["model"], d["facts"], d["system_prompt"]
    return a


def base_spec(a: argparse.Namespace) -> dict:
    """The run_lm spec shared by the table and the curve."""
    return {"task": "qa", "model": a.model, "dataset": f"qa:authors={a.authors},facts={a.facts}", "forget": "10%",
            "seeds": [a.seed], "split_seed": 0, "recipe": {"epochs": a.ft_epochs}, "epochs": a.epochs, "lr": a.lr,
            "eval_rows": a.eval_rows, "system_prompt": a.system_prompt, "device": "cpu", "name": "lm_tofu",
            "attacks": [x for x in a.attacks.split(",") if x.strip()], "overrides": family_overrides(a.model)}


def family_overrides(model: str) -> dict[str, dict]:
    """The model family's method-specific presets (not its "*" entry), passed as overrides so that the benchmark's
    single --lr / --epochs do not replace what was calibrated per method (e.g. RMU's loss is an activation MSE, not
    an NLL; see benchmarks/lm_rmu_calibration.py)."""
    presets = METHOD_PRESETS.get(family(model), {})
    return {name: dict(over) for name, over in presets.items() if name != "*"}


def fmt(value: float | None, spec: str) -> str:
    """A table cell: the formatted value, or - when missing or NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def dur(seconds: float) -> str:
    """'45 s' or '12.3 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def ratio(x: float, y: float) -> float:
    """x / y, NaN when y is 0."""
    return x / y if y else math.nan


def kept(m: dict, target: dict, oracle: dict) -> float:
    """Where a model's forget ROUGE lies between the oracle (0) and the target (1)."""
    gap = target["forget_ROUGE"] - oracle["forget_ROUGE"]
    return (m["forget_ROUGE"] - oracle["forget_ROUGE"]) / gap if abs(gap) > 1e-9 else math.nan


def main_table(records: list[dict]) -> list[str]:
    """Markdown rows of the main table, baselines first."""
    by = {r["spec"]["method"]: r for r in records}
    t, o = by["original"]["metrics"], by["retrain"]["metrics"]
    head = [c[1] for c in COLUMNS] + ["kept", "MU / target", "method s", "eval s"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, r in by.items():
        m, tm = r["metrics"], r["timings"]
        secs = tm.get("finetune_s") if name == "original" else tm.get("wall_s")
        cells = [fmt(m.get(k), f) for k, _, f in COLUMNS]
        cells += [fmt(kept(m, t, o), ".2f"), fmt(ratio(m["Model Utility"], t["Model Utility"]), ".2f"),
                  fmt(secs, ".0f"), fmt(tm.get("eval_s"), ".0f")]
        label = {"original": "target (original)", "retrain": "oracle (retrain)"}.get(name, name)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def setup_checks(records: list[dict]) -> list[str]:
    """Target-vs-oracle check and where each method lands between them."""
    by = {r["spec"]["method"]: r["metrics"] for r in records}
    t, o = by["original"], by["retrain"]
    ok = t["forget_ROUGE"] >= 0.6 and t["forget_ROUGE"] - o["forget_ROUGE"] >= 0.3
    out = [f"- target forget ROUGE {t['forget_ROUGE']:.3f} vs oracle {o['forget_ROUGE']:.3f} (high vs low, gap >= "
           f"0.3): " + ("yes" if ok else "NO: the fine-tune did not memorise D_f; raise --ft-epochs")]
    rest = sorted((kept(m, t, o), n) for n, m in by.items() if n not in ("original", "retrain"))
    out.append("- where each method lands (kept = (ROUGE − oracle)/(target − oracle); 0 = oracle, 1 = target): "
               + ", ".join(f"{n} {k:.2f} (MU {by[n]['Model Utility']:.3f})" for k, n in rest))
    return out


def curve_section(curve: dict[tuple[str, str, int], dict], target: dict, lr: str, epochs: list[int]) -> list[str]:
    """Utility and forget ROUGE of GA and plain NPO at learning rate `lr` after each number of epochs, and the
    collapse check."""
    lines = [f"lr {lr}:", "", "| epochs | GA MU | GA forget ROUGE | GA retain ROUGE | NPO MU | NPO forget ROUGE | "
             "NPO retain ROUGE |", "|---|---|---|---|---|---|---|",
             f"| 0 (target) | {target['Model Utility']:.3f} | {target['forget_ROUGE']:.3f} | "
             f"{target['retain_ROUGE']:.3f} | {target['Model Utility']:.3f} | {target['forget_ROUGE']:.3f} | "
             f"{target['retain_ROUGE']:.3f} |"]
    for e in epochs:
        g, n = curve.get(("ga", lr, e)), curve.get(("npo", lr, e))
        if g and n:
            lines.append(f"| {e} | {g['Model Utility']:.3f} | {g['forget_ROUGE']:.3f} | {g['retain_ROUGE']:.3f} | "
                         f"{n['Model Utility']:.3f} | {n['forget_ROUGE']:.3f} | {n['retain_ROUGE']:.3f} |")
    last = max(epochs)
    g, n = curve.get(("ga", lr, last)), curve.get(("npo", lr, last))
    if not (g and n):
        return lines + ["", "- GA/NPO curve incomplete (a run failed); see the errors below."]
    mu0 = target["Model Utility"]
    drop_g, drop_n = 1 - ratio(g["Model Utility"], mu0), 1 - ratio(n["Model Utility"], mu0)
    ok = g["Model Utility"] < n["Model Utility"] and drop_g >= 2 * max(drop_n, 0.0)
    lines += ["", f"- lr {lr}: GA's utility collapses quickly while NPO's degrades markedly slower: after {last} "
              f"epochs GA lost {100 * drop_g:.0f}% of the target's Model Utility, NPO {100 * drop_n:.0f}% (check: GA "
              "below NPO and losing at least twice as much): " + ("yes" if ok else "NO")]
    return lines


def relearn_rows(records: list[dict], curve: dict[tuple[str, str, int], dict]) -> list[tuple[str, dict]]:
    """(label, metrics) of every model the relearning attack ran on: the oracle control, the table, the curve."""
    out = []
    for r in records:
        name = r["spec"]["method"]
        if name != "original" and "Relearn-recovery-ROUGE" in r["metrics"]:
            out.append(("oracle (control: never saw D_f)" if name == "retrain" else name, r["metrics"]))
    for (name, lr, e), m in curve.items():
        if "Relearn-recovery-ROUGE" in m:
            out.append((f"{name.upper()} curve lr {lr}, {e} epoch{'s' if e > 1 else ''}", m))
    return out


def relearn_section(records: list[dict], curve: dict[tuple[str, str, int], dict], steps: int) -> list[str]:
    """Held-out forget ROUGE before/after a few relearning steps for every attacked model, and the GA check.

    The check uses the table's GA (the recipe every method shares): a GA that has also destroyed the retain answers
    (the curve's constant-lr points) has nothing left to restore, which the rows show separately."""
    rows = relearn_rows(records, curve)
    if not rows:
        return ["- no relearning results (run with --attacks relearn)"]
    m0 = rows[0][1]
    lines = [f"Attack: {steps} AdamW steps of answer NLL on a seeded half of D_f; ROUGE on the other half "
             f"(target {m0['relearn_ROUGE_target']:.3f}, oracle {m0['relearn_ROUGE_oracle']:.3f}). Recovery = "
             "(after − before)/(target − before): 0 = nothing restored, 1 = the target's level.", "",
             "| model | retain ROUGE | held-out ROUGE before | after | recovery ROUGE | recovery Prob |",
             "|---|---|---|---|---|---|"]
    for label, m in rows:
        lines.append(f"| {label} | {fmt(m.get('retain_ROUGE'), '.3f')} | {m['relearn_ROUGE_before']:.3f} | "
                     f"{m['relearn_ROUGE_after']:.3f} | {fmt(m['Relearn-recovery-ROUGE'], '.2f')} | "
                     f"{fmt(m['Relearn-recovery-Prob'], '.2f')} |")
    by = dict(rows)
    ga = by.get("ga", {}).get("Relearn-recovery-ROUGE", math.nan)
    if not math.isnan(ga):
        ctrl = by.get("oracle (control: never saw D_f)", {}).get("relearn_ROUGE_after", math.nan)
        lines += ["", "- relearning restores most of GA's forgotten answers (table GA, recovery ROUGE >= 0.5): "
                  + ("yes" if ga >= 0.5 else "NO") + f" ({ga:.2f}; the oracle reaches {ctrl:.3f} after the same "
                  "steps, so anything above that was still in the weights)"]
    return lines


def relearn_steps(a) -> int:
    """The relearning attack's step count for this model family (attack defaults, then the family preset)."""
    from unlearnlab.tasks.lm_attacks import attack_configs

    return attack_configs(("relearn",), family(a.model), None)["relearn"].steps


def curve_lrs(a) -> list[float | None]:
    """The curve's learning rates: --curve-lr, else the table's --lr (None: the family preset)."""
    given = [float(x) for x in str(a.curve_lr or "").split(",") if x.strip()]
    return given or [a.lr]


def run_curve(a, store: Store, progress, errors: list[dict]) -> tuple[dict, list[int], list[float]]:
    """GA and plain NPO (no retain term) at each curve learning rate and point, each with the relearning attack.
    Returns the metrics keyed (method, lr label, epochs), the epochs, and the recorded seconds per learning rate."""
    epochs = sorted({int(e) for e in str(a.curve_epochs).split(",") if e.strip()})
    curve: dict[tuple[str, str, int], dict] = {}
    seconds: list[float] = []
    for lr in curve_lrs(a):
        label = f"{lr:g}" if lr is not None else "preset"
        spent = 0.0
        for e in epochs:
            over = {"ga": {"epochs": e, "schedule": "constant"},
                    "npo": {"epochs": e, "schedule": "constant", "alpha": 0.0}}
            spec = {**base_spec(a), "methods": ["ga", "npo"], "baselines": False, "overrides": over, "lr": lr,
                    "name": "lm_tofu-curve", "attacks": ["relearn"]}
            for r in run_lm(spec, store=store, progress=progress, errors=errors):
                curve[(r["spec"]["method"], label, e)] = r["metrics"]
                spent += sum(r["timings"].get(k, 0.0) for k in ("wall_s", "eval_s", "attack_s"))
        seconds.append(spent)
    return curve, epochs, seconds


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (resuming from --results) and write the report to --out."""
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    store = Store(a.results)
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    errors: list[dict] = []
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    records = run_lm({**base_spec(a), "methods": methods}, store=store, progress=progress, errors=errors)
    table_s = time.perf_counter() - t0
    by = {r["spec"]["method"]: r for r in records}
    curve, epochs, curve_s = run_curve(a, store, progress, errors) if a.curve_epochs else ({}, [], [0.0])
    total = time.perf_counter() - t0
    t_ft = by["original"]["timings"].get("finetune_s", 0.0) + by["retrain"]["timings"]["wall_s"]
    t_methods = sum(r["timings"]["wall_s"] for n, r in by.items() if n not in ("original", "retrain"))
    t_eval = sum(r["timings"].get("eval_s", 0.0) for r in records)
    t_attack = sum(r["timings"].get("attack_s", 0.0) for r in records)
    t_sum = t_ft + t_methods + t_eval + t_attack + curve_s[0]
    lrs = [f"{x:g}" if x is not None else "preset" for x in curve_lrs(a)]
    n_qa = a.authors * a.facts
    doc = ["# Language-model benchmark: TOFU-style fictitious authors", "",
           f"Command: `.venv/bin/python benchmarks/lm_tofu.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
           "", f"Model {a.model}; {a.authors} authors x {a.facts} facts = {n_qa} trained QA (+ holdout authors for "
           f"the MIAs), forget 10% of the authors; target and oracle fine-tuned {a.ft_epochs} epochs; every method "
           f"{a.epochs} epochs (lr {a.lr or 'family preset'}), seed {a.seed}; system prompt {a.system_prompt!r}; "
           f"retain / real authors / world facts scored on {a.eval_rows or 'all'} rows each, D_f and the holdout "
           "authors in full. FQ = Forget Quality (KS p-value vs the oracle; higher = closer), MU = Model Utility, "
           "kept = (forget ROUGE − oracle)/(target − oracle).", "", *main_table(records), "",
           "## Checks", "", *setup_checks(records), ""]
    if curve:
        doc += ["## GA vs NPO: utility vs unlearning epochs (constant lr, NPO without a retain term)", ""]
        for lr in lrs:
            doc += [*curve_section(curve, by["original"]["metrics"], lr, epochs), ""]
    doc += ["## Relearning attack", "", *relearn_section(records, curve, relearn_steps(a)), ""]
    doc += [f"- error: {e['method']} seed {e['seed']}: {e['error']}" for e in errors]
    doc += ["## Time", "", f"- target + oracle fine-tunes {dur(t_ft)}, methods {dur(t_methods)}, evaluations "
            f"{dur(t_eval)}, attacks {dur(t_attack)}, GA/NPO curve with relearning at lr {lrs[0]} {dur(curve_s[0])}: "
            f"{dur(t_sum)} in all (as recorded when each run was made)"
            + "".join(f"; further curve at lr {lr}: {dur(t)}" for lr, t in zip(lrs[1:], curve_s[1:], strict=True)),
            f"- this invocation: {dur(total)} wall ({dur(table_s)} for the table), torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads; a rerun reuses stored runs and fine-tunes", ""]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(doc))
    print("\n".join(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
