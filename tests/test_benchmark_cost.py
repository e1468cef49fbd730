"""The CIFAR benchmark's cost accounting (benchmarks/cifar_cost.py), on hand-made stores: which stored runs count
toward a tuning study's cost and toward the doc's model training times."""
from __future__ import annotations

import pytest

from unlearnlab.store import Store

BENCHMARK = "cifar_cost"  # the `bench` fixture (tests/conftest.py) imports benchmarks/cifar_cost.py


def _adder(store: Store):
    def add(method, forget, name, config, secs, seed=0, status="completed"):
        store.add_run({"spec": {"dataset": "cifar10-dev", "forget": forget, "model": "m", "method": method,
                                "name": name, "config": config, "seed": seed}, "status": status,
                       "timings": {"wall_s": secs}})
    return add


def test_a_studys_cost_counts_its_own_trials_only(bench, tmp_path):
    """A study's cost is its trial runs (on val:<scenario>, under the benchmark's name, with one of its trials'
    settings): a superseded study of the same method, another method or the reported runs do not count."""
    study_cost = bench.study_cost
    store = Store(tmp_path / "res")
    add = _adder(store)
    add("ssd", "val:class:3", "exp:val", {"selection_weighting": 100.0, "dampening_constant": 3.5}, 30.0)
    add("ssd", "val:class:3", "exp:val", {"selection_weighting": 500.0, "dampening_constant": 0.1}, 20.0)
    add("ssd", "val:class:3", "exp:val", {"selection_weighting": 10.0, "dampening_constant": 1.0}, 99.0)  # old
    add("ssd", "class:3", "exp", {"selection_weighting": 100.0, "dampening_constant": 3.5}, 99.0)  # reported
    add("lfssd", "val:class:3", "exp:val", {"selection_weighting": 100.0, "dampening_constant": 3.5}, 99.0)
    add("ssd", "val:class:3", "other:val", {"selection_weighting": 100.0, "dampening_constant": 3.5}, 99.0)
    trials = [{"params": {"selection_weighting": 100.0, "dampening_constant": 3.5}},
              {"params": {"selection_weighting": 500.0, "dampening_constant": 0.1}}]
    assert study_cost(store, "exp", "class:3", "ssd", trials) == [2, 50.0]


def test_the_oracle_times_are_every_reported_scenarios_not_the_latest_runs(bench, tmp_path):
    """The doc's time section gives each scenario of the doc its own oracle times (the reported retrain runs of the
    benchmark's experiment, of the protocol's seeds), whichever scenario the latest invocation ran; validation
    oracles, other experiments, other seeds and failed runs do not count."""
    model_times = bench.model_times
    store = Store(tmp_path / "res")
    add = _adder(store)
    for seed in range(2):
        add("retrain", "class:3", "exp", {}, 100.0 + seed, seed=seed)
        add("retrain", "random:50%", "exp", {}, 50.0 + seed, seed=seed)
    add("retrain", "class:3", "exp", {}, 999.0, seed=7)  # not a protocol seed
    add("retrain", "val:class:3", "exp", {}, 999.0)  # the validation oracle
    add("retrain", "class:3", "other", {}, 999.0, seed=1)  # another experiment
    add("retrain", "random:50%", "exp", {}, 999.0, seed=1, status="failed")
    times = model_times(store, "exp", ["class:3", "random:50%", "class:8"], [0, 1])
    assert sorted(times["oracle class:3"]) == pytest.approx([100.0, 101.0])
    assert sorted(times["oracle random:50%"]) == pytest.approx([50.0, 51.0])
    assert times["oracle class:8"] == [] and times["original"] == []
