"""benchmarks/peer_common.py: step / forward counting, medians, ratios and the ratio table (no official code)."""
from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import torch
from torch import nn

_spec = importlib.util.spec_from_file_location(
    "peer_common", Path(__file__).resolve().parent.parent / "benchmarks" / "peer_common.py")
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)


def test_counter_counts_steps_and_examples_on_copies_split_by_autograd():
    model = nn.Linear(3, 2)
    counter = pc.Counter()
    counter.attach(model)
    teacher = copy.deepcopy(model)  # SCRUB's teacher: a deep copy shares the hook
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.ones(4, 3)).sum().backward()
        opt.step()
    with torch.no_grad():
        teacher(torch.ones(5, 3))
    assert counter.detach() == {"steps": 2, "grad_examples": 8, "nograd_examples": 5}
    model(torch.ones(4, 3)).sum().backward()
    opt.step()  # detached: no longer counted
    assert counter.counts()["steps"] == 2


def test_same_work_lists_only_step_and_grad_differences():
    a = {"steps": 3, "grad_examples": 10, "nograd_examples": 0}
    assert pc.same_work(a, {**a, "nograd_examples": 7}) == []
    assert pc.same_work(a, {**a, "steps": 4}) == ["steps: ours 3 vs peer 4"]


def test_median_ratio_and_geometric_mean():
    assert pc.median([3.0, 1.0, 2.0]) == 2.0
    assert math.isnan(pc.median([]))
    assert pc.ratio(3.0, 2.0) == 1.5
    assert math.isnan(pc.ratio(1.0, 0.0))
    assert math.isclose(pc.geometric_mean([2.0, 8.0, math.nan]), 4.0)


def test_table_has_one_row_per_work_item_and_the_geometric_mean():
    rows = [{"name": "ft", "ours": 1.0, "peer": 2.0, "steps": "5 / 5", "forwards": "0 / 0",
             "ours_acc": (10.0, 90.0), "peer_acc": (12.0, 91.0)},
            {"name": "eval", "ours": 0.5, "peer": 1.5, "steps": "0 / 0", "forwards": "10 / 20",
             "ours_acc": (10.0, 90.0), "peer_acc": (10.0, 90.0)}]
    text = pc.table(rows)
    assert "| ft | 1.000 | 2.000 | 2.00x | 5 / 5 | 0 / 0 | 10.0 / 12.0 | 90.0 / 91.0 |" in text
    assert "| eval | 0.500 | 1.500 | 3.00x |" in text
    assert text.endswith("Geometric mean of the method ratios: 2.00x")  # eval is not a method


def test_every_method_has_work_for_both_sides():
    work = pc.method_work(epochs=2, batch_size=64)
    assert set(work) == set(pc.METHODS)
    assert all(work[m]["epochs"] == 2 for m in ("ft", "ga", "rl", "salun", "l1_sparse"))
