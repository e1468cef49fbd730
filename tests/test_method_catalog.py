"""`unlearnlab methods` lists from a generated index without torch, and says exactly what the registry says."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnlab.config import describe
from unlearnlab.methods import METHODS, _catalog

SRC = str(Path(_catalog.__file__).resolve().parents[2])
PROBE = ("import sys; from unlearnlab.cli import app; app(sys.argv[1:], standalone_mode=False); "
         "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")


def cli(*args: str) -> subprocess.CompletedProcess:
    """`unlearnlab ARGS` in a fresh interpreter (nothing imported yet); stderr says whether torch loaded."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, check=True)


def test_index_is_current():
    index = _catalog.load_index()
    assert index is not None, "methods/_catalog.json lists other modules: run `python -m unlearnlab.methods._catalog`"
    assert index["methods"] == _catalog.from_registry(), "regenerate with `python -m unlearnlab.methods._catalog`"


@pytest.mark.parametrize("args", [("methods",), ("methods", "--json"), ("methods", "--kind", "lm"),
                                  ("methods", "--markdown")])
def test_methods_lists_without_torch(args):
    r = cli(*args)
    assert r.stderr.strip().endswith("NO-TORCH"), r.stderr
    assert "ga" in r.stdout and ("scrub" in r.stdout) == ("lm" not in args)


def test_listing_equals_the_registry():
    """The index-served output of a fresh process equals the one rendered straight from the loaded registry."""
    live = [{"name": m.name, "description": m.description, "paper": m.paper, "kinds": list(m.kinds),
             "config": describe(m.config)} for m in sorted((m for _, m in METHODS.items()), key=lambda m: m.name)]
    assert json.loads(cli("methods", "--json").stdout) == json.loads(json.dumps(live, default=str))
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    assert METHODS.loaded  # so the in-process listing below comes from the registry, not the index
    for args in (("methods",), ("methods", "--kind", "classifier"), ("methods", "--markdown")):
        assert cli(*args).stdout == CliRunner().invoke(app, list(args)).output, args
    scrub = next(line for line in cli("methods").stdout.splitlines() if line.strip().startswith("lr_decay_epochs"))
    assert "(3, 5, 9)" in scrub  # tuple defaults print as the registry's repr


def test_stale_index_falls_back_to_the_registry(monkeypatch, tmp_path):
    names = ["a_new_method", *_catalog.modules()]  # a method file dropped in after the index was generated
    monkeypatch.setattr(_catalog, "modules", lambda: names)
    assert _catalog.load_index() is None
    monkeypatch.setattr(_catalog, "INDEX", tmp_path / "missing.json")
    assert _catalog.load_index() is None
    assert [e["name"] for e in _catalog.catalog("classifier")] == sorted(
        n for n, m in METHODS.items() if "classifier" in m.kinds)
