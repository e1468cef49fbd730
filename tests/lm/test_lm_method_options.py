"""LM method defaults and reference options: GA's LM training config, RMU's presets, and the KL / UNDIAL / IdkNLL
options whose two behaviours (ours, OpenUnlearning's) differ on hand-made inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unlearnlab.config import build
from unlearnlab.errors import ConfigError
from unlearnlab.methods import METHODS, MethodContext, run_method
from unlearnlab.tasks.lm import method_overrides


@pytest.fixture(scope="module")
def tiny():
    """An untrained tiny LM with its task and a 10-author QA problem (no fine-tune: these tests check losses)."""
    from unlearnlab.data.qa import generate_qa, make_qa_data
    from unlearnlab.data.tofu import idk_answers
    from unlearnlab.models.lm import LMTask, load_lm

    qa = generate_qa(10, facts=4, seed=0)
    model, tok = load_lm("tiny", texts=qa.texts() + idk_answers())
    return {"model": model, "task": LMTask(tok), "data": make_qa_data(tok, qa, "10%")}


def perturbed(model, seed=1, scale=0.05):
    """A copy of `model` with seeded Gaussian noise on every weight (a 'current' model differing from the ref)."""
    import copy

    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return out


def test_ga_on_any_causal_lm_takes_the_lm_training_config():
    ov = method_overrides({"model": "some-org/some-llama"}, "ga")
    cfg = build(METHODS.get("ga").config, ov)
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.optimizer, cfg.weight_decay, cfg.warmup) == \
        (1e-5, 32, 10, "adamw", 0.01, 0.1)
    tiny = method_overrides({"model": "tiny"}, "ga")  # the family preset still applies on top
    assert tiny["lr"] == 1e-3 and tiny["batch_size"] == 8 and tiny["optimizer"] == "adamw"
    assert method_overrides({"model": "tiny", "epochs": 2, "overrides": {"ga": {"lr": 7e-4}}}, "ga")["lr"] == 7e-4


def test_rmu_presets_and_their_layering():
    cls = METHODS.get("rmu").config
    default = build(cls, {})
    assert (default.preset, default.steering_coeff, default.alpha, default.trainable) == ("wmdp", 6.5, 1200.0, "mlp")
    ov = method_overrides({"model": "org/m", "overrides": {"rmu": {"preset": "tofu"}}}, "rmu")
    tofu = build(cls, ov)
    assert (tofu.steering_coeff, tofu.alpha, tofu.layer, tofu.trainable, tofu.lr, tofu.epochs, tofu.warmup,
            tofu.weight_decay) == (2.0, 1.0, 7, "all", 1e-5, 10, 0.1, 0.01)
    # the named preset beats the family preset; explicit fields beat the preset
    ov = method_overrides({"model": "smollm2", "overrides": {"rmu": {"preset": "tofu", "alpha": 3.0}}}, "rmu")
    assert ov["adaptive_scale"] == 0.0 and ov["alpha"] == 3.0 and ov["steering_coeff"] == 2.0
    with pytest.raises(ConfigError, match="preset must be one of"):
        method_overrides({"overrides": {"rmu": {"preset": "muse"}}}, "rmu")


def test_rmu_trainable_all_updates_more_than_the_mlp(tiny):
    model, data, task = tiny["model"], tiny["data"], tiny["task"]
    fast = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "alpha": 1.0, "warmup": 0.0}
    changed = {}
    for which in ("mlp", "all"):
        out = run_method("rmu", model, data, task, {**fast, "trainable": which}, MethodContext(seed=0))
        before = dict(model.named_parameters())
        changed[which] = {n for n, p in out.named_parameters() if not torch.equal(p, before[n])}
    assert changed["mlp"] and all("down_proj" in n for n in changed["mlp"])
    assert any("down_proj" not in n for n in changed["all"]) and changed["mlp"] < changed["all"]


def test_retain_kl_over_answer_tokens_or_all_positions(tiny):
    from unlearnlab.methods._lm_common import answer_kl

    ref, task, ds = tiny["model"], tiny["task"], tiny["data"].retain
    cur = perturbed(ref)
    batch = ds.collate([ds[0], ds[1], ds[2]])
    with torch.no_grad():
        ans, every = answer_kl(cur, ref, batch, task, "answer"), answer_kl(cur, ref, batch, task, "all")
    # the reference (OpenUnlearning compute_kl_divergence): kl_div(log p_θ, log p_ref, batchmean) over B·T rows
    with torch.no_grad():
        lp = F.log_softmax(task.forward(cur, batch).logits, -1).flatten(0, 1)
        lq = F.log_softmax(task.forward(ref, batch).logits, -1).flatten(0, 1)
    expect = F.kl_div(lp, lq, reduction="batchmean", log_target=True)
    assert abs(float(every) - float(expect)) < 1e-5
    assert abs(float(ans) - float(every)) > 1e-4 * float(every)


def test_undial_averages_over_answer_tokens_or_all_positions():
    from unlearnlab.methods.undial import undial_loss

    gen = torch.Generator().manual_seed(0)
    logits, ref = torch.randn(2, 5, 7, generator=gen), torch.randn(2, 5, 7, generator=gen)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, -100, -100]])
    ans, every = undial_loss(logits, ref, labels, 10.0, "answer"), undial_loss(logits, ref, labels, 10.0, "all")
    # by hand: CE to softmax(ref - β·onehot) at the 4 answer positions; to softmax(ref) at the 6 others
    hit = F.one_hot(labels.clamp_min(0), 7) * (labels != -100).unsqueeze(-1)
    ce = -(F.softmax(ref - 10.0 * hit, -1) * F.log_softmax(logits, -1)).sum(-1)
    mask = labels != -100
    assert abs(float(ans) - float(ce[mask].mean())) < 1e-5
    assert abs(float(every) - float(ce.mean())) < 1e-5 and abs(float(ans) - float(every)) > 1e-3


def test_idk_refusals_fixed_or_redrawn_at_every_read(tiny):
    from unlearnlab.methods._lm_common import RedrawnIdk, idk_dataset

    forget = tiny["data"].forget
    fixed = idk_dataset(forget, "", 0, "idk_nll", "fixed")
    redrawn = idk_dataset(forget, "", 0, "idk_nll", "per_read")
    assert isinstance(redrawn, RedrawnIdk) and not isinstance(fixed, RedrawnIdk)
    first = [redrawn[i]["input_ids"] for i in range(len(forget))]
    assert first == [fixed[i]["input_ids"] for i in range(len(forget))]  # the first read is the fixed draw
    second = [redrawn[i]["input_ids"] for i in range(len(forget))]
    assert second != first and [fixed[i]["input_ids"] for i in range(len(forget))] == first
    again = idk_dataset(forget, "", 0, "idk_nll", "per_read")
    assert [again[i]["input_ids"] for i in range(len(forget))] == first
    assert [again[i]["input_ids"] for i in range(len(forget))] == second  # seeded: the same sequence of draws
    model, data, task = tiny["model"], tiny["data"], tiny["task"]
    fast = {"epochs": 3, "batch_size": 8, "lr": 1e-3, "alpha": 0.0}
    a = run_method("idk_nll", model, data, task, fast, MethodContext(seed=0))
    b = run_method("idk_nll", model, data, task, {**fast, "idk_draw": "per_read"}, MethodContext(seed=0))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
