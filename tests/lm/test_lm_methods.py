"""Every LM unlearning method raises the forget NLL of a fine-tuned tiny LM and leaves its input untouched."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from unlearnlab.errors import ConfigError
from unlearnlab.eval.outputs import split_outputs
from unlearnlab.methods import METHODS, MethodContext, run_method
from unlearnlab.tasks.lm import finetune, finetune_config

LM_METHODS = ["ga", "grad_diff", "kl", "npo", "simnpo", "idk_nll", "idk_dpo", "rmu", "undial", "wga"]
FAST = {"lr": 1e-3, "batch_size": 8, "epochs": 3}
SPECIAL = {"ga": {"optimizer": "adamw"}, "simnpo": {"epochs": 8}, "rmu": {"lr": 1e-2, "epochs": 10, "alpha": 1.0}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from unlearnlab.data.qa import generate_qa, make_qa_data
    from unlearnlab.data.tofu import idk_answers
    from unlearnlab.models.lm import LMTask, load_lm

    qa = generate_qa(10, facts=10, seed=0)
    base, tok = load_lm("tiny", texts=qa.texts() + idk_answers())
    data = make_qa_data(tok, qa, "10%")
    task = LMTask(tok)
    cache = tmp_path_factory.mktemp("lmcache")
    t0 = time.perf_counter()
    target, _ = finetune(base, data, "target", finetune_config("tiny", {"epochs": 30}), task, cache_dir=cache)
    return {"data": data, "task": task, "target": target, "base": base, "cache": cache,
            "finetune_s": time.perf_counter() - t0}


def forget_nll(model, s) -> float:
    return float(split_outputs(model, s["data"].forget, s["task"], 64)["loss"].mean())


def test_target_memorises_forget_set(setup):
    before = forget_nll(setup["target"], setup)
    assert before < 0.3 < forget_nll(setup["base"], setup)


def test_lm_methods_are_registered():
    lm = {n for n, m in METHODS.items() if "lm" in m.kinds}
    assert set(LM_METHODS) <= lm
    for n in LM_METHODS[1:]:
        assert METHODS.get(n).kinds == ("lm",) and METHODS.get(n).paper


@pytest.mark.parametrize("name", LM_METHODS)
def test_method_raises_forget_nll_without_mutating_input(setup, name):
    target = setup["target"]
    state = {k: v.clone() for k, v in target.state_dict().items()}
    before = forget_nll(target, setup)
    out = run_method(name, target, setup["data"], setup["task"], {**FAST, **SPECIAL.get(name, {})},
                     MethodContext(seed=0))
    after = forget_nll(out, setup)
    assert after > 1.5 * before + 0.05, f"{name}: forget NLL {before:.3f} -> {after:.3f}"
    assert all(torch.equal(state[k], v) for k, v in target.state_dict().items()), f"{name} mutated its input"
    again = run_method(name, target, setup["data"], setup["task"], {**FAST, **SPECIAL.get(name, {})},
                       MethodContext(seed=0))
    assert abs(forget_nll(again, setup) - after) < 1e-5, f"{name} is not deterministic for a fixed seed"


def test_lora_variant_merges_back(setup):
    target = setup["target"]
    out = run_method("npo", target, setup["data"], setup["task"], {**FAST, "lr": 1e-2, "lora_r": 4},
                     MethodContext(seed=0))
    assert type(out) is type(target) and set(out.state_dict()) == set(target.state_dict())
    assert forget_nll(out, setup) > 1.5 * forget_nll(target, setup)
    assert all(p.requires_grad for p in out.parameters())


def test_retain_kl_option_and_bad_config(setup):
    out = run_method("grad_diff", setup["target"], setup["data"], setup["task"], {**FAST, "retain": "kl"},
                     MethodContext(seed=0))
    assert forget_nll(out, setup) > forget_nll(setup["target"], setup)
    with pytest.raises(ConfigError, match="retain must be one of"):
        run_method("npo", setup["target"], setup["data"], setup["task"], {"retain": "l2"})


def test_finetune_cache_returns_the_same_model(setup):
    from unlearnlab.tasks.lm import cache_key

    t0 = time.perf_counter()
    again, seconds = finetune(setup["base"], setup["data"], "target", finetune_config("tiny", {"epochs": 30}),
                              setup["task"], cache_dir=setup["cache"])
    assert time.perf_counter() - t0 < setup["finetune_s"] and seconds > 0
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 setup["target"].state_dict().values(), strict=True))
    cfg = finetune_config("tiny", {"epochs": 30})
    assert cache_key("target", "tiny", setup["data"], cfg, 0) != cache_key("oracle", "tiny", setup["data"], cfg, 0)


def test_adaptive_rmu_scales_the_control_vector_by_the_measured_norm(setup, monkeypatch):
    from unlearnlab.data.core import subset
    from unlearnlab.methods import rmu as rmu_mod

    target, data, task = setup["target"], setup["data"], setup["task"]
    layer = len(rmu_mod.decoder_layers(target)) // 2  # the tiny model has fewer than 8 blocks
    norm = rmu_mod.mean_activation_norm(target, data.forget, layer, task, 4)
    # hand check on one example: the mean over its answer tokens of ‖h‖
    one = data.forget.collate([data.forget[0]])
    with torch.no_grad():
        h = rmu_mod.hidden_at(target, task.to_device(one), layer, task)[0]
    mask = one["labels"][0] != -100
    single = rmu_mod.mean_activation_norm(target, subset(data.forget, np.array([0])), layer, task, 4)
    assert abs(single - float(h.norm(dim=-1)[mask].mean())) < 1e-4
    assert norm > 0
    seen = []
    real_mse = rmu_mod._masked_mse
    monkeypatch.setattr(rmu_mod, "_masked_mse", lambda h, t, b: seen.append(float(t.norm(dim=-1).max())) or
                        real_mse(h, t, b))
    out = run_method("rmu", target, data, task, {**FAST, **SPECIAL["rmu"], "adaptive_scale": 3.0},
                     MethodContext(seed=0))
    assert abs(seen[0] - 3.0 * norm) < 1e-3 * norm, (seen[0], norm)
    assert forget_nll(out, setup) > 1.5 * forget_nll(target, setup)
