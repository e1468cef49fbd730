"""AdvUnlearn (methods/advunlearn.py) on the tiny trained DDPM: it erases the forgotten class while retained classes
hold, trains the condition table by default (only the forgotten row moves: a lookup table shares nothing between
rows) or a UNet subset, and every attack option of its inner loop runs."""
from __future__ import annotations

import pytest
import torch

from unlearnlab.methods import MethodContext, run_method

FORGET, KEPT = 3, [0, 4, 6]
# CPU-sized: 12 outer iterations (code: 1000), 4 of warm-up (code: 200), 1 attack step (code: 30), 5 DDIM steps
# (code: 50); lr 3e-2 for the table (code: 1e-5 for CLIP's text encoder, far too slow for 12 steps)
TINY = {"iterations": 12, "warmup_iter": 4, "attack_step": 1, "ddim_steps": 5, "lr": 3e-2}


@pytest.fixture(scope="module")
def before(trained_ddpm, class_accuracy):
    return class_accuracy(trained_ddpm, [FORGET, *KEPT])


def test_advunlearn_forgets_and_keeps(trained_ddpm, data3, gen_task, before, class_accuracy):
    ctx = MethodContext(seed=0)
    out = run_method("advunlearn", trained_ddpm, data3, gen_task, TINY, ctx)
    after = class_accuracy(out, [FORGET, *KEPT])
    assert after[FORGET] <= 0.5 * before[FORGET], (before, after)
    assert sum(after[c] for c in KEPT) / 3 >= sum(before[c] for c in KEPT) / 3 - 25, (before, after)
    # the default trains the table (the text encoder's stand-in): the UNet is untouched, only c_f's row moved
    assert all(torch.equal(p, q) for p, q in zip(out.unet.parameters(), trained_ddpm.unet.parameters()))
    moved = (out.cond.weight - trained_ddpm.cond.weight).abs().sum(1) > 0
    assert moved.tolist() == [c == FORGET for c in range(11)]
    assert ctx.info["attack_rounds"] == 8 and ctx.info["advunlearn_trained_params"] == out.cond.weight.numel()


@pytest.mark.parametrize("over", [
    {"train_method": "esd-u"},
    {"attack_method": "fast_at", "attack_init": "random"},
    {"attack_loss": "l2", "attack_mode": "delta", "retain_loss_w": 0.0},
    {"train_method": "esd-x", "adv_prompt_num": 2},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_options_run_and_train_what_they_say(over, trained_ddpm, data3, gen_task):
    cfg = {**TINY, "iterations": 3, "warmup_iter": 1, "attack_step": 2, "ddim_steps": 4, "lr": 1e-3, **over}
    a = run_method("advunlearn", trained_ddpm, data3, gen_task, cfg, MethodContext(seed=1))
    b = run_method("advunlearn", trained_ddpm, data3, gen_task, cfg, MethodContext(seed=1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())), "same seed, same weights"
    unet_moved = any(not torch.equal(p, q) for p, q in zip(a.unet.parameters(), trained_ddpm.unet.parameters()))
    cond_moved = not torch.equal(a.cond.weight, trained_ddpm.cond.weight)
    in_unet = over.get("train_method", "cond") != "cond"
    assert (unet_moved, cond_moved) == (in_unet, not in_unet)


def test_iter_retain_training_takes_retain_only_steps(trained_ddpm, data3, gen_task, monkeypatch):
    """The code parser's default `--retain_train iter`: each unlearning step (ESD loss alone) is followed by
    retain_step optimiser steps on the retain loss; `reg` takes one step with both terms."""
    import unlearnlab.methods.advunlearn as adv

    calls = []
    real = adv.step
    monkeypatch.setattr(adv, "step", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    cfg = {**TINY, "iterations": 3, "warmup_iter": 3, "ddim_steps": 4, "lr": 1e-3, "train_method": "esd-x",
           "retain_train": "iter", "retain_step": 2}
    it = run_method("advunlearn", trained_ddpm, data3, gen_task, cfg, MethodContext(seed=2))
    assert len(calls) == 3 * (1 + 2)
    reg = run_method("advunlearn", trained_ddpm, data3, gen_task, {**cfg, "retain_train": "reg"},
                     MethodContext(seed=2))
    assert len(calls) == 9 + 3
    assert any(not torch.equal(p, q) for p, q in zip(it.parameters(), reg.parameters()))
