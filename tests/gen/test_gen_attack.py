"""The UnlearnDiffAtk-style attack (eval/gen_attack.py): on an ESD-unlearned tiny DDPM it brings the forgotten class
back (post-attack ASR above Pre-ASR), on the original it does not lower the judge's accuracy, the same seeded
noise is used before and after, and the engine's records carry ASR_pre / ASR_post when the option is on."""
from __future__ import annotations

import pytest
import torch

from unlearnlab import api
from unlearnlab.errors import ConfigError
from unlearnlab.eval.gen_attack import GenAttackConfig, attack, initial_params
from unlearnlab.methods import MethodContext, run_method

FORGET = 3
KW = {"samples": 40, "sample_steps": 10, "guidance": 2.0, "seed": 0}
ESD_TINY = {"iterations": 40, "ddim_steps": 10, "lr": 3e-4, "batch_size": 8}  # as tests/gen/test_methods_gen.py


@pytest.fixture(scope="module")
def esd_model(trained_ddpm, data3, gen_task):
    return run_method("esd", trained_ddpm, data3, gen_task, ESD_TINY, MethodContext(seed=0))


def test_attack_recovers_the_class_erased_by_esd(esd_model, data3, judge8):
    out = attack(esd_model, judge8[0], data3.forget.x, FORGET, {}, **KW)
    assert out["ASR_pre"] <= 20, out  # ESD erased the 3s ...
    assert out["ASR_post"] >= out["ASR_pre"] + 15, out  # ... and a condition near c_f draws them again
    assert out["attack_loss_last"] < out["attack_loss_first"] and out["attack_shift"] > 0


def test_attack_does_not_lower_the_original(trained_ddpm, data3, judge8):
    out = attack(trained_ddpm, judge8[0], data3.forget.x, FORGET, {"mode": "delta"}, **KW)
    assert out["ASR_pre"] >= 50 and out["ASR_post"] >= out["ASR_pre"] - 5, out


def test_same_noise_before_and_after(trained_ddpm, data3, judge8):
    """With no attack step the attacked condition is c_f itself: identical samples, identical ASR (the API path)."""
    out = api.gen_attack(trained_ddpm, data3, judge8[0], steps=0, samples=20, sample_steps=5)
    assert out["ASR_post"] == out["ASR_pre"] and out["attack_shift"] < 1e-5


def test_projection_and_random_start_use_table_rows(trained_ddpm, data3, judge8):
    table = trained_ddpm.cond.weight.detach()
    start = initial_params(trained_ddpm, table[FORGET], "prefix", 4, "random", torch.Generator().manual_seed(0))
    assert all(any(torch.equal(r, row) for row in table) for r in start)
    out = attack(trained_ddpm, judge8[0], data3.forget.x, FORGET, {"init": "random", "project": True, "k": 3,
                                                                   "steps": 3}, **{**KW, "samples": 10})
    assert len(out["attack_tokens"]) == 3 and all(0 <= i <= 10 for i in out["attack_tokens"])
    with pytest.raises(ConfigError, match="prefix"):
        attack(trained_ddpm, judge8[0], data3.forget.x, FORGET, GenAttackConfig(mode="delta", project=True), **KW)


def test_bad_attack_options_are_refused():
    from unlearnlab.spec import from_dict
    from unlearnlab.tasks.diffusion import gen_options

    with pytest.raises(ConfigError, match="attack_mode"):
        gen_options(from_dict({"dataset": "digits-gen", "options": {"attack": True, "attack_mode": "suffix"}}))
    with pytest.raises(ConfigError, match="attack_steps"):
        gen_options(from_dict({"dataset": "digits-gen", "options": {"attack_steps": 0}}))


def test_records_carry_asr(tmp_path):
    from unlearnlab.store import Store

    spec = {"dataset": "digits-gen", "forget": "class:3", "model": "ddpm:tiny,timesteps=50", "methods": ["esd"],
            "recipe": {"epochs": 1, "batch_size": 128}, "overrides": {"esd": {"iterations": 2, "ddim_steps": 3}},
            "options": {"samples": 3, "sample_steps": 3, "size": 8, "grid": 2, "attack": True, "attack_steps": 2,
                        "attack_k": 2}}
    res = api.run(spec, store=Store(tmp_path), backend="serial")
    assert not res["errors"], res["errors"]
    recs = {r["spec"]["method"]: r for r in res["records"]}
    assert set(recs) == {"original", "retrain", "esd"}
    for r in recs.values():
        m = r["metrics"]
        assert {"ASR_pre", "ASR_post", "attack_s"} <= set(m) and 0 <= m["ASR_post"] <= 100
        assert r["spec"]["eval"]["attack_k"] == 2


def test_condition_tables_and_token_sequence_prefixes():
    from unlearnlab.eval.gen_attack import check_prefix, combine, condition_table

    class SeqTable(torch.nn.Module):  # Stable Diffusion's wrapper keeps (K + 1) x L x D prompt embeddings
        cond = torch.nn.Parameter(torch.zeros(3, 4, 5))

    class Factorised(torch.nn.Module):
        cond = torch.nn.Linear(2, 2)

    assert condition_table(SeqTable()).shape == (3, 4, 5)
    check_prefix(SeqTable(), "prefix", 3)
    check_prefix(SeqTable(), "delta", 9)
    with pytest.raises(ConfigError, match="do not fit a 4-token"):
        check_prefix(SeqTable(), "prefix", 4)
    with pytest.raises(ConfigError, match="condition table"):
        condition_table(Factorised())
    base = torch.arange(4.0)[:, None].expand(4, 5)  # token state i = i
    out = combine(base, torch.full((2, 5), -1.0), "prefix")  # inserted after BOS, the last two states drop off
    assert out.shape == (1, 4, 5) and out[0, :, 0].tolist() == [0, -1, -1, 1]
    assert torch.equal(combine(base, torch.ones(1, 20), "delta")[0], base + 1)
    vec = combine(torch.zeros(5), torch.full((4, 5), 5.0), "prefix")  # one-vector tables keep the mean
    assert torch.allclose(vec, torch.full((1, 5), 4.0))


def test_wrapped_generators_expose_their_table_to_the_attack(trained_ddpm, data3, judge8):
    """SFD's one-step generator (and UnGuide's wrapper, which delegates the same way) are attacked through the
    table of the model they wrap: with no attack step, c' = c_f and both ASRs come from the same one-step samples."""
    import copy

    from unlearnlab.models.ddpm import OneStepGenerator

    gen = OneStepGenerator(copy.deepcopy(trained_ddpm), t_init=88).eval()
    assert gen.cond is gen.net.cond
    out = api.gen_attack(gen, data3, judge8[0], steps=0, samples=10, sample_steps=5)
    assert out["ASR_post"] == out["ASR_pre"] and out["attack_shift"] < 1e-5
