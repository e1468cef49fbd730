"""HTTP API of the deletion service through FastAPI's TestClient (no network)."""
from __future__ import annotations

import datetime as dt
import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from unlearnlab.ledger import DeletionService
from unlearnlab.ledger.certificates import verify_document
from unlearnlab.web.deletions import create_app


def _wait_completed(client, ids, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        states = [client.get(f"/deletions/{i}").json()["status"] for i in ids]
        if all(s == "completed" for s in states):
            return
        time.sleep(0.05)
    raise AssertionError(f"not completed in {timeout}s: {states}")


def test_post_status_certificate_verify(deployment):
    svc = DeletionService(deployment, window_s=0.1, poll_s=0.05)
    with TestClient(create_app(svc)) as client:
        r = client.post("/deletions", json={"request_id": "h1", "subject": "alice", "records": ["rec-001", "rec-002"]})
        assert r.status_code == 202 and r.headers["location"] == "/deletions/h1"
        assert r.json()["status_url"] == "/deletions/h1" and "alice" not in r.text
        again = client.post("/deletions",
                            json={"request_id": "h1", "subject": "alice", "records": ["rec-002", "rec-001"]})
        assert again.status_code == 202 and again.json()["request_id"] == "h1"
        assert client.post("/deletions", json={"request_id": "h2", "subject": "carol"}).status_code == 202
        _wait_completed(client, ["h1", "h2"])
        st = client.get("/deletions/h1").json()
        assert st["certificate_url"] == "/deletions/h1/certificate" and st["overdue"] is False
        cert = client.get("/deletions/h1/certificate").json()
        assert verify_document(cert, deployment.public_key_path).ok
        assert cert["certificate"]["evidence"]["deleted"] == ["rec-001", "rec-002"]
        v = client.get("/ledger/verify").json()
        assert v["ok"] and v["entries"] == 6 and v["requests"] == {"completed": 2}
        listing = client.get("/deletions").json()
        assert listing["count"] == 2 and {x["request_id"] for x in listing["requests"]} == {"h1", "h2"}
        assert client.get("/ledger/public-key").json()["pem"].startswith("-----BEGIN PUBLIC KEY")


def test_errors_and_overdue(deployment):
    svc = DeletionService(deployment)
    with TestClient(create_app(svc, start_worker=False)) as client:
        ok = client.post("/deletions", json={"request_id": "e1", "subject": "alice", "records": ["rec-001"]})
        assert ok.status_code == 202
        cases = [
            ({"request_id": "e1", "subject": "alice", "records": ["rec-009"]}, 409, "DuplicateRequestError"),
            ({"request_id": "e2", "subject": "bob", "records": ["rec-001"]}, 409, "DuplicateRequestError"),
            ({"request_id": "e3", "subject": "bob", "records": ["zzz"]}, 422, "UnknownRecordsError"),
            ({"request_id": "e4", "subject": "nobody", "records": []}, 422, "NoRecordsForSubjectError"),
            ({"request_id": "bad id!", "subject": "bob", "records": ["rec-004"]}, 422, "RequestError"),
        ]
        for body, code, kind in cases:
            r = client.post("/deletions", json=body)
            assert r.status_code == code and r.json()["error"] == kind and r.json()["detail"], body
        assert client.post("/deletions", json={"subject": "x"}).status_code == 422  # schema validation
        assert client.get("/deletions/nope").status_code == 404
        r = client.get("/deletions/e1/certificate")
        assert r.status_code == 409 and "queued" in r.json()["detail"]
        assert client.get("/deletions?overdue=true").json()["count"] == 0
        svc.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
        late = client.get("/deletions", params={"overdue": "true"}).json()
        assert late["count"] == 1 and late["requests"][0]["request_id"] == "e1" and late["requests"][0]["overdue"]


def test_api_keys_scopes_limits_and_filters(deployment):
    """With keys configured every endpoint needs one with the right scope (401 / 403); bodies over the limit get 413,
    oversized fields and unknown status filters 422; the OpenAPI schema documents the bearer scheme and errors."""
    from unlearnlab.ledger.apikeys import create_key, revoke_key

    svc = DeletionService(deployment)
    with TestClient(create_app(svc, start_worker=False, max_body=50_000)) as client:
        open_get = client.get("/deletions")
        assert open_get.status_code == 200  # no key configured yet: open (serve() binds loopback only)
        submit, sub_entry = create_key(deployment.root, "submit", "crm")
        read, _ = create_key(deployment.root, "read")
        body = {"request_id": "k1", "subject": "alice", "records": ["rec-001"]}
        for method, url, kw in (("post", "/deletions", {"json": body}), ("get", "/deletions", {}),
                                ("get", "/deletions/k1", {}), ("get", "/ledger/verify", {}),
                                ("get", "/ledger/public-key", {})):
            r = getattr(client, method)(url, **kw)
            assert r.status_code == 401 and r.json()["error"] == "Unauthorized", url
            bad = getattr(client, method)(url, headers={"Authorization": "Bearer ulk_wrong"}, **kw)
            assert bad.status_code == 401, url
        auth = {"Authorization": f"Bearer {submit}"}
        assert client.post("/deletions", json=body, headers=auth).status_code == 202
        assert client.get("/deletions/k1", headers=auth).status_code == 200  # a submitter polls its request
        assert client.get("/deletions", headers=auth).status_code == 403  # ... but cannot list everyone's
        assert client.post("/deletions", json={**body, "request_id": "k2"},
                           headers={"Authorization": f"Bearer {read}"}).status_code == 403
        rauth = {"Authorization": f"Bearer {read}"}
        assert client.get("/deletions", headers=rauth).json()["count"] == 1
        assert client.get("/ledger/verify", headers=rauth).status_code == 200
        # limits and validation
        big = client.post("/deletions", headers=auth, json={"request_id": "k3", "subject": "s" * 60_000})
        assert big.status_code == 413 and big.json()["error"] == "PayloadTooLarge"
        long_subject = client.post("/deletions", headers=auth, json={"request_id": "k4", "subject": "s" * 600})
        assert long_subject.status_code == 422
        assert client.get("/deletions?status=bogus", headers=rauth).status_code == 422
        assert client.get("/deletions?status=queued", headers=rauth).status_code == 200
        spec = client.get("/openapi.json").json()
        assert "HTTPBearer" in spec["components"]["securitySchemes"]
        post = spec["paths"]["/deletions"]["post"]
        assert {"401", "403", "413", "422"} <= set(post["responses"]) and post["security"]
        assert revoke_key(deployment.root, sub_entry["id"])
        assert client.get("/deletions/k1", headers=auth).status_code == 401  # revoked: effective at once


def test_serve_refuses_a_public_address_without_keys(deployment):
    from unlearnlab.errors import ConfigError
    from unlearnlab.web.deletions import serve

    with pytest.raises(ConfigError, match="without API keys"):
        serve(deployment.root, host="0.0.0.0", port=1)
