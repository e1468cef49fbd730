"""CLI commands `delete`, `ledger init|list|show|verify|verify-cert` and `serve` through typer's CliRunner."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from unlearnlab.cli.ledger import register
from unlearnlab.ledger.db import ledger_entries


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    register(a)
    return a


def run(app, *args):
    return CliRunner().invoke(app, list(args))


def test_delete_list_show_verify(app, deployment, tmp_path):
    d = str(deployment.root)
    rec_file = tmp_path / "ids.txt"
    rec_file.write_text("rec-004\nrec-005, rec-006\n")
    r = run(app, "delete", "--subject", "alice", "--records", f"@{rec_file}", "--deployment", d, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "completed" and out["records"] == ["rec-004", "rec-005", "rec-006"]
    rid, cert = out["request_id"], out["certificate_path"]
    again = run(app, "delete", "-s", "alice", "-r", "rec-006,rec-005,rec-004", "-d", d, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["request_id"] == rid  # derived id: idempotent
    r = run(app, "delete", "-s", "bob", "-r", "rec-007", "-d", d, "--request-id", "q1", "--queue-only")
    assert r.exit_code == 0 and "q1: queued" in r.stdout
    rows = json.loads(run(app, "ledger", "list", "-d", d, "--json").stdout)
    assert {x["request_id"]: x["status"] for x in rows} == {rid: "completed", "q1": "queued"}
    shown = json.loads(run(app, "ledger", "show", rid, "-d", d, "--json").stdout)
    assert [e["status"] for e in shown["entries"]] == ["received", "processing", "completed"]
    assert run(app, "ledger", "list", "-d", d, "--overdue").stdout.strip() == "no requests"
    v = run(app, "ledger", "verify", "-d", d, "--json")
    assert v.exit_code == 0 and json.loads(v.stdout)["ok"]
    ok = run(app, "ledger", "verify-cert", cert, "-d", d)
    assert ok.exit_code == 0 and "authentic" in ok.stdout
    with deployment.engine.begin() as conn:  # tamper: edit an entry's content
        conn.execute(ledger_entries.update().where(ledger_entries.c.seq == 2).values(body='{"forged":1}'))
    bad = run(app, "ledger", "verify", "-d", d, "--json")
    assert bad.exit_code == 1 and json.loads(bad.stdout)["bad_seq"] == 2


def test_verify_cert_failures_and_usage_errors(app, deployment, tmp_path):
    d = str(deployment.root)
    out = json.loads(run(app, "delete", "-s", "dave", "-d", d, "--json").stdout)
    doc = json.loads(Path(out["certificate_path"]).read_text())
    doc["certificate"]["records"] = ["rec-999"]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    r = run(app, "ledger", "verify-cert", str(forged), "--public-key", str(deployment.public_key_path), "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["ok"] is False
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    assert run(app, "ledger", "verify-cert", str(junk), "-d", d).exit_code == 2
    r = run(app, "delete", "-s", "bob", "-r", "nope", "-d", d)
    assert r.exit_code == 2 and "not in the deployment's training records" in r.stderr
    assert run(app, "delete", "-s", "erin", "-d", d).exit_code == 2  # subject with no records
    assert run(app, "ledger", "show", "missing", "-d", d).exit_code == 2
    assert run(app, "ledger", "list", "-d", str(tmp_path / "none")).exit_code == 2
    assert run(app, "delete", "--records", "a").exit_code == 2  # --subject missing
    assert run(app, "serve").exit_code == 2  # nothing to serve without --deletions


def test_every_command_has_an_example(app):
    for args in (["delete"], ["serve"], ["ledger", "init"], ["ledger", "list"], ["ledger", "show"],
                 ["ledger", "verify"], ["ledger", "verify-cert"], ["ledger", "head"], ["ledger", "keys", "create"],
                 ["ledger", "keys", "list"], ["ledger", "keys", "revoke"]):
        r = run(app, *args, "--help")
        assert r.exit_code == 0 and "Example: unlearnlab" in r.stdout, args


def test_init_creates_a_digits_deployment(app, tmp_path):
    r = run(app, "ledger", "init", "-d", str(tmp_path / "dep"), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["records"] > 1000 and info["scheme"] == "analytic_head"
    assert run(app, "ledger", "init", "-d", str(tmp_path / "dep")).exit_code == 2  # never overwrites


@pytest.mark.parametrize("attack", ["patched", "deleted", "garbage", "forged-status", "swapped-key"])
def test_verify_catches_rewrites_forgeries_and_swapped_keys(app, deployment, tmp_path, attack):
    from unlearnlab.ledger.probes import force_status, rewrite_end_to_end, swap_key_and_forge

    d = str(deployment.root)
    out = json.loads(run(app, "delete", "-s", "alice", "-r", "rec-010,rec-011", "-d", d, "--json").stdout)
    rid = out["request_id"]
    pinned = tmp_path / "pinned.pub"  # the auditor's copy of the key, kept outside the deployment
    pinned.write_bytes(deployment.public_key_path.read_bytes())
    ok = run(app, "ledger", "verify", "-d", d, "--public-key", str(pinned), "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["pinned"] is True
    path = rewrite_end_to_end(deployment, rid, ["rec-099"]) if attack != "forged-status" else None
    if attack == "deleted":  # recovery restores the certificate from the queue: its anchor no longer matches
        path.unlink()
    elif attack == "garbage":
        path.write_text("{not json")
    elif attack == "forged-status":  # a queued request flipped to completed, with no chain entry or certificate
        run(app, "delete", "-s", "bob", "-r", "rec-020", "-d", d, "--request-id", "q9", "--queue-only")
        force_status(deployment, "q9")
    elif attack == "swapped-key":  # attacker re-signs a forged certificate and swaps keys/signing.pub
        swap_key_and_forge(deployment, rid)
    r = run(app, "ledger", "verify", "-d", d, "--public-key", str(pinned), "--json")
    assert r.exit_code == 1, r.output
    rep = json.loads(r.stdout)
    assert rep["ok"] is False
    if attack == "deleted":
        assert "differs from the hash recorded in its certificate" in rep["reason"] and rep["bad_seq"] is not None
    else:
        assert ("q9" if attack == "forged-status" else rid) in rep["reason"]
    if attack == "swapped-key":  # without pinning the swapped key vouches for the forgery; the output says so
        unpinned = run(app, "ledger", "verify", "-d", d)
        assert "trusting the key beside the data" in unpinned.output


def test_commands_recover_a_certificate_a_crash_left_unwritten(app, deployment):
    """The state a crash leaves between the queue's commit and the certificate file: any command recovers first, so
    the certificate path `delete` prints exists and `ledger verify` passes."""
    d = str(deployment.root)
    first = run(app, "delete", "-s", "alice", "-r", "rec-012", "-d", d, "--json")
    assert first.exit_code == 0, first.output
    path = Path(json.loads(first.stdout)["certificate_path"])
    path.unlink()  # as if the process died before writing it
    again = json.loads(run(app, "delete", "-s", "alice", "-r", "rec-012", "-d", d, "--json").stdout)
    assert again["certificate_path"] == str(path) and path.is_file()
    path.unlink()
    assert run(app, "ledger", "list", "-d", d).exit_code == 0 and path.is_file()
    assert run(app, "ledger", "verify", "-d", d).exit_code == 0


@pytest.mark.parametrize("attack", ["truncate", "rewrite-tail", "forged-head"])
def test_signed_head_detects_tail_truncation_and_rewrite(app, deployment, tmp_path, attack):
    from unlearnlab.ledger.chain import canonical_json, entry_hash
    from unlearnlab.ledger.probes import truncate_last_request

    d = str(deployment.root)
    for recs in ("rec-040", "rec-041"):
        assert run(app, "delete", "-s", "alice", "-r", recs, "-d", d).exit_code == 0
    assert (Path(d) / "heads" / "latest.json").is_file()  # signed after every batch
    saved = tmp_path / "head.json"  # the auditor keeps it outside the deployment
    h = run(app, "ledger", "head", "-d", d, "--out", str(saved))
    assert h.exit_code == 0 and "head: entry" in h.stdout
    assert run(app, "ledger", "verify", "-d", d, "--head", str(saved)).exit_code == 0
    if attack == "truncate":  # drop the last request: entries, queue row and certificate
        truncate_last_request(deployment)
    elif attack == "rewrite-tail":  # re-hash a changed last entry so that it still links
        with deployment.engine.begin() as conn:
            last = conn.execute(ledger_entries.select().order_by(ledger_entries.c.seq.desc()).limit(1)).first()
            body = json.loads(last.body)
            body["note"] = "rewritten"
            text = canonical_json(body)
            conn.execute(ledger_entries.update().where(ledger_entries.c.seq == last.seq)
                         .values(body=text, hash=entry_hash(last.prev_hash, text)))
    if attack == "forged-head":
        doc = json.loads(saved.read_text())
        doc["certificate"]["seq"] += 5
        saved.write_text(json.dumps(doc))
    r = run(app, "ledger", "verify", "-d", d, "--head", str(saved), "--json")
    assert r.exit_code == 1, r.output
    reason = json.loads(r.stdout)["reason"]
    assert ("not authentic" in reason) if attack == "forged-head" else ("signed head" in reason)
