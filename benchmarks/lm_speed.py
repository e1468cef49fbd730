"""LM throughput (issue 13): our fine-tune loop vs a plain Hugging Face `Trainer`, our batched generation vs
`model.generate`, on the same model, data, batch size and number of optimiser steps; medians of interleaved runs.

    .venv/bin/python benchmarks/lm_speed.py --model tiny --repeats 3
    .venv/bin/python benchmarks/lm_speed.py --model smollm2 --examples 64 --repeats 2

Training: one epoch over the same encoded QA examples (prompt + answer, loss on the answer tokens) with AdamW at
the same rate and batch; the report asserts both took the same number of optimiser steps and counts trained tokens
(non-padding) per second. Generation: greedy answers of up to --new-tokens tokens for the same prompts, batched,
left-padded, KV cache on both sides; the report counts examples per second and checks the answers agree.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from unlearnlab.data.qa import generate_qa
from unlearnlab.eval.lm_outputs import eos_ids_of, generate
from unlearnlab.models.lm import LMTask, load_lm
from unlearnlab.models.lm_format import collate, encode_qa, pad_id, prompt_ids
from unlearnlab.train import TrainConfig, train


class _Rows(torch.utils.data.Dataset):
    """Encoded examples as a map-style dataset (what both trainers read)."""

    def __init__(self, feats: list[dict], pad: int):
        self.feats, self.pad = feats, pad

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict:
        return self.feats[i]

    def collate(self, features: list[dict]) -> dict:
        """Right-padded batch (our loop calls this)."""
        return collate(features, self.pad)


def ours_train(model, ds, tok, lr: float, batch: int) -> tuple[float, int]:
    """Seconds and optimiser steps of one epoch of unlearnlab.train.train."""
    from unlearnlab.engine.records import count_steps

    cfg = TrainConfig(epochs=1, lr=lr, batch_size=batch, optimizer="adamw", weight_decay=0.0, schedule="constant")
    t0 = time.perf_counter()
    with count_steps() as box:
        train(model, ds, cfg, LMTask(tok, "cpu"), seed=0, key="speed", what="speed")
    return time.perf_counter() - t0, box[0]


def hf_train(model, ds, tok, lr: float, batch: int, out: str) -> tuple[float, int]:
    """Seconds and optimiser steps of one epoch of a plain transformers Trainer on the same examples."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1,
                             learning_rate=lr, weight_decay=0.0, lr_scheduler_type="constant", optim="adamw_torch",
                             save_strategy="no", report_to=[], logging_strategy="no", use_cpu=True,
                             dataloader_pin_memory=False, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=ds.collate)
    t0 = time.perf_counter()
    res = trainer.train()
    return time.perf_counter() - t0, int(res.global_step)


def ours_generate(model, tok, prompts: list[list[int]], new: int, batch: int) -> tuple[float, list[list[int]]]:
    """Seconds and token ids of unlearnlab's batched greedy generation."""
    t0 = time.perf_counter()
    out = generate(model, prompts, pad_id=pad_id(tok), eos_ids=eos_ids_of(model, tok), max_new_tokens=new,
                   batch_size=batch)
    return time.perf_counter() - t0, out


def hf_generate(model, tok, prompts: list[list[int]], new: int, batch: int) -> tuple[float, list[list[int]]]:
    """Seconds and token ids of `model.generate` on the same left-padded batches (EOS and after removed)."""
    eos = set(eos_ids_of(model, tok))
    out: list[list[int]] = []
    t0 = time.perf_counter()
    for s in range(0, len(prompts), batch):
        chunk = prompts[s:s + batch]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad_id(tok)] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                                 pad_token_id=pad_id(tok), eos_token_id=sorted(eos))
        for row in gen[:, width:].tolist():
            out.append(row[:next((i for i, t in enumerate(row) if t in eos), len(row))])
    return time.perf_counter() - t0, out


def main() -> None:
    """Interleave ours and Hugging Face's for training and generation; print a markdown table of medians."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--examples", type=int, default=160, help="QA examples trained on / generated for")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    qa = generate_qa(max(4, a.examples // 10 + 1), facts=10, seed=0, style="short")
    rows = qa.rows[:a.examples]
    base, tok = load_lm(a.model, texts=qa.texts())
    feats = [encode_qa(tok, r["question"], r["answer"], max_length=256) for r in rows]
    ds = _Rows(feats, pad_id(tok))
    tokens = sum(len(f["input_ids"]) for f in feats)
    prompts = [prompt_ids(tok, r["question"]) for r in rows]
    times: dict[str, list[float]] = {k: [] for k in ("ours train", "HF Trainer", "ours generate", "HF generate")}
    steps, same = set(), True
    for _ in range(a.repeats):
        t, n = ours_train(copy.deepcopy(base), ds, tok, 1e-5, a.batch)
        times["ours train"].append(t)
        steps.add(("ours", n))
        t, n = hf_train(copy.deepcopy(base), ds, tok, 1e-5, a.batch, os.path.join("/tmp", "lm_speed_hf"))
        times["HF Trainer"].append(t)
        steps.add(("hf", n))
        base.eval()
        t, ours = ours_generate(base, tok, prompts, a.new_tokens, a.batch)
        times["ours generate"].append(t)
        t, theirs = hf_generate(base, tok, prompts, a.new_tokens, a.batch)
        times["HF generate"].append(t)
        same &= ours == theirs
    n_steps = {n for _, n in steps}
    assert len(n_steps) == 1, f"unequal optimiser steps: {sorted(steps)}"
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {a.model}; {len(rows)} QA examples, {tokens} tokens, batch {a.batch}, {n_steps.pop()} optimiser "
          f"steps each; {a.new_tokens} new tokens per answer; {a.threads} threads; median of {a.repeats} interleaved "
          f"runs; load average {os.getloadavg()[0]:.2f}\n")
    print("| work | ours | Hugging Face | ours / HF speed |\n|---|---|---|---|")
    print(f"| fine-tune (tokens/s) | {tokens / med['ours train']:.0f} | {tokens / med['HF Trainer']:.0f} | "
          f"{med['HF Trainer'] / med['ours train']:.2f}x |")
    print(f"| greedy generation (examples/s) | {len(rows) / med['ours generate']:.1f} | "
          f"{len(rows) / med['HF generate']:.1f} | {med['HF generate'] / med['ours generate']:.2f}x |")
    print(f"\ngreedy answers identical token for token: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
