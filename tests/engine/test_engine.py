"""The experiment engine: graph expansion and sharing, failure isolation, resume after kill -9, two processes on
one store, progress lines on a pipe, and identical records across backends."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnlab.engine import coord
from unlearnlab.engine.runner import execute, expand
from unlearnlab.engine.sweep import expand_sweep
from unlearnlab.errors import ConfigError
from unlearnlab.spec import from_dict
from unlearnlab.store import Store

CLI = [sys.executable, "-m", "unlearnlab.cli"]
BASE = {"dataset": "blobs", "model": "mlp", "recipe": {"epochs": 3}, "overrides": {"ft": {"epochs": 1}}}


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_graph_shares_originals_and_oracles():
    specs = expand_sweep({"name": "g", **BASE, "forget": ["random:10%", "class:1"], "methods": ["ft", "ga"],
                          "seeds": 2, "grid": {"ga.lr": [0.001, 0.01]}})
    assert len(specs) == 2 * 3  # per scenario: ft alone, then ga at each grid value
    g = expand(specs)
    builds = [j for j in g.jobs.values() if j.kind == "build"]
    # one original per seed (both scenarios train on the same data) + one oracle per (scenario, seed)
    assert sorted(j.role for j in builds) == ["oracle"] * 4 + ["original"] * 2
    runs = [j for j in g.jobs.values() if j.kind == "run"]
    # baselines are shared by the three specs of a scenario: original, retrain, ft, ga x 2 per seed and scenario
    assert len(runs) == 2 * 2 * 5
    assert all(len(j.deps) == 2 and all(d in g.jobs for d in j.deps) for j in runs)
    floors = [j for j in g.jobs.values() if j.kind == "floor"]
    assert len(floors) == 2 and all(j.rspec["config"] == {"other_seed": 1} for j in floors)


def test_parallel_slots_start_the_methods_that_took_longest_first(tmp_path):
    """Longest-processing-time order: with 2+ slots the runs of a method this store timed as slow start before
    the fast ones (so a slow last seed does not run alone at the end); builds stay first, serial keeps plan order."""
    import types

    from unlearnlab.engine.runner import _Scheduler

    class Timed:  # a store whose records say GA takes 100 s and FT 1 s on blobs
        root = tmp_path

        def method_seconds(self, dataset=None):
            return {"ga": 100.0, "ft": 1.0} if dataset == "blobs" else {}

    g = expand([from_dict({**BASE, "forget": "random:10%", "methods": ["ft", "ga"], "seeds": 2})])

    def order(slots: int) -> list[str]:
        sched = _Scheduler(g, Timed(), types.SimpleNamespace(slots=slots), lambda ev: None, False)
        return [g.jobs[k].method or g.jobs[k].kind for k in sched.prune()]

    par = order(2)
    assert par[:4] == ["build"] * 4 and par[4:6] == ["ga", "ga"], par
    assert par.index("ga") < par.index("ft") and order(1).index("ft") < order(1).index("ga")
    sched = _Scheduler(g, Timed(), types.SimpleNamespace(slots=1), lambda ev: None, False)
    ga = next(k for k, j in g.jobs.items() if j.method == "ga")
    build = next(k for k, j in g.jobs.items() if j.kind == "build")
    assert sched.expected_s(ga) == 100.0 and sched.expected_s(build) == 0.0  # what the plan event hands the ETA


def test_lm_target_is_one_job_for_many_methods():
    spec = from_dict({"task": "qa", "model": "tiny", "dataset": "qa:authors=6,facts=2", "forget": "10%",
                      "methods": ["ga", "npo", "grad_diff"], "seeds": [0], "epochs": 1})
    g = expand([spec])
    assert sorted(j.role for j in g.jobs.values() if j.kind == "build") == ["oracle", "original"]
    runs = [j for j in g.jobs.values() if j.kind == "run"]
    assert [j.method for j in runs] == ["original", "retrain", "ga", "npo", "grad_diff"]
    assert len({d for j in runs for d in j.deps}) == 2


def test_oracle_trained_once_and_stored_runs_never_recomputed(tmp_path):
    store = Store(tmp_path)
    specs = [from_dict({**BASE, "forget": "random:10%", "methods": [m], "seeds": [0],
                        "overrides": BASE["overrides"] if m == "ft" else {}}) for m in ("ft", "ga")]
    events: list[dict] = []
    res = execute(specs, store=store, sink=events.append)
    started = [e["job"] for e in events if e["kind"] == "start"]
    assert sum(s.startswith("build oracle") for s in started) == 1 and sum(s.startswith("build original") for s in
                                                                        started) == 1
    assert store.count_runs() == 4 and not res["errors"]
    events.clear()
    again = execute(specs, store=store, sink=events.append)
    assert not [e for e in events if e["kind"] == "start"] and store.count_runs() == 4
    assert [r["id"] for r in again["records"][0]] == [r["id"] for r in res["records"][0]]


def test_failing_job_is_isolated_and_recorded(tmp_path):
    store = Store(tmp_path)
    spec = from_dict({**BASE, "methods": ["ga", "ft"], "overrides": {"ga": {"lr": 1e12, "batch_size": 4},
                                                                     "ft": {"epochs": 1}}, "name": "bad"})
    res = execute([spec], store=store)
    assert [e["method"] for e in res["errors"]] == ["ga"] and "diverged" in res["errors"][0]["error"]
    assert {r["spec"]["method"] for r in res["records"][0]} == {"original", "retrain", "ft"}
    failed = [j for j in coord.jobs(store, "bad") if j["status"] == "failed"]
    assert len(failed) == 1 and "diverged" in failed[0]["error"]


def _sweep_file(tmp_path: Path, methods: list[str], seeds: int = 2) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(json.dumps({"name": "kill", **BASE, "forget": "random:10%", "methods": methods, "seeds": seeds}))
    return p


def test_resume_after_kill_9(tmp_path):
    spec = _sweep_file(tmp_path, ["ft", "ga", "random_label", "salun"])
    results = tmp_path / "r"
    proc = subprocess.Popen([*CLI, "sweep", str(spec), "--backend", "serial", "--results", str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    deadline = time.time() + 120
    while time.time() < deadline:
        if (results / "runs.sqlite").exists() and Store(results).count_runs() >= 3:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["spec_key"]: r["id"] for r in Store(results).list_runs()}
    assert 3 <= len(before) < 13, "the sweep must be killed mid-way"
    r = subprocess.run([*CLI, "sweep", str(spec), "--backend", "serial", "--results", str(results), "--json"],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = Store(results).list_runs()
    keys = [x["spec_key"] for x in runs]
    assert len(keys) == len(set(keys)) == 13  # 6 methods x 2 seeds + the floor, each once
    assert all({x["spec_key"]: x["id"] for x in runs}[k] == v for k, v in before.items())
    st = subprocess.run([*CLI, "sweep", "status", "kill", "--results", str(results)], capture_output=True, text=True,
                        env=_env(), timeout=60)
    assert st.returncode == 0 and re.search(r"kill: \d+ done", st.stdout), st.stdout + st.stderr
    assert "running" not in st.stdout  # the killed process's claims are not reported as live


def test_two_processes_never_compute_the_same_job(tmp_path):
    spec = _sweep_file(tmp_path, ["ft", "ga", "random_label"])
    results = tmp_path / "r"
    cmd = [*CLI, "sweep", str(spec), "--backend", "serial", "--results", str(results)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    keys = [x["spec_key"] for x in Store(results).list_runs()]
    assert len(keys) == len(set(keys)) == 11
    assert any("another process" in e for e in errs)  # one of them waited for the other's job


def test_progress_lines_when_stderr_is_a_pipe(tmp_path):
    r = subprocess.run([*CLI, "run", "--dataset", "blobs", "--methods", "ft", "--epochs", "2", "--backend", "serial",
                        "--results", str(tmp_path), "--no-report"], capture_output=True, text=True, env=_env(),
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
    assert lines and all(stamp.match(x) for x in lines if x.strip())
    assert any("plan:" in x for x in lines) and any(" done " in x and "ft seed 0" in x for x in lines)
    assert any("epoch 2/2" in x for x in lines)  # the training loop's epoch/step events reach the renderer


def test_eta_times_model_builds_apart_from_runs():
    """A resumed sweep first 'builds' models it finds cached (a second each): the ETA of the runs left must come
    from the runs' own time, not from those builds'."""
    from unlearnlab.engine.events import Tracker

    t = Tracker()
    t.update({"kind": "plan", "jobs": 12, "builds": 4, "workers": 2})
    for i in range(4):  # four cached-model builds, one second each
        t.update({"kind": "start", "job": f"build original seed {i} (x)", "t": 0.0})
        t.update({"kind": "done", "job": f"build original seed {i} (x)", "t": 1.0})
    assert t.eta_s() is None and "ETA" not in t.summary()  # 8 runs left, none timed: unknown, not 8 x 1 s
    t.update({"kind": "start", "job": "ft seed 0 (x)", "t": 1.0})
    t.update({"kind": "done", "job": "ft seed 0 (x)", "t": 101.0})
    assert t.eta_s() == 7 * 100.0 / 2  # 7 runs left at 100 s over 2 workers, not 7 x ~1 s
    assert "ETA 5m50s" in t.summary()
    u = Tracker()  # builds left and no build timed yet: they borrow the runs' mean
    u.update({"kind": "plan", "jobs": 3, "builds": 1, "workers": 1})
    u.update({"kind": "start", "job": "ft seed 0 (x)", "t": 0.0})
    u.update({"kind": "done", "job": "ft seed 0 (x)", "t": 10.0})
    assert u.eta_s() == 2 * 10.0


def test_eta_times_each_kind_of_job_apart():
    """When the plan lists its jobs, each method's runs left count at that method's own mean (three 500 s Fisher
    runs left are not 'ETA 2m20s' because FT took 100 s), a reused job is never counted as left, and a running job
    counts only what its kind's mean has not yet used."""
    from unlearnlab.engine.events import Tracker

    pending = [f"{m} seed {s} (x)" for m in ("ft", "fisher_forgetting") for s in range(3)]
    t = Tracker()
    t.update({"kind": "plan", "t": 0.0, "jobs": 10, "builds": 0, "workers": 2, "pending": pending})
    for s in range(4):  # reused runs of the same method: not among the pending ones
        t.update({"kind": "cached", "job": f"ft seed {s + 3} (x)", "t": 0.0})
    assert t.eta_s() is None  # nothing timed yet
    t.update({"kind": "start", "job": "ft seed 0 (x)", "t": 0.0})
    t.update({"kind": "done", "job": "ft seed 0 (x)", "t": 100.0})
    assert t.eta_s() == 5 * 100.0 / 2  # Fisher not timed yet: the runs' mean
    t.update({"kind": "start", "job": "fisher_forgetting seed 0 (x)", "t": 100.0})
    t.update({"kind": "done", "job": "fisher_forgetting seed 0 (x)", "t": 600.0})
    assert t.eta_s() == (2 * 100.0 + 2 * 500.0) / 2
    t.update({"kind": "start", "job": "fisher_forgetting seed 1 (x)", "t": 600.0})
    t.update({"kind": "progress", "job": "fisher_forgetting seed 1 (x)", "t": 900.0})  # 300 s into its 500
    assert t.eta_s() == (2 * 100.0 + 200.0 + 500.0) / 2
    assert "ETA 7m30s" in t.summary()
    u = Tracker()  # a resumed sweep: the store's records say what Fisher takes before this session timed one
    u.update({"kind": "plan", "t": 0.0, "jobs": 6, "builds": 0, "workers": 2, "pending": pending,
              "expected": {f"fisher_forgetting seed {s} (x)": 500.0 for s in range(3)}})
    u.update({"kind": "start", "job": "ft seed 0 (x)", "t": 0.0})
    u.update({"kind": "done", "job": "ft seed 0 (x)", "t": 100.0})
    assert u.eta_s() == (2 * 100.0 + 3 * 500.0) / 2  # not 5 x the 100 s of FT


