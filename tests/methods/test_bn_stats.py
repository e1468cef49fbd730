"""`bn_stats` of the methods that train on forget-set batches alone (GA, Boundary Shrink, Boundary Expand):
'update' (the reference codes: train-mode BatchNorm, whose running statistics drift toward the forget set's) and
'frozen' (eval-mode BatchNorm: the original's statistics are kept, only the gradient changes the model)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnlab.methods import run_method
from unlearnlab.methods.base import MethodContext

FORGET_ONLY = ("ga", "boundary_shrink", "boundary_expand")


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for k, v in m.state_dict().items() if k in ("running_mean", "running_var")}


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", FORGET_ONLY)
def test_frozen_keeps_the_running_statistics_and_still_trains(method, trained_cnn, blobs_data, task4):
    stats0, w0 = _bn_state(trained_cnn), _weights(trained_cnn)
    assert stats0, "the fixture model must have BatchNorm layers"
    ctx = MethodContext(seed=0)
    frozen = run_method(method, trained_cnn, blobs_data, task4, {"bn_stats": "frozen", "lr": 0.01}, ctx=ctx)
    update = run_method(method, trained_cnn, blobs_data, task4, {"bn_stats": "update", "lr": 0.01}, ctx=ctx)
    assert all(torch.equal(stats0[k], v) for k, v in _bn_state(frozen).items())
    assert any(not torch.allclose(stats0[k], v) for k, v in _bn_state(update).items())
    moved = [n for n, p in _weights(frozen).items() if n in w0 and not torch.allclose(w0[n], p)]
    assert moved, "with frozen statistics the gradient must still change the weights"
    assert frozen.training is False and update.training is False


def test_the_default_is_the_reference_behaviour_and_it_is_searched():
    from unlearnlab.config import search_space
    from unlearnlab.engine.search_space import method_space
    from unlearnlab.methods import METHODS

    for method in FORGET_ONLY:
        cfg = METHODS.get(method).config
        assert cfg().bn_stats == "update"
        assert search_space(cfg)["bn_stats"] == ("choice", "update", "frozen")
    assert "bn_stats" not in method_space("ga", None, "qa")  # a causal LM has no BatchNorm: no wasted trials


def test_train_with_frozen_bn_leaves_other_modules_in_train_mode(trained_cnn, blobs_data, task4, recipe):
    import copy
    import dataclasses

    from unlearnlab.train import train

    seen = []
    model = copy.deepcopy(trained_cnn)

    def loss_fn(m, batch):
        seen.append({type(mod).__name__: mod.training for mod in m.modules()})
        return task4.loss(m, batch)

    train(model, blobs_data.forget, dataclasses.replace(recipe, epochs=1), task4, seed=0, loss_fn=loss_fn,
          frozen_bn=True)
    assert seen and all(not s["BatchNorm2d"] for s in seen) and all(s[type(model).__name__] for s in seen)


def test_the_tuner_drops_bn_stats_for_a_classifier_without_batchnorm():
    """On an MLP both bn_stats values train the same model: the tuner does not spend trials on the choice."""
    from unlearnlab.engine.search_space import has_batchnorm, method_space

    assert has_batchnorm({"dataset": "digits", "model": "cnn", "forget": "class:3"})
    assert not has_batchnorm({"dataset": "digits", "model": "mlp", "forget": "class:3"})
    assert "bn_stats" in method_space("ga", None, "classifier", batchnorm=True)
    assert "bn_stats" not in method_space("ga", None, "classifier", batchnorm=False)
