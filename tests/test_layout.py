"""channels_last in methods and evaluation (models/layout.py): same numbers as NCHW within float tolerance."""
from __future__ import annotations

import copy

import numpy as np
import torch

from unlearnlab.api import unlearn
from unlearnlab.data import load_dataset, make_split
from unlearnlab.eval.outputs import split_outputs
from unlearnlab.models import ClassifierTask, build_model
from unlearnlab.models.layout import channels_last, wants_channels_last


def _setup():
    b = load_dataset("digits")
    net = build_model("cnn:width=8", tuple(b.train.x.shape[1:]), 10, seed=0).eval()
    data = make_split(b.train, b.test, "class:3", 0, num_classes=10, name="digits")
    return net, data, ClassifierTask(10)


def test_context_gives_the_same_outputs_and_restores_the_model():
    net, data, _ = _setup()
    x = data.test.x[:64]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        ref = net(x)
        with channels_last(net):
            assert net.body[0].weight.is_contiguous(memory_format=torch.channels_last)
            out = net(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for k, v in net.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k])


def test_off_by_environment_and_for_models_without_convolutions(monkeypatch):
    net, _, _ = _setup()
    assert wants_channels_last(net)
    assert not wants_channels_last(torch.nn.Linear(3, 2))
    monkeypatch.setenv("UNLEARNLAB_CHANNELS_LAST", "0")
    assert not wants_channels_last(net)


def test_evaluation_outputs_match_nchw(monkeypatch):
    net, data, task = _setup()
    fast = split_outputs(net, data.retain, task)
    monkeypatch.setenv("UNLEARNLAB_CHANNELS_LAST", "0")
    slow = split_outputs(net, data.retain, task)
    np.testing.assert_allclose(fast["logits"], slow["logits"], rtol=1e-5, atol=1e-5)
    assert np.array_equal(fast["correct"], slow["correct"])


def test_methods_match_nchw_and_return_the_default_format(monkeypatch):
    net, data, task = _setup()
    for method, kw in (("ft", {"epochs": 1}), ("ga", {"epochs": 1}), ("random_label", {"epochs": 1}),
                       ("salun", {"epochs": 1}), ("l1_sparse", {"epochs": 1}), ("ssd", {}),
                       ("scrub", {"epochs": 1, "msteps": 1})):
        fast = unlearn(copy.deepcopy(net), data, method, task=task, seed=0, **kw)
        monkeypatch.setenv("UNLEARNLAB_CHANNELS_LAST", "0")
        slow = unlearn(copy.deepcopy(net), data, method, task=task, seed=0, **kw)
        monkeypatch.delenv("UNLEARNLAB_CHANNELS_LAST")
        for (k, a), b in zip(fast.state_dict().items(), slow.state_dict().values()):
            assert a.is_contiguous(), k
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"{method}: {k}")
