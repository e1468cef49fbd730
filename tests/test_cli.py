"""CLI: --help everywhere, --json, exit codes, runs list/show/export over a real (tiny) run."""
from __future__ import annotations

import csv
import json
import re

import pytest
from typer.testing import CliRunner

from unlearnlab import __version__
from unlearnlab.cli import app

runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(app, list(args), catch_exceptions=False, **kw)


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and __version__ in r.output


@pytest.mark.parametrize("cmd", [[], ["run"], ["methods"], ["runs"], ["runs", "list"], ["runs", "show"],
                                 ["runs", "export"]])
def test_help_has_example(cmd):
    r = invoke(*cmd, "--help")
    assert r.exit_code == 0
    assert "Example" in r.output


def test_methods_json_lists_configs():
    r = invoke("methods", "--json")
    assert r.exit_code == 0
    items = json.loads(r.output)
    names = {m["name"] for m in items}
    assert {"ft", "ga", "retrain"} <= names
    ga = next(m for m in items if m["name"] == "ga")
    assert any(f["name"] == "lr" and f["help"] for f in ga["config"])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    r = invoke("run", "--dataset", "blobs", "--methods", "ft,ga", "--seeds", "2", "--results", str(d), "--json")
    assert r.exit_code == 0, r.output
    return d, json.loads(r.stdout)


def test_run_json(results):
    _, payload = results
    methods = [r["spec"]["method"] for r in payload["records"]]
    assert sorted(methods) == sorted(["original", "retrain", "ft", "ga"] * 2 + ["oracle-floor"])
    floor = next(r for r in payload["records"] if r["spec"]["method"] == "oracle-floor")
    assert floor["spec"]["config"] == {"other_seed": 1} and floor["metrics"]["Avg.Gap"] >= 0
    table = {row["method"]: row for row in payload["table"]}
    assert table["retrain"]["Avg.Gap"]["mean"] == 0.0
    assert table["original"]["UA"]["mean"] < table["retrain"]["UA"]["mean"]  # the original remembers D_f
    assert table["ft"]["n"] == 2 and "std" in table["ft"]["UA"]


def test_rerun_resumes_from_store(results):
    d, payload = results
    r = invoke("run", "--dataset", "blobs", "--methods", "ft,ga", "--seeds", "2", "--results", str(d), "--json")
    again = json.loads(r.stdout)
    assert {x["id"] for x in again["records"]} == {x["id"] for x in payload["records"]}


def test_runs_list_show_export(results, tmp_path):
    d, payload = results
    r = invoke("runs", "list", "--results", str(d), "--json")
    rows = json.loads(r.output)
    assert len(rows) == 9  # 4 methods x 2 seeds + the noise floor
    rid = payload["records"][0]["id"]
    r = invoke("runs", "show", rid[:6], "--results", str(d))
    assert json.loads(r.output)["id"] == rid
    out = tmp_path / "runs.csv"
    r = invoke("runs", "export", str(out), "--results", str(d))
    assert r.exit_code == 0
    assert len(list(csv.DictReader(out.open()))) == 9


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "digitz"], "did you mean"),
    (["--methods", "salunn"], "did you mean"),
    (["--forget", "random:150%"], "(0, 100)"),
    (["--forget", "class:12"], "out of range"),
    (["--set", "ga.lrr=0.1", "--methods", "ga"], "did you mean"),
    (["--dataset", "cifar10:/nonexistent/folder"], "does not exist"),
])
def test_bad_input_exit_2(args, needle, tmp_path):
    r = runner.invoke(app, ["run", "--results", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    assert needle.lower() in r.output.lower()
    assert "Traceback" not in r.output


def test_train_then_run_with_own_original(tmp_path):
    ckpt = tmp_path / "orig"
    r = runner.invoke(app, ["train", "--dataset", "blobs", "--epochs", "3", "--out", str(ckpt)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "orig.safetensors").is_file() and (tmp_path / "orig.json").is_file()
    r = invoke("run", "--dataset", "blobs", "--methods", "ft", "--original", str(ckpt), "--no-store", "--json")
    assert r.exit_code == 0, r.output
    # the same checkpoint for another dataset or architecture is refused with exit code 2
    r = runner.invoke(app, ["run", "--dataset", "digits", "--methods", "ft", "--original", str(ckpt), "--no-store"])
    assert r.exit_code == 2 and "made for dataset='blobs'" in r.output
    r = runner.invoke(app, ["run", "--dataset", "blobs", "--model", "cnn", "--methods", "ft", "--original", str(ckpt),
                            "--no-store"])
    assert r.exit_code == 2 and "arch" in r.output


def test_methods_markdown_reference_is_current():
    r = invoke("methods", "--markdown")
    assert r.exit_code == 0 and "## `salun`" in r.output and "| threshold |" in r.output
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
    assert doc.read_text().strip() == r.output.strip(), "docs/methods.md is stale: regenerate it"


@pytest.mark.parametrize("text, field", [('seeds: "12"', "seeds"), ("seeds: many", "seeds"), ("seeds: 0", "seeds"),
                                         ("seeds: [0, true]", "seeds"), ("split_seed: '3'", "split_seed"),
                                         ("forget: 10", "forget"), ("methods: [ft, 3]", "methods"),
                                         ("overrides: {ft: 3}", "overrides.ft"), ("recipe: [1]", "recipe")])
def test_spec_fields_are_strictly_typed(tmp_path, text, field):
    """A YAML string where a list of seeds is expected must not run seeds 1 and 2 (or fail with a traceback)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"dataset: digits\nmethods: [ft]\n{text}\n")
    r = CliRunner().invoke(app, ["run", "--config", str(spec), "--results", str(tmp_path / "r")])
    assert r.exit_code == 2, r.output
    assert f"'{field}'" in r.output and "must be" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r" / "runs.sqlite").exists() or "ft" not in r.output


@pytest.mark.parametrize("args", [["runs", "list"], ["runs", "show", "abc"], ["runs", "export", "x.csv"],
                                  ["sweep", "status"]])
def test_read_commands_outside_a_results_directory_create_nothing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UNLEARNLAB_HOME", raising=False)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "No runs: looked in" in r.output and str(tmp_path / "results") in r.output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, says", [(["--epochs", "1000000000"], "example passes"),
                                        (["--set", "ft.epochs=100000000000"], "ft (epochs=1e+11)"),
                                        (["--set", "ft.epochs=1e11"], "ft.epochs must be an integer"),
                                        (["--epochs", "0"], "epochs 0 trains nothing")])
def test_absurd_budgets_are_refused_with_an_estimate(tmp_path, args, says):
    r = CliRunner().invoke(app, ["run", "--dataset", "blobs", "--methods", "ft", "--results", str(tmp_path / "r"),
                                 "--backend", "serial", *args])
    assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, r.output
    if "passes" in says or "1e+11" in says:
        assert re.search(r"about [0-9.e+]+ (years|days|hours)", r.output) and "--yes" in r.output
    assert not list((tmp_path / "r").glob("**/*.safetensors"))  # nothing was trained


def test_help_does_not_import_torch():
    """`unlearnlab --help` and the CLI's import stay light: the API (and torch) load on the first command that
    needs them."""
    import subprocess
    import sys

    code = "import sys, unlearnlab.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    r = subprocess.run([sys.executable, "-m", "unlearnlab.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "run" in r.stdout
