"""SCRUB: max-steps only in the first msteps epochs, KL direction, forgetting on blobs."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from unlearnlab import config as C
from unlearnlab.methods import MethodContext, run_method
from unlearnlab.methods import scrub as scrub_module
from unlearnlab.methods.scrub import SCRUBConfig, distill_kl

# Defaults (lr 5e-4, 3 epochs, batches 512/256) take ~2 max-steps on blobs' 60 forget points and barely move the
# model; the authors' small-scale batch sizes (forget 64, retain 32) with lr 0.05 forget visibly in ~0.1 s.
FAST = {"lr": 0.05, "forget_batch_size": 64, "retain_batch_size": 32}



def test_config_builds_with_defaults():
    cfg = C.build(SCRUBConfig)
    assert (cfg.lr, cfg.epochs, cfg.msteps, cfg.gamma, cfg.alpha, cfg.temperature) == (5e-4, 3, 2, 0.99, 1e-3, 4.0)
    assert all(f.metadata["help"] for f in dataclasses.fields(SCRUBConfig))


def test_distill_kl_is_teacher_to_student_kl():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    ps, pt = F.softmax(s / 4, 1), F.softmax(t / 4, 1)
    want = (pt * (pt.log() - ps.log())).sum(1).mean() * 16
    torch.testing.assert_close(distill_kl(s, t, 4.0), want)
    assert distill_kl(t, t, 4.0).abs() < 1e-6


def test_input_unchanged_and_forgets(trained_mlp, blobs_data, task4, acc_loss):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    out = run_method("scrub", trained_mlp, blobs_data, task4, FAST)
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    f0, lf0 = acc_loss(trained_mlp, blobs_data.forget)
    f1, lf1 = acc_loss(out, blobs_data.forget)
    assert lf1 > lf0 + 0.1 and f1 < f0
    assert acc_loss(out, blobs_data.retain)[0] > 0.9


def test_deterministic(assert_deterministic):
    assert_deterministic("scrub", FAST, seed=4)


def test_max_steps_only_in_first_msteps_epochs(trained_mlp, blobs_data, task4, monkeypatch):
    calls = []
    real = scrub_module.scrub_pass

    def spy(student, teacher, dataset, opt, cfg, task, gen, maximize, step, *rest):
        calls.append(("max" if maximize else "min", len(dataset), opt.param_groups[0]["lr"]))
        return real(student, teacher, dataset, opt, cfg, task, gen, maximize, step, *rest)

    monkeypatch.setattr(scrub_module, "scrub_pass", spy)
    run_method("scrub", trained_mlp, blobs_data, task4, {**FAST, "epochs": 5, "msteps": 2, "lr_decay_epochs": "3"})
    kinds = [k for k, _, _ in calls]
    assert kinds == ["max", "min", "max", "min", "min", "min", "min"]
    assert all(n == len(blobs_data.forget) for k, n, _ in calls if k == "max")
    assert all(n == len(blobs_data.retain) for k, n, _ in calls if k == "min")
    assert [lr for _, _, lr in calls][-2:] == [0.05 * 0.1] * 2  # epochs 4, 5: past decay epoch 3
    # (the override is the CLI-style string "3", which config coercion turns into ("3",))


def test_batchnorm_model(trained_cnn, blobs_data, task4):
    out = run_method("scrub", trained_cnn, blobs_data, task4, FAST)
    assert any(not torch.equal(a, b) for a, b in zip(trained_cnn.parameters(), out.parameters()))
    assert all(torch.isfinite(p).all() for p in out.parameters())


class CountingTask:
    """The task, counting the examples its logits() forwards through a model in eval mode (SCRUB's teacher)."""

    def __init__(self, task):
        self.task, self.teacher_examples = task, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def logits(self, model, batch):
        if not model.training:
            self.teacher_examples += len(batch[0])
        return self.task.logits(model, batch)


def test_teacher_cache_gives_the_same_weights_with_fewer_teacher_forwards(trained_cnn, blobs_data, task4):
    """Cached teacher logits (per example, computed once) equal the per-step ones: same weights up to rounding,
    while the teacher forwards D_f once instead of msteps times and D_r once instead of epochs times."""
    over = {**FAST, "epochs": 3, "msteps": 2}
    runs = {}
    for cache in (False, True):
        task = CountingTask(task4)
        out = run_method("scrub", trained_cnn, blobs_data, task, {**over, "teacher_cache": cache},
                         ctx=MethodContext(seed=3))
        runs[cache] = (out.state_dict(), task.teacher_examples)
    (plain, n_plain), (cached, n_cached) = runs[False], runs[True]
    nf, nr = len(blobs_data.forget), len(blobs_data.retain)
    assert n_plain == 2 * nf + 3 * nr and n_cached == nf + nr
    assert plain.keys() == cached.keys()
    for k in plain:
        torch.testing.assert_close(cached[k], plain[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any(not torch.equal(plain[k], trained_cnn.state_dict()[k]) for k in plain)  # it did train


def test_teacher_cache_is_off_with_augmentation(trained_cnn, blobs_data, task4, monkeypatch):
    monkeypatch.setattr(scrub_module, "teacher_logits", lambda *a: pytest.fail("cached despite augment=True"))
    run_method("scrub", trained_cnn, blobs_data, task4, {**FAST, "epochs": 2, "augment": True})