def _metrics(res) -> dict:
    return {(r["spec"]["method"], r["spec"]["seed"]): r["metrics"] for r in res["records"][0]}


def test_local_pool_matches_serial_with_equal_threads(tmp_path, monkeypatch):
    import torch

    spec = from_dict({**BASE, "methods": ["ft", "ga"], "seeds": [0, 1]})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the pool gives each of its 2 workers 1 thread on 2 cores
    try:
        serial = execute([spec], store=Store(tmp_path / "s"), backend="serial")
    finally:
        torch.set_num_threads(threads)
    local = execute([spec], store=Store(tmp_path / "l"), backend="local", workers=2)
    assert not serial["errors"] and not local["errors"]
    a, b = _metrics(serial), _metrics(local)
    assert a.keys() == b.keys()
    for k in a:
        assert {m: v for m, v in a[k].items() if not m.startswith("RTE")} == \
            {m: v for m, v in b[k].items() if not m.startswith("RTE")}, k


def test_ray_backend_gives_the_same_records(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (make test installs it where it can)")
    spec = from_dict({**BASE, "methods": ["ft"], "seeds": [0]})
    local = execute([spec], store=Store(tmp_path / "l"), backend="local", workers=2)
    events: list[dict] = []
    try:
        viaray = execute([spec], store=Store(tmp_path / "r"), backend="ray", workers=2, sink=events.append)
    finally:
        ray.shutdown()
    assert not viaray["errors"], viaray["errors"]
    assert any(e["kind"] == "progress" for e in events)  # epoch/step events travel back from the Ray workers
    a, b = _metrics(local), _metrics(viaray)
    for k in a:
        assert {m: v for m, v in a[k].items() if not m.startswith("RTE")} == \
            {m: v for m, v in b[k].items() if not m.startswith("RTE")}, k


def test_sweep_tunes_every_method_with_the_same_budget_then_runs_the_choice(tmp_path):
    from unlearnlab import api

    store = Store(tmp_path)
    res = api.sweep({"name": "tuned", **BASE, "methods": ["ft", "ga"], "seeds": 2,
                     "tune": {"budget": 2, "seeds": [0], "warm_start": True}}, store=store, backend="serial")
    tuned = next(iter(res["tuned"].values()))["methods"]
    assert {m: len(t["trials"]) for m, t in tuned.items()} == {"ft": 2, "ga": 2}
    from unlearnlab.methods import METHODS

    for m in ("ft", "ga"):  # warm start: the first trial is the default setting
        assert tuned[m]["trials"][0]["params"]["lr"] == METHODS.get(m).config().lr
    assert all(t["spec"]["forget"].startswith("val:") for t in [r for r in store.list_runs()
                                                                 if r["spec"]["name"] != "tuned"])
    trials = [r for r in store.list_runs() if r["spec"]["name"] != "tuned"]
    assert {r["spec"]["seed"] for r in trials} == {0}  # tuned on tune.seeds only
    final = {r["spec"]["method"]: r for r in res["records"] if r["spec"]["seed"] == 0}
    assert {r["spec"]["seed"] for r in res["records"]} == {0, 1}  # the chosen settings run on every sweep seed
    assert set(final) == {"original", "retrain", "ft", "ga", "oracle-floor"}
    for m in ("ft", "ga"):
        chosen = tuned[m]["best"]["params"]
        assert all(final[m]["spec"]["config"][k] == v for k, v in chosen.items())
        assert final[m]["spec"]["forget"] == "random:10%"
    assert res["report"] and Path(res["report"]).is_file()
    for bad, msg in (({"budget": 2, "warmstart": True}, "unknown key"), ({"budget": 2, "warm_start": "yes"},
                                                                         "true or false")):
        with pytest.raises(ConfigError, match=msg):
            api.sweep({"name": "bad", **BASE, "methods": ["ft"], "tune": bad}, store=store, backend="serial")


def test_method_that_changes_nothing_is_warned_in_record_and_events(tmp_path):
    """SSD with an α no importance ratio reaches selects nothing: the record says so (method_info, warnings) and a
    warning event is emitted while running; GA at lr 0 leaves the weights bitwise unchanged and is warned too."""
    spec = from_dict({**BASE, "forget": "random:10%", "methods": ["ssd", "ga"], "seeds": [0],
                      "overrides": {"ssd": {"selection_weighting": 1e12}, "ga": {"lr": 0.0, "epochs": 1}}})
    events: list[dict] = []
    res = execute([spec], store=Store(tmp_path), sink=events.append)
    recs = {r["spec"]["method"]: r for r in res["records"][0]}
    assert recs["ssd"]["method_info"]["selected_fraction"] == 0.0
    assert any("selected 0 of" in w for w in recs["ssd"]["warnings"])
    assert any("left the weights exactly as the original's" in w for w in recs["ssd"]["warnings"])
    assert any("left the weights exactly" in w for w in recs["ga"]["warnings"])
    assert "warnings" not in recs["original"] and "warnings" not in recs["retrain"]
    warned = [e for e in events if e["kind"] == "warning"]
    assert {m for e in warned for m in ("ssd", "ga") if m in e["job"]} == {"ssd", "ga"}
