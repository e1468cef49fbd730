"""The CIFAR benchmark's cost accounting (benchmarks/cifar_cost.py), on hand-made stores: which stored runs count
toward a tuning study's cost and toward the doc's model training times."""
from __future__ import annotations

import json

import pytest

from unlearnlab.store import Store

BENCHMARK = "cifar_cost"  # the `bench` fixture (tests/conftest.py) imports benchmarks/cifar_cost.py


def _adder(store: Store):
    def add(method, forget, name, config, secs, seed=0, status="completed", dataset="cifar10-dev"):
        store.add_run({"spec": {"dataset": dataset, "forget": forget, "model": "m", "method": method,
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
    add("retrain", "random:50%", "exp", {}, 999.0, dataset="other")  # the same scenario on another dataset
    add("retrain", "class:3", "exp", {}, 999.0, seed=7)  # not a protocol seed
    add("retrain", "val:class:3", "exp", {}, 999.0)  # the validation oracle
    add("retrain", "class:3", "other", {}, 999.0, seed=1)  # another experiment
    add("retrain", "random:50%", "exp", {}, 999.0, seed=1, status="failed")
    for data, secs in (("cifar10-dev", 180.0), ("cifar10-dev-coarse", 170.0)):
        for s in (0, 1, 9):  # the model index: an original per seed and dataset (seed 9 not a protocol seed)
            meta = {"role": "original", "dataset": data, "seed": s, "train_s": secs + s}
            (store.root / "models" / f"{data}-{s}").mkdir(parents=True)
            (store.root / "models" / f"{data}-{s}" / "m.json").write_text(json.dumps({"meta": meta}))
    (store.root / "models" / "oracle").mkdir()
    (store.root / "models" / "oracle" / "m.json").write_text(json.dumps({"meta": {**meta, "role": "oracle"}}))
    times = model_times(store, "exp", {"class:3": "cifar10-dev", "random:50%": "cifar10-dev",
                                       "class:8": "cifar10-dev"}, [0, 1])
    assert sorted(times["oracle class:3"]) == pytest.approx([100.0, 101.0])
    assert sorted(times["oracle random:50%"]) == pytest.approx([50.0, 51.0])
    assert times["oracle class:8"] == [] and sorted(times["original cifar10-dev"]) == [180.0, 181.0]
    assert list(times) == ["original cifar10-dev", "oracle class:3", "oracle random:50%", "oracle class:8"]
    both = model_times(store, "exp", {"class:3": "cifar10-dev", "subclass:dog": "cifar10-dev-coarse"}, [0, 1])
    assert sorted(both["original cifar10-dev-coarse"]) == [170.0, 171.0] and both["oracle subclass:dog"] == []
