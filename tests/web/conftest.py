"""Fixtures of the dashboard tests: a tiny real store (digits, forget class 3, GA and FT, 3-epoch models), a store of
100 cheap synthetic records, a small deletion deployment, and the dashboard app / a live server on them."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

SPEC = {"dataset": "digits", "forget": "class:3", "methods": ["ga", "ft"], "seeds": [0], "recipe": {"epochs": 3}}


@pytest.fixture(scope="session")
def dash_store(tmp_path_factory):
    """A store holding original, retrain, ga and ft runs of one digits scenario (about 5 s to build)."""
    from unlearnlab import api
    from unlearnlab.store import Store

    store = Store(tmp_path_factory.mktemp("dash-results"))
    res = api.run(SPEC, store=store)
    assert not res["errors"], res["errors"]
    report = store.root / "reports" / "demo"
    report.mkdir(parents=True)
    (report / "report.html").write_text("<html><body>report</body></html>")
    return store


@pytest.fixture(scope="session")
def run_ids(dash_store):
    """Run id by method name."""
    return {r["spec"]["method"]: r["id"] for r in dash_store.list_runs()}


def cheap_store(root, n: int = 100):
    """A store of `n` synthetic classifier records (no models): for listing speed."""
    from unlearnlab.store import Store

    store = Store(root)
    rng = np.random.default_rng(0)
    methods = ["retrain", "ga", "ft", "salun", "scrub"]
    for i in range(n):
        m = methods[i % len(methods)]
        spec = {"task": "classifier", "dataset": "digits", "forget": f"class:{i % 10}", "split_seed": 0,
                "model": "mlp", "recipe": {"epochs": 3}, "method": m, "config": {"lr": float(i)}, "seed": i % 3,
                "name": "cheap", "data": "x"}
        metrics = {k: float(rng.uniform(0, 100)) for k in ("UA", "RA", "TA", "MIA-Eff", "Avg.Gap")}
        store.add_run({"spec": spec, "metrics": {**metrics, "RTE": float(rng.uniform(0.1, 5))}})
    return store


def new_deletion_service(root):
    """A small SQLite deletion deployment under `root` (analytic head on 60 rows) with one completed request,
    'done-1', and one queued, 'queued-1'; its service (worker stopped)."""
    pytest.importorskip("cryptography")
    from unlearnlab.exact.analytic_head import AnalyticHead
    from unlearnlab.ledger import DeletionService, create_deployment

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    ids = [f"rec-{i:03d}" for i in range(60)]
    dep = create_deployment(root / "dep", AnalyticHead().fit(x, y, ids),
                            subjects={"carol": ids[50:55]}, window_s=0.05)
    svc = DeletionService(dep, window_s=0.05, poll_s=0.05)
    svc.submit("done-1", "carol", ["rec-050"])
    svc.start()
    end = time.monotonic() + 20
    while svc.status("done-1")["status"] != "completed" and time.monotonic() < end:
        time.sleep(0.05)
    svc.stop()
    svc.submit("queued-1", "carol", ["rec-051"])
    return svc


@pytest.fixture
def hundred_runs(tmp_path):
    """A store of 100 cheap synthetic records."""
    return cheap_store(tmp_path / "cheap")


@pytest.fixture
def fresh_deletion_service(tmp_path):
    """A deletion service of its own (tests that add API keys to it)."""
    return new_deletion_service(tmp_path)


@pytest.fixture(scope="session")
def deletion_service(tmp_path_factory):
    """The deletion service of the live server (see new_deletion_service)."""
    return new_deletion_service(tmp_path_factory.mktemp("dash-dep"))


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(dash_store, deletion_service):
    """The dashboard (with the deletion API) served by uvicorn on a free loopback port in a thread; its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    from unlearnlab.web.dashboard import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(dash_store, deletions=deletion_service, start_worker=False),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
