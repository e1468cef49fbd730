"""The dashboard's JSON API through FastAPI's TestClient: every endpoint on a tiny real store, error cases (404 / 409 /
422), path traversal, the analysis cache (a second request computes nothing) and listing speed on 100 runs."""
from __future__ import annotations

import base64
import os
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the dashboard needs the web extra: pip install 'unlearnlab[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from unlearnlab.errors import ConfigError  # noqa: E402
from unlearnlab.web.analysis import png_data_uri, sample_positions  # noqa: E402
from unlearnlab.web.dashboard import check_host, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(dash_store):
    with TestClient(create_app(dash_store)) as c:
        yield c


def test_runs_list_filters_sorts_and_links_the_oracle(client, run_ids):
    res = client.get("/api/runs").json()
    assert res["total"] == 4 and {r["method"] for r in res["runs"]} == {"original", "retrain", "ga", "ft"}
    assert all(r["oracle_id"] == run_ids["retrain"] and r["analysable"] for r in res["runs"])
    assert res["shown_metrics"][:3] == ["UA", "RA", "TA"]
    ga = client.get("/api/runs", params={"method": "ga"}).json()["runs"]
    assert [r["id"] for r in ga] == [run_ids["ga"]]
    ua = [r["UA"] for r in client.get("/api/runs", params={"sort": "UA", "order": "asc"}).json()["runs"]]
    assert ua == sorted(ua) and ua[-1] == 100.0  # retrain never saw class 3
    assert [r["method"] for r in client.get("/api/runs", params={"q": "FT"}).json()["runs"]] == ["ft"]
    page = client.get("/api/runs", params={"sort": "method", "order": "asc", "limit": 2, "offset": 1}).json()
    assert [r["method"] for r in page["runs"]] == ["ga", "original"] and page["total"] == 4


@pytest.mark.parametrize("query", [{"sort": "bogus"}, {"order": "up"}, {"limit": 0}, {"offset": -1},
                                   {"task": "gan"}, {"seed": "x"}, {"sort": "UA;drop"}])
def test_malformed_queries_are_422(client, query):
    r = client.get("/api/runs", params=query)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_one_run_unknown_and_malformed_ids(client, run_ids):
    rec = client.get(f"/api/runs/{run_ids['ga'][:6]}").json()
    assert rec["id"] == run_ids["ga"] and rec["oracle_id"] == run_ids["retrain"] and rec["spec"]["method"] == "ga"
    r = client.get("/api/runs/abcdef123456")
    assert r.status_code == 404 and "No run 'abcdef123456'" in r.json()["detail"]
    assert client.get("/api/runs/abcdef123456/attack").status_code == 404
    assert client.get("/api/runs/not-hex!").status_code == 422


def test_views_are_computed_once_and_read_from_the_store(dash_store, run_ids):
    app = create_app(dash_store)
    with TestClient(app) as c:
        ga = run_ids["ga"]
        cls = c.get(f"/api/runs/{ga}/class").json()
        assert app.state.analyses.computed == 1 and cls["reproduced"]["ok"]
        for view in ("instance", "layer", "attack"):
            assert c.get(f"/api/runs/{ga}/{view}").status_code == 200
        assert c.get(f"/api/runs/{ga}/class").json() == cls
        assert app.state.analyses.computed == 1  # the second request (and the other views) computed nothing
    fresh = create_app(dash_store)
    fresh.state.compute = lambda rec: pytest.fail("recomputed an analysis that is stored")
    with TestClient(fresh) as c:
        assert c.get(f"/api/runs/{ga}/class").json() == cls
        assert c.get(f"/api/runs/{ga}").json()["analysis_cached"] is True
    assert any(p.suffix == ".json" for p in (dash_store.root / "dashboard").iterdir())


def test_class_and_attack_views(client, run_ids):
    cls = client.get(f"/api/runs/{run_ids['retrain']}/class").json()
    assert len(cls["classes"]) == 10 and cls["class"]["accuracy"]["train"][3] == 0.0  # the oracle never saw class 3
    m = cls["class"]["matrix"]["forget"]
    assert sum(m[3]) == sum(map(sum, m)) and m[3][3] == 0  # forget = class 3; none predicted as 3
    orig = client.get(f"/api/runs/{run_ids['original']}/class").json()["class"]["matrix"]["forget"]
    assert orig[3][3] > 0.8 * sum(orig[3])
    att = client.get(f"/api/runs/{run_ids['ga']}/attack").json()["attack"]
    assert 0.0 <= att["privacy"]["ps"] <= 1.0 and att["n"] == sum(m[3])
    for score in ("entropy", "confidence"):
        s = att[score]
        assert len(s["thresholds"]) == len(s["fpr"]) == len(s["fnr"]) == len(s["success"]) == 51
        assert sum(s["unlearned"]) == sum(s["retrained"]) == att["n"]
    assert len(att["leaks"]) == 8 and att["leaks"][0]["thumb"].startswith("data:image/png;base64,")
    same = client.get(f"/api/runs/{run_ids['retrain']}/attack").json()["attack"]
    assert same["privacy"]["ps"] == 1.0  # the oracle against itself: indistinguishable


