"""Hostile inputs against the results store, the ledger and the HTTP API: each is tried and its outcome recorded.

    .venv/bin/python benchmarks/security_probe.py --out docs/security_probes.md

Every probe runs in a fresh temporary directory (a digits-size deployment of 120 records, a blobs results store)
and reports BLOCKED (the toolkit refused or detected it, with the message it gave) or PASSED (it got through). The
table lands in `--out`; docs/security.md explains the threat model behind it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from unlearnlab.cli import app

Probe = Callable[[Path], tuple[bool, str]]  # (blocked, what happened)
PROBES: list[tuple[str, str, Probe]] = []


def probe(area: str, what: str):
    def wrap(fn: Probe) -> Probe:
        PROBES.append((area, what, fn))
        return fn
    return wrap


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output.strip().splitlines()[-1] if r.output.strip() else ""


# -- results store -------------------------------------------------------------------------------------------------
@probe("results", "`seeds: \"12\"` in a YAML spec")
def _seeds_string(tmp: Path) -> tuple[bool, str]:
    (tmp / "s.yaml").write_text('dataset: blobs\nmethods: [ft]\nseeds: "12"\n')
    code, msg = cli("run", "--config", str(tmp / "s.yaml"), "--results", str(tmp / "r"))
    return code == 2, f"exit {code}: {msg}"


@probe("results", "`seeds: many` in a YAML spec")
def _seeds_word(tmp: Path) -> tuple[bool, str]:
    (tmp / "s.yaml").write_text("dataset: blobs\nmethods: [ft]\nseeds: many\n")
    code, msg = cli("run", "--config", str(tmp / "s.yaml"), "--results", str(tmp / "r"))
    return code == 2, f"exit {code}: {msg}"


@probe("results", "a text file named fake.png in an image folder")
def _fake_image(tmp: Path) -> tuple[bool, str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp / split / c / f"{i}.png")
    (tmp / "train" / "a" / "fake.png").write_text("not an image")
    code, msg = cli("run", "--dataset", f"imagefolder:{tmp}", "--methods", "ft", "--results", str(tmp / "r"))
    return code == 2 and "fake.png" in msg, f"exit {code}: {msg}"


@probe("results", "`--epochs 1000000000`")
def _huge_epochs(tmp: Path) -> tuple[bool, str]:
    code, msg = cli("run", "--dataset", "blobs", "--methods", "ft", "--epochs", "1000000000", "--results",
                    str(tmp / "r"), "--backend", "serial")
    return code == 2, f"exit {code}: {msg}"


@probe("results", "`--set ft.epochs=100000000000`")
def _huge_method_epochs(tmp: Path) -> tuple[bool, str]:
    code, msg = cli("run", "--dataset", "blobs", "--methods", "ft", "--set", "ft.epochs=100000000000", "--results",
                    str(tmp / "r"), "--backend", "serial")
    return code == 2, f"exit {code}: {msg}"


@probe("results", "an `indices:` file edited between two runs")
def _stale_indices(tmp: Path) -> tuple[bool, str]:
    ids = tmp / "ids.txt"
    ids.write_text("1\n2\n3\n")
    base = ["run", "--dataset", "blobs", "--methods", "ft", "--forget", f"indices:{ids}", "--set", "ft.epochs=1",
            "--results", str(tmp / "r"), "--backend", "serial", "--json", "--no-report"]
    first = CliRunner().invoke(app, base)
    ids.write_text("\n".join(str(i) for i in range(0, 400)) + "\n")
    second = CliRunner().invoke(app, base)
    a, b = (json.loads(x.stdout)["records"] for x in (first, second))
    recomputed = {r["id"] for r in a}.isdisjoint(r["id"] for r in b) and a[0]["spec"]["data"] != b[0]["spec"]["data"]
    return recomputed, (f"3 ids, then 400: the second run computed {len(b)} new records (data hash "
                        f"{a[0]['spec']['data'][:8]} -> {b[0]['spec']['data'][:8]})")


@probe("results", "two `unlearnlab run` processes on one results directory")
def _concurrent(tmp: Path) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "unlearnlab.cli", "run", "--dataset", "blobs", "--methods", "ft", "--set",
           "ft.epochs=1", "--results", str(tmp / "r"), "--backend", "serial", "--no-report"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    from unlearnlab.store import Store

    rows = Store(tmp / "r").list_runs(limit=100)
    keys = [(r["spec"]["method"], r["spec"]["seed"]) for r in rows]
    return len(keys) == len(set(keys)), f"exit codes {codes}; {len(rows)} rows for {len(set(keys))} (method, seed)"


@probe("results", "`runs list` outside any results directory")
def _runs_list(tmp: Path) -> tuple[bool, str]:
    import os

    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        code, msg = cli("runs", "list")
    finally:
        os.chdir(cwd)
    return code == 2 and not (tmp / "results").exists(), f"exit {code}: {msg[:110]}"


# -- ledger --------------------------------------------------------------------------------------------------------
def _deployment(tmp: Path):
    """A deployment of an exact analytic head fitted on 120 synthetic rows; alice owns rec-000..059, bob the rest."""
    from unlearnlab.exact.analytic_head import AnalyticHead
    from unlearnlab.ledger.deployment import create_deployment

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6))
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    ids = [f"rec-{i:03d}" for i in range(120)]
    subjects = {"alice": ids[:60], "bob": ids[60:]}
    return create_deployment(tmp / "dep", AnalyticHead().fit(x, y, ids), subjects=subjects)


def _delete(dep, subject: str, records: str) -> str:
    r = CliRunner().invoke(app, ["delete", "-s", subject, "-r", records, "-d", str(dep.root), "--json"])
    return json.loads(r.stdout)["request_id"]


def _verify(dep, *extra: str) -> tuple[bool, str]:
    code, msg = cli("ledger", "verify", "-d", str(dep.root), *extra)
    return code == 1, f"exit {code}: {msg[:150]}"


@probe("ledger", "chain rewritten end to end, certificate anchor patched")
def _rewrite_patched(tmp: Path) -> tuple[bool, str]:
    from unlearnlab.ledger.probes import rewrite_end_to_end

    dep = _deployment(tmp)
    rid = _delete(dep, "alice", "rec-001,rec-002")
    rewrite_end_to_end(dep, rid, ["rec-099"])
    return _verify(dep)


@probe("ledger", "chain rewritten end to end, certificate deleted")
def _rewrite_deleted(tmp: Path) -> tuple[bool, str]:
    from unlearnlab.ledger.probes import rewrite_end_to_end

    dep = _deployment(tmp)
    rid = _delete(dep, "alice", "rec-001")
    rewrite_end_to_end(dep, rid, ["rec-099"]).unlink()
    return _verify(dep)


@probe("ledger", "chain rewritten end to end, certificate replaced with garbage")
def _rewrite_garbage(tmp: Path) -> tuple[bool, str]:
    from unlearnlab.ledger.probes import rewrite_end_to_end

    dep = _deployment(tmp)
    rid = _delete(dep, "alice", "rec-001")
    rewrite_end_to_end(dep, rid, ["rec-099"]).write_text("{garbage")
    return _verify(dep)


@probe("ledger", "last request truncated (entries, queue row, certificate), checked against a saved signed head")
def _truncate(tmp: Path) -> tuple[bool, str]:
    from unlearnlab.ledger.probes import truncate_last_request

    dep = _deployment(tmp)
    _delete(dep, "alice", "rec-001")
    _delete(dep, "bob", "rec-070")
    cli("ledger", "head", "-d", str(dep.root), "--out", str(tmp / "head.json"))
    truncate_last_request(dep)
    return _verify(dep, "--head", str(tmp / "head.json"))


@probe("ledger", "queued request flipped to `completed` in the queue table")
def _forged_status(tmp: Path) -> tuple[bool, str]:
    from unlearnlab.ledger.probes import force_status

    dep = _deployment(tmp)
    CliRunner().invoke(app, ["delete", "-s", "bob", "-r", "rec-070", "-d", str(dep.root), "--request-id", "q1",
                             "--queue-only"])
    force_status(dep, "q1")
    return _verify(dep)


@probe("ledger", "keys/signing.pub swapped, forged certificate re-signed (auditor pins the key)")
def _swapped_key(tmp: Path) -> tuple[bool, str]:
    from unlearnlab.ledger.probes import rewrite_end_to_end, swap_key_and_forge

    dep = _deployment(tmp)
    pinned = tmp / "pinned.pub"
    pinned.write_bytes(dep.public_key_path.read_bytes())
    rid = _delete(dep, "alice", "rec-001")
    rewrite_end_to_end(dep, rid, ["rec-099"])
    swap_key_and_forge(dep, rid)
    return _verify(dep, "--public-key", str(pinned))


@probe("ledger", "crash before the certificate file is written, then `delete` again")
def _crash_cert(tmp: Path) -> tuple[bool, str]:
    dep = _deployment(tmp)
    rid = _delete(dep, "alice", "rec-001")
    dep.certificate_path(rid).unlink()
    r = CliRunner().invoke(app, ["delete", "-s", "alice", "-r", "rec-001", "-d", str(dep.root), "--json"])
    path = Path(json.loads(r.stdout)["certificate_path"])
    return path.is_file(), f"printed {path.name}; exists: {path.is_file()}"


# -- HTTP API ------------------------------------------------------------------------------------------------------
def _client(tmp: Path, **kw):
    from fastapi.testclient import TestClient

    from unlearnlab.ledger import DeletionService
    from unlearnlab.ledger.apikeys import create_key
    from unlearnlab.web.deletions import create_app

    dep = _deployment(tmp)
    keys = {s: create_key(dep.root, s)[0] for s in ("read", "submit")}
    return TestClient(create_app(DeletionService(dep), start_worker=False, **kw)), keys


def _http(tmp: Path, fn) -> tuple[bool, str]:
    client, keys = _client(tmp)
    with client:
        code, want = fn(client, keys)
    return code in want, f"HTTP {code}"


BODY = {"request_id": "h1", "subject": "alice", "records": ["rec-001"]}


@probe("http", "POST /deletions without a key")
def _post_nokey(tmp: Path) -> tuple[bool, str]:
    return _http(tmp, lambda c, k: (c.post("/deletions", json=BODY).status_code, {401}))


@probe("http", "GET /deletions without a key")
def _get_nokey(tmp: Path) -> tuple[bool, str]:
    return _http(tmp, lambda c, k: (c.get("/deletions").status_code, {401}))


@probe("http", "POST /deletions with a read-only key")
def _post_read(tmp: Path) -> tuple[bool, str]:
    return _http(tmp, lambda c, k: (c.post("/deletions", json=BODY, headers={"Authorization": f"Bearer {k['read']}"})
                                    .status_code, {403}))


@probe("http", "a 2 MB request body")
def _big_body(tmp: Path) -> tuple[bool, str]:
    big = {**BODY, "records": ["rec-001"] * 200_000}
    return _http(tmp, lambda c, k: (c.post("/deletions", json=big, headers={"Authorization": f"Bearer {k['submit']}"})
                                    .status_code, {413}))


@probe("http", "a 5 MB subject")
def _big_subject(tmp: Path) -> tuple[bool, str]:
    return _http(tmp, lambda c, k: (c.post("/deletions", json={**BODY, "subject": "x" * 5_000_000},
                                           headers={"Authorization": f"Bearer {k['submit']}"}).status_code, {413, 422}))


@probe("http", "a 600-character subject (under the body limit)")
def _long_subject(tmp: Path) -> tuple[bool, str]:
    return _http(tmp, lambda c, k: (c.post("/deletions", json={**BODY, "subject": "x" * 600},
                                           headers={"Authorization": f"Bearer {k['submit']}"}).status_code, {422}))


@probe("http", "GET /deletions?status=bogus")
def _bad_filter(tmp: Path) -> tuple[bool, str]:
    return _http(tmp, lambda c, k: (c.get("/deletions?status=bogus", headers={"Authorization": f"Bearer {k['read']}"})
                                    .status_code, {422}))


@probe("http", "serve on 0.0.0.0 with no API key configured")
def _public_bind(tmp: Path) -> tuple[bool, str]:
    dep = _deployment(tmp)
    code, msg = cli("serve", "--deletions", "-d", str(dep.root), "--host", "0.0.0.0", "--port", "1")
    return code == 2, f"exit {code}: {msg[:110]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/security_probes.md")
    args = ap.parse_args()
    rows, t0 = [], time.perf_counter()
    for area, what, fn in PROBES:
        with tempfile.TemporaryDirectory() as d:
            try:
                blocked, detail = fn(Path(d))
            except Exception as e:  # a probe that crashes the toolkit is a finding too
                blocked, detail = False, f"crashed: {type(e).__name__}: {e}"
        rows.append((area, what, "BLOCKED" if blocked else "PASSED", detail.replace("|", "/")))
        print(f"{rows[-1][2]:<8} {area:<8} {what}: {detail}", file=sys.stderr)
    n_blocked = sum(r[2] == "BLOCKED" for r in rows)
    lines = ["# Hostile inputs tried", "", f"Produced by `python benchmarks/security_probe.py --out {args.out}` in "
             f"{time.perf_counter() - t0:.0f} s: {n_blocked} of {len(rows)} blocked. See docs/security.md for the "
             "threat model.", "", "| area | hostile input | outcome | what the toolkit said |", "|---|---|---|---|"]
    lines += [f"| {a} | {w} | {o} | {d} |" for a, w, o, d in rows]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {n_blocked}/{len(rows)} blocked")
    sys.exit(0 if n_blocked == len(rows) else 1)


if __name__ == "__main__":
    main()
