"""Every diffusion method on a tiny trained DDPM: the input is untouched, the weights change, the same seed gives
the same weights, and the judge's accuracy on the forgotten class's samples falls while a retained class keeps
most of its accuracy (direction checks with thresholds that can fail)."""
from __future__ import annotations

import pytest
import torch

from unlearnlab.methods import METHODS, MethodContext, run_method

FORGET, KEPT = 3, [0, 4, 6]
# CPU-sized settings: a few dozen steps instead of the codes' 200-1000 (lr raised to match); the defaults are the
# official codes' (see each config's help).
TINY = {"esd": {"iterations": 40, "ddim_steps": 10, "lr": 3e-4, "batch_size": 8},
        "esd-x": {"train_method": "esd-x", "iterations": 40, "ddim_steps": 10, "lr": 3e-3, "batch_size": 8},
        "ga_gen": {"iterations": 8, "lr": 1e-4, "batch_size": 64},
        "salun_gen": {"iterations": 40, "lr": 2e-4, "batch_size": 64},
        "advunlearn": {"iterations": 12, "warmup_iter": 4, "attack_step": 1, "ddim_steps": 5, "lr": 3e-2},
        "doco": {"iterations": 60, "warm_up": 20, "batch_size": 16, "lr": 3e-4, "dlr": 1e-3, "anchor_images": 64}}
GEN_METHODS = [n for n, m in METHODS.items() if "diffusion" in m.kinds]
# methods whose result is not a plain DDPM (a one-step generator, a base + adapter wrapper) have their own direction
# checks, with their own baselines and probes
OWN_TESTS = {"sfd": "test_sfd.py", "unguide": "test_unguide.py"}


def test_every_diffusion_method_is_covered():
    from pathlib import Path

    assert {"esd", "ga_gen", "salun_gen", "advunlearn", "doco", "sfd", "unguide"} <= set(GEN_METHODS)
    assert set(GEN_METHODS) <= {k.split("-")[0] for k in TINY} | set(OWN_TESTS)
    assert all((Path(__file__).parent / f).is_file() for f in OWN_TESTS.values())


@pytest.fixture(scope="module")
def before(trained_ddpm, class_accuracy):
    """The original's judge accuracy on the forget and kept classes."""
    acc = class_accuracy(trained_ddpm, [FORGET, *KEPT])
    assert acc[FORGET] >= 50, f"the tiny DDPM must draw recognisable {FORGET}s for the checks to mean anything: {acc}"
    return acc


@pytest.mark.parametrize("setting", sorted(TINY))
def test_method_forgets_the_class_and_keeps_others(setting, trained_ddpm, data3, gen_task, before, class_accuracy):
    name = setting.split("-")[0]
    state = {k: v.clone() for k, v in trained_ddpm.state_dict().items()}
    out = run_method(name, trained_ddpm, data3, gen_task, TINY[setting], MethodContext(seed=0))
    assert all(torch.equal(v, trained_ddpm.state_dict()[k]) for k, v in state.items()), "input model mutated"
    assert any(not torch.equal(v, out.state_dict()[k]) for k, v in state.items()), "nothing changed"
    after = class_accuracy(out, [FORGET, *KEPT])
    kept_before = sum(before[c] for c in KEPT) / len(KEPT)
    kept_after = sum(after[c] for c in KEPT) / len(KEPT)
    assert after[FORGET] <= 0.5 * before[FORGET], (setting, before, after)
    assert kept_after >= kept_before - 25, (setting, before, after)


@pytest.mark.parametrize("name", ["esd", "salun_gen"])
def test_same_seed_same_weights(name, trained_ddpm, data3, gen_task):
    over = {**TINY[name], "iterations": 2}
    a = run_method(name, trained_ddpm, data3, gen_task, over, MethodContext(seed=5))
    b = run_method(name, trained_ddpm, data3, gen_task, over, MethodContext(seed=5))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_esd_x_and_esd_u_train_disjoint_subsets(trained_ddpm, data3, gen_task):
    over = {"iterations": 2, "ddim_steps": 3, "lr": 1e-2}
    changed = {}
    for how in ("esd-x", "esd-u"):
        out = run_method("esd", trained_ddpm, data3, gen_task, {**over, "train_method": how}, MethodContext())
        changed[how] = {n for (n, p), q in zip(out.named_parameters(), trained_ddpm.parameters())
                        if not torch.equal(p, q)}
    assert changed["esd-x"] and all("time_emb_proj" in n for n in changed["esd-x"])
    assert changed["esd-u"] and not any("time_emb_proj" in n for n in changed["esd-u"])
    assert not any(n.startswith("cond.") for s in changed.values() for n in s)  # the "text encoder" stays frozen


def test_salun_mask_keeps_unsalient_weights(trained_ddpm, data3, gen_task):
    ctx = MethodContext(seed=0)
    out = run_method("salun_gen", trained_ddpm, data3, gen_task, {"iterations": 2, "batch_size": 32}, ctx)
    assert ctx.info["salient_fraction"] == pytest.approx(0.5, abs=0.01)
    moved = sum(int((p != q).sum()) for p, q in zip(out.parameters(), trained_ddpm.parameters()))
    total = sum(p.numel() for p in out.parameters())
    assert 0 < moved <= 0.5 * total + 1
