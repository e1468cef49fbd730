"""Data parallelism under a 2-process launch (gloo on the CPU) equals one process with the same global batch.

Each 2-process run is a real `accelerate launch --multi_gpu --num_processes 2` (on a machine without CUDA the
processes join a gloo group; `--cpu` would start only one process); its 1-process reference runs in this process.
Tolerance on weights: atol 1e-4. The two runs differ only by float reassociation (each gradient is the sum of two
partial gradients, matmuls run on fewer rows), ~1e-7 relative, which AdamW's division by sqrt(v) + eps amplifies on
gradient components near eps: observed max 1e-6 (fine-tune, 6 steps at lr 3e-3) and 3e-7 to 7e-6 (the methods, 4 steps
at lr 1e-3). A sharding mistake is far larger: weighting token means by example share (the naive DP loss) gave 4e-3
to 6e-3 on the same runs, and a wrong share or an unsynchronised gradient moves weights by ~lr per step.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import unlearnlab

pytest.importorskip("accelerate")
safetensors_torch = pytest.importorskip("safetensors.torch")

HERE = Path(__file__).parent
SRC = Path(unlearnlab.__file__).resolve().parents[1]  # the code under test, in the launched processes too
ATOL = 1e-4
START_FAILURES = ("Cannot start the process group", "DistNetworkError", "Connection refused", "Gloo connectFullMesh")
SPEC = """task: qa
model: tiny
dataset: qa:authors=6,facts=2
forget: 10%
methods: [npo]
recipe: {epochs: 10}
eval_rows: 4
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `args` (a script path or -m module) in 2 processes with accelerate; skip if no gloo group can start."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                              "MASTER_PORT")}
    env.update({"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")])),
                "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"})
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), *args]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and any(m in res.stderr + res.stdout for m in START_FAILURES):
        pytest.skip(f"a 2-process gloo group cannot start here: {res.stderr.strip().splitlines()[-1:]}")
    assert res.returncode == 0, f"launch failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return res


def _load(path: Path) -> dict[str, torch.Tensor]:
    return safetensors_torch.load_file(str(path))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def worker_runs(tmp_path_factory):
    """Weights of the worker's models: one process (here) and each rank of a 2-process launch."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    spec = importlib.util.spec_from_file_location("dist_worker", HERE / "dist_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    try:
        mod.main(one)
    finally:
        torch.set_num_threads(threads)
    launch([str(HERE / "dist_worker.py"), str(two)], cwd=two)
    return one, two


@pytest.mark.parametrize("name", ["finetune", "npo", "kl", "idk_dpo", "undial", "rmu"])
def test_two_processes_match_one(worker_runs, name):
    one, two = worker_runs
    info = [json.loads((two / f"info-rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in info] == [2, 2] and info[0]["forget"] == 9 and info[0]["train"] == 21
    single, rank0, rank1 = _load(one / f"{name}-rank0.safetensors"), *(
        _load(two / f"{name}-rank{r}.safetensors") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "the two ranks ended with different weights"
    diff = _max_diff(single, rank0)
    start = _load(one / f"{'base' if name == 'finetune' else 'finetune'}-rank0.safetensors")
    moved = _max_diff(single, start)
    print(f"{name}: max |w_1proc - w_2proc| = {diff:.2e} (training moved weights by up to {moved:.2e})")
    assert diff < ATOL
    assert moved > 10 * ATOL  # the tolerance is far below what training changes


def test_cli_run_under_two_processes_stores_the_same_runs(tmp_path):
    from typer.testing import CliRunner

    from unlearnlab.cli import app
    from unlearnlab.store import Store

    (tmp_path / "spec.yaml").write_text(SPEC)
    common = ["run", "--config", str(tmp_path / "spec.yaml"), "--backend", "serial", "--no-report"]
    r1 = CliRunner().invoke(app, [*common, "--results", str(tmp_path / "one")], catch_exceptions=False)
    assert r1.exit_code == 0, r1.output
    res = launch(["-m", "unlearnlab.cli", *common, "--results", str(tmp_path / "two")], cwd=tmp_path)
    assert res.stdout.count("QA (tiny)") == 1, "only rank 0 prints the table"
    runs = {}
    for which in ("one", "two"):
        with Store(tmp_path / which) as store:
            rows = store.list_runs(limit=100)
        assert len({r["spec_key"] for r in rows}) == len(rows), f"duplicate runs in the {which}-process store"
        runs[which] = {r["spec_key"]: r for r in rows}
        assert len(list((tmp_path / which / "models").rglob("*.json"))) == 2  # target + oracle cached once
    assert runs["one"].keys() == runs["two"].keys() and len(runs["one"]) == 3  # original, retrain, npo
    worst = (0.0, "")
    for key, rec in runs["one"].items():
        other = runs["two"][key]["metrics"]
        for m, v in rec["metrics"].items():
            if m != "RTE" and isinstance(v, float) and v == v:  # RTE is wall time
                worst = max(worst, (abs(v - other[m]), f"{rec['spec']['method']} {m}"))
                assert abs(v - other[m]) <= 1e-3 * max(1.0, abs(v)), (rec["spec"]["method"], m, v, other[m])
    print(f"CLI: largest metric difference 1 vs 2 processes {worst[0]:.2e} ({worst[1]})")
