"""The CIFAR benchmark's verdict lines (benchmarks/classifier_cifar.py): SalUn's findings are checked against the
right rows (GA's tuned row when a README-lr reference row also exists), a missing method is said, never skipped."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("classifier_cifar")
    finally:
        sys.path.remove(str(BENCH))


def _row(label: str, method: str, gaps: list[float], config: dict | None = None, reference: bool = False) -> dict:
    return {"method": label, "method_name": method, "config": config or {}, "reference": reference,
            "by_seed": {s: {"Avg.Gap": g} for s, g in enumerate(gaps)}, "metrics": {}, "cost": {"mean": 0.1}}


def _board(rows: list[dict]) -> dict:
    return {"rows": rows, "floor": {"primary": {"mean": 0.5}, "metrics": {}}}


def test_salun_check_compares_with_the_tuned_ga_row(bench):
    others = [_row(m, m, [6.0, 6.2, 6.1]) for m in ("ft", "random_label", "influence", "boundary_shrink", "l1_sparse")]
    ga = [_row("ga (lr=0.0026)", "ga", [2.0, 2.1, 2.2], {"lr": 0.0026}),  # the tuned GA beats SalUn
          _row("ga (lr=0.0001)", "ga", [9.0, 9.1, 9.2], {"lr": bench.GA_README_LR})]
    board = _board([_row("salun", "salun", [4.0, 4.1, 4.2]), *others, *ga])
    line = bench.checks(board, [])[0]
    assert "**not reproduced**" in line and "ga: above" in line, line
    assert bench._row(board, "ga")["config"]["lr"] == 0.0026
    line = bench.checks(_board([_row("salun", "salun", [4.0, 4.1, 4.2]), *others, ga[0] | {
        "by_seed": {s: {"Avg.Gap": g} for s, g in enumerate([7.0, 7.2, 7.1])}}]), [])[0]
    assert "**reproduced**" in line and "ga: below" in line, line


def test_a_missing_method_is_said(bench):
    board = _board([_row("salun", "salun", [4.0, 4.1]), _row("ft", "ft", [6.0, 6.2])])
    line = bench.checks(board, [])[0]
    assert "ga: not run" in line and "**not fully checked (methods not run)**" in line, line
