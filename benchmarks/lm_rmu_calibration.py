"""RMU calibration on the LM benchmark's cached SmolLM2 target: forget / retain ROUGE for a grid of RMU settings.

Why the smollm2 preset in tasks/lm.py METHOD_PRESETS is Adaptive RMU: WMDP's fixed steering coefficient
(c=6.5, tuned on Zephyr-7B) is small next to SmolLM2's block-7 activation norm, and the grid shows which
(c, alpha, lr, epochs) move the model at all. It reuses the target fine-tune stored by benchmarks/lm_tofu.py
(run that first, same --results); each setting costs one RMU run plus greedy answers on D_f and 40 retain rows.
Note: the grid is scored on the benchmark's own forget set, so a preset chosen from it is tuned on that split.

    .venv/bin/python benchmarks/lm_rmu_calibration.py --out docs/rmu_calibration_smollm2.md
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

GRID = (
    {"lr": 5e-5, "epochs": 3},  # WMDP defaults (c=6.5, alpha=1200)
    {"adaptive_scale": 5.0, "lr": 1e-3, "epochs": 10},
    {"adaptive_scale": 5.0, "lr": 1e-2, "epochs": 10},  # alpha 1200
    {"adaptive_scale": 5.0, "lr": 1e-2, "epochs": 10, "alpha": 100.0},
    {"adaptive_scale": 5.0, "lr": 1e-2, "epochs": 10, "alpha": 30.0},
    {"steering_coeff": 6.5, "lr": 1e-2, "epochs": 10, "alpha": 30.0},
    {"adaptive_scale": 5.0, "lr": 1e-2, "epochs": 20, "alpha": 100.0},  # the smollm2 preset
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results/benchmark_lm_tofu", help="Store of benchmarks/lm_tofu.py")
    p.add_argument("--out", default="docs/rmu_calibration_smollm2.md")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    spec_ = importlib.util.spec_from_file_location("lm_tofu", Path(__file__).with_name("lm_tofu.py"))
    bench = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(bench)

    from unlearnlab.eval.lm_attacks import answer_metrics
    from unlearnlab.methods import MethodContext, run_method
    from unlearnlab.methods.rmu import mean_activation_norm
    from unlearnlab.store import Store
    from unlearnlab.tasks.lm import prepare_lm

    b = bench.parse_args([])
    setup = prepare_lm({**bench.base_spec(b), "attacks": []}, store=Store(a.results))
    forget, retain = setup.data.extra["rows"]["forget"], setup.eval_rows["retain"]
    norm = mean_activation_norm(setup.target, setup.data.forget, 7, setup.task, 8)
    t0 = answer_metrics(setup.target, setup.tokenizer, forget)
    lines = ["# RMU calibration on SmolLM2-135M (LM benchmark target)", "",
             "Command: `.venv/bin/python benchmarks/lm_rmu_calibration.py "
             + " ".join(sys.argv[1:] if argv is None else argv) + "`", "",
             f"Target: {b.authors} authors x {b.facts} facts, forget 10%; block-7 mean activation norm on D_f "
             f"{norm:.1f}; target forget ROUGE {t0['ROUGE']:.3f}. Unlisted fields: RMU defaults (layer 7, "
             "c 6.5, alpha 1200, batch 8). Retain ROUGE on 40 retain rows.", "",
             "| setting | fit s | forget ROUGE | forget Prob | retain ROUGE | retain Prob |",
             "|---|---|---|---|---|---|"]
    for cfg in GRID:
        t = time.perf_counter()
        m = run_method("rmu", setup.target, setup.data, setup.task, {"batch_size": 8, **cfg}, MethodContext(seed=0))
        fit = time.perf_counter() - t
        f, r = answer_metrics(m, setup.tokenizer, forget), answer_metrics(m, setup.tokenizer, retain)
        lines.append(f"| `{json.dumps(cfg)}` | {fit:.0f} | {f['ROUGE']:.3f} | {f['Prob']:.3f} | {r['ROUGE']:.3f} | "
                     f"{r['Prob']:.3f} |")
        print(lines[-1], flush=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
