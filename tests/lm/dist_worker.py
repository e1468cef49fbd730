"""Run by test_distributed.py in one process or under a 2-process launch: a tiny-LM fine-tune with train(), then
the LM methods in METHODS (frozen reference models, paired retain batches) at global batch 8. Each rank saves its
weights.

The unlearning methods start from a target fine-tuned by each rank alone (distributed.local()), identical in both
runs, so their comparison measures the methods' own steps and not the fine-tune's float noise amplified by AdamW.
Sizes hit every sharding case: 21 training examples (batches 8, 8, 5: an uneven 3/2 split), 9 forget examples (8,
then 1 example replicated on both ranks) and 12 retain examples (8, 4).
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from unlearnlab import distributed
from unlearnlab.data.qa import generate_qa, make_qa_data
from unlearnlab.data.tofu import idk_answers
from unlearnlab.methods import MethodContext, run_method
from unlearnlab.models.lm import LMTask, load_lm
from unlearnlab.train import TrainConfig, train

# reference log-probs precomputed (npo; idk_dpo: nested preferred/dispreferred batches), a reference evaluated online
# (kl: answer KL on retain batches; undial: token-mean distillation), hooks + a parameter subset (rmu)
METHODS = ("npo", "kl", "idk_dpo", "undial", "rmu")


def _save(model: torch.nn.Module, path: Path) -> None:
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path))


def main(out: Path) -> None:
    """Fine-tune, then the METHODS, saving every model's weights under `out` (one file per rank)."""
    torch.set_num_threads(1)
    qa = generate_qa(7, facts=3, seed=0)
    base, tok = load_lm("tiny", texts=qa.texts() + idk_answers())
    data = make_qa_data(tok, qa, "43%")
    task = LMTask(tok)
    cfg = TrainConfig(epochs=2, lr=3e-3, optimizer="adamw", weight_decay=0.01, batch_size=8, schedule="cosine")
    tuned = train(copy.deepcopy(base), data.train, cfg, task, seed=0, key="dist-test", what="fine-tune")
    with distributed.local():  # the same target on every rank and in both runs
        target = train(copy.deepcopy(base), data.train, cfg, task, seed=0, key="dist-test", what="target")
    unlearned = {m: run_method(m, target, data, task, {"lr": 1e-3, "batch_size": 8, "epochs": 2}, MethodContext(seed=0))
                 for m in METHODS}
    r = distributed.rank()
    out.mkdir(parents=True, exist_ok=True)
    for name, model in {"base": base, "finetune": tuned, **unlearned}.items():
        _save(model, out / f"{name}-rank{r}.safetensors")
    sizes = {"train": len(data.train), "forget": len(data.forget), "retain": len(data.retain)}
    (out / f"info-rank{r}.json").write_text(json.dumps({"world": distributed.world_size(), "rank": r, **sizes}))
    distributed.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
