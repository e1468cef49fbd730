"""Shared fixtures: tiny data, a trained tiny model and its retrained oracle (built once per session)."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("UNLEARNLAB_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def blobs_data():
    """Blobs dataset, 10% random forget split."""
    from unlearnlab.data import load_dataset, make_split

    b = load_dataset("blobs")
    return make_split(b.train, b.test, "random:10%", 0, num_classes=b.num_classes, name="blobs")


@pytest.fixture(scope="session")
def task4():
    """Classifier task for the 4-class blobs set."""
    from unlearnlab.models import ClassifierTask

    return ClassifierTask(4)


@pytest.fixture(scope="session")
def recipe():
    """A tiny training recipe."""
    from unlearnlab.train import TrainConfig

    return TrainConfig(epochs=15, lr=0.05, batch_size=64)


@pytest.fixture(scope="session")
def trained_mlp(blobs_data, task4, recipe):
    """An MLP trained on all of blobs' train set (memorises the forget set)."""
    from unlearnlab.models import build_model
    from unlearnlab.train import train

    m = build_model("mlp", blobs_data.input_shape, 4, seed=0)
    return train(m, blobs_data.train, recipe, task4, seed=0)


@pytest.fixture(scope="session")
def trained_cnn(blobs_data, task4, recipe):
    """A small CNN (with BatchNorm) trained on blobs."""
    from unlearnlab.models import build_model
    from unlearnlab.train import train

    m = build_model("cnn:width=8", blobs_data.input_shape, 4, seed=0)
    return train(m, blobs_data.train, recipe, task4, seed=0)


@pytest.fixture(scope="module")
def bench(request):
    """The benchmark script named by the test module's BENCHMARK (e.g. "classifier_cifar"), imported with
    benchmarks/ on sys.path (the scripts import their sibling report_doc)."""
    import importlib
    import sys
    from pathlib import Path

    where = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, where)
    try:
        yield importlib.import_module(request.module.BENCHMARK)
    finally:
        sys.path.remove(where)