def test_instance_and_layer_views(client, run_ids):
    a = client.get(f"/api/runs/{run_ids['ga']}/instance").json()["instance"]
    b = client.get(f"/api/runs/{run_ids['ft']}/instance").json()["instance"]
    assert [p["key"] for p in a["points"]] == [p["key"] for p in b["points"]]  # same sample: linked panels
    assert len(a["points"]) == len(a["projection"]["pca"]) == 120
    assert {p["split"] for p in a["points"]} == {"forget", "retain", "test"}
    p = a["points"][0]
    assert len(p["probs"]) == 10 and abs(sum(p["probs"]) - 1) < 1e-3
    assert base64.b64decode(p["thumb"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    lay = client.get(f"/api/runs/{run_ids['retrain']}/layer").json()["layer"]
    assert lay["layers"] == ["body.1", "body.3", "head"]
    assert all(abs(v - 1) < 1e-6 for v in lay["cka"]["retrained/forget"])
    assert all(0 < v < 1 + 1e-9 for v in lay["cka"]["original/forget"])


def test_tradeoff_lm_info_openapi(client, run_ids):
    t = client.get("/api/tradeoff").json()
    (sc,) = t["scenarios"]
    assert sc == "digits | class:3 | mlp" and set(t["fronts"][sc]["gap_rte"]) <= set(run_ids.values())
    assert run_ids["original"] in t["fronts"][sc]["gap_rte"]  # zero run time: always on the front
    assert client.get("/api/tradeoff", params={"scenario": "nope"}).json()["points"] == []
    lm = client.get("/api/lm").json()
    assert lm["runs"] == [] and "per-question" in lm["note"]
    info = client.get("/api/info").json()
    assert info["runs"] == 4 and info["deletions"] is False
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/attack", "/api/tradeoff"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_thumbnails_and_the_shared_sample():
    for img in (np.random.default_rng(0).normal(size=(3, 32, 32)), np.zeros((1, 8, 8)), np.ones((8, 8))):
        png = base64.b64decode(png_data_uri(img).split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        assert int.from_bytes(png[16:20], "big") == img.shape[-1] and png[25] == (2 if img.ndim == 3 and
                                                                                  img.shape[0] == 3 else 0)
    assert sample_positions(500, 40, 0).tolist() == sample_positions(500, 40, 0).tolist()
    assert len(set(sample_positions(500, 40, 0))) == 40 and sample_positions(10, 40, 0).tolist() == list(range(10))


def test_runs_that_cannot_be_rebuilt_answer_409(tmp_path):
    from unlearnlab.store import Store

    store = Store(tmp_path)
    rid = store.add_run({"spec": {"task": "qa", "dataset": "tofu", "forget": "forget01", "method": "npo", "seed": 0},
                         "metrics": {"Forget Quality": 0.5, "Model Utility": 0.4}})
    with TestClient(create_app(store)) as c:
        r = c.get(f"/api/runs/{rid}/class")
        assert r.status_code == 409 and "language-model" in r.json()["detail"]
        assert c.get("/api/lm").json()["runs"][0]["Forget Quality"] == 0.5
        r = c.get(f"/api/lm/{rid}/answers")
        assert r.status_code == 404 and "no per-question answers" in r.json()["detail"]
        assert c.get("/api/runs").json()["runs"][0]["analysable"] is False


@pytest.mark.parametrize("path", ["/files/../runs.sqlite", "/files/%2e%2e/runs.sqlite", "/files/..%2f..%2fetc%2fpasswd",
                                  "/files//etc/passwd", "/files/demo/../../runs.sqlite", "/files/escape/passwd",
                                  "/static/../dashboard.py", "/static/%2e%2e/dashboard.py", "/files/demo",
                                  "/files/C:%5Cwindows"])
def test_no_file_outside_the_results_reports_is_served(client, dash_store, path):
    link = dash_store.root / "reports" / "escape"
    if not link.exists():
        link.symlink_to("/etc")
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "root:" not in r.text and "SQLite" not in r.text


def test_report_files_are_listed_and_served(client):
    reports = client.get("/api/reports").json()["reports"]
    assert reports == [{"name": "demo", "url": "/files/demo/report.html"}]
    assert client.get("/files/demo/report.html").text.startswith("<html>")


def test_pages_and_runs_list_are_fast_on_100_runs(hundred_runs):
    with TestClient(create_app(hundred_runs)) as c:
        c.get("/api/runs")  # warm imports
        times = {}
        for path in ("/", "/api/runs", "/api/runs?sort=UA&order=asc&q=salun", "/api/tradeoff", "/static/common.js",
                     "/api/info"):
            t0 = time.perf_counter()
            r = c.get(path)
            times[path] = time.perf_counter() - t0
            assert r.status_code == 200
        assert c.get("/api/runs").json()["total"] == 100
    assert max(times.values()) < 1.0, times
    assert sum(times.values()) < 1.0, times


def test_plotly_bundle_is_served_locally_and_nothing_is_fetched_from_elsewhere(client):
    from unlearnlab.web.dashboard import STATIC

    pytest.importorskip("plotly")
    r = client.get("/vendor/plotly.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert '"/vendor/plotly.min.js"' in client.get("/static/common.js").text
    for f in STATIC.iterdir():
        assert "http://" not in f.read_text() and "https://" not in f.read_text(), f  # no CDN, no remote asset


def test_deletion_ledger_and_certificate_verification(fresh_deletion_service, dash_store):
    from unlearnlab.ledger.apikeys import create_key

    svc = fresh_deletion_service
    with TestClient(create_app(dash_store, deletions=svc, start_worker=False)) as c:
        listing = c.get("/ledger-api/deletions").json()
        assert {r["request_id"]: r["status"] for r in listing["requests"]} == {"done-1": "completed",
                                                                               "queued-1": "queued"}
        assert c.get("/api/deletions/done-1/verify").json() == {"ok": True, "reason": "", "request_id": "done-1"}
        assert c.get("/api/deletions/nope/verify").status_code == 404
        assert c.get("/api/deletions/queued-1/verify").status_code == 409
        assert c.get("/api/info").json()["deletions"] is True
        key, _ = create_key(svc.dep.root, "read")
        assert c.get("/api/deletions/done-1/verify").status_code == 401  # same keys as the deletion API
        assert c.get("/ledger-api/deletions").status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert c.get("/api/deletions/done-1/verify", headers=auth).json()["ok"] is True
        assert c.get("/ledger-api/deletions", headers=auth).status_code == 200


def test_non_loopback_needs_the_flag_and_warns(dash_store, monkeypatch):
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    assert check_host("127.0.0.1", False) is None
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_host("0.0.0.0", False)
    assert check_host("0.0.0.0", True).startswith("warning")
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append(kw))
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--results", str(dash_store.root), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--allow-remote" in r.output and not calls
    r = runner.invoke(app, ["serve", "--results", str(dash_store.root), "--port", "9999"])
    assert r.exit_code == 0 and "http://127.0.0.1:9999/" in r.output
    assert calls[-1] == {"host": "127.0.0.1", "port": 9999, "log_level": "warning"}
    r = runner.invoke(app, ["serve", "--results", str(dash_store.root), "--host", "0.0.0.0", "--allow-remote"])
    assert r.exit_code == 0 and "warning" in r.output and calls[-1]["host"] == "0.0.0.0"
    r = runner.invoke(app, ["serve", "--results", os.fspath(dash_store.root / "nowhere")])
    assert r.exit_code == 2 and "No runs" in r.output


def test_serve_deletions_alone_or_with_the_dashboard(dash_store, fresh_deletion_service, monkeypatch):
    from typer.testing import CliRunner

    from unlearnlab.cli import app

    apps = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: apps.append((app, kw)))
    dep = str(fresh_deletion_service.dep.root)
    r = CliRunner().invoke(app, ["serve", "--deletions", "-d", dep])
    assert r.exit_code == 0 and apps[-1][1]["port"] == 8000 and apps[-1][0].title == "unlearnlab deletions"
    r = CliRunner().invoke(app, ["serve", "--dashboard", "--deletions", "-d", dep, "--results", str(dash_store.root)])
    assert r.exit_code == 0 and apps[-1][1]["port"] == 8765 and apps[-1][0].title == "unlearnlab dashboard"
    with TestClient(apps[-1][0]) as c:
        assert c.get("/api/info").json()["deletions"] is True


def test_lm_answers_side_by_side(tmp_path):
    import json as _json

    from unlearnlab.store import Store

    store = Store(tmp_path)
    spec = {"task": "qa", "dataset": "qa", "forget": "random:10%", "model": "tiny", "seed": 0}
    ids = {}
    for method, answer in (("original", "Paris"), ("retrain", "I do not know"), ("npo", "London")):
        table = {"forget": [{"question": "Capital?", "target": "Paris", "answer": answer,
                             "rouge": float(answer == "Paris"), "truth_ratio": 0.5}]}
        digest = store.put_bytes(_json.dumps(table).encode())
        ids[method] = store.add_run({"spec": {**spec, "method": method}, "metrics": {}, "answers": digest})
    with TestClient(create_app(store)) as c:
        res = c.get(f"/api/lm/{ids['npo']}/answers").json()
        q = res["questions"][0]
        assert q["expected"] == "Paris" and q["target"]["answer"] == "Paris" and q["target"]["rouge"] == 1.0
        assert q["oracle"]["answer"] == "I do not know" and q["run"]["answer"] == "London"
        assert res["ids"] == {"target": ids["original"], "oracle": ids["retrain"], "run": ids["npo"]}
        assert c.get(f"/api/lm/{ids['npo']}/answers", params={"split": "retain"}).status_code == 404
        assert c.get(f"/api/lm/{ids['npo']}/answers", params={"split": "../x"}).status_code == 422
        assert c.get("/api/lm/ffffffff/answers").status_code == 404
