"""Hash-chained ledger: appends link, and verify() names the edited, reordered or removed entry (both backends)."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from unlearnlab.ledger.chain import GENESIS, Ledger, canonical_json, entry_hash, to_jsonable
from unlearnlab.ledger.db import ledger_entries, make_engine, one_month_after, parse_iso


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    """A ledger with five entries on SQLite, then on PostgreSQL."""
    url = str(tmp_path / "l.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    led = Ledger(make_engine(url))
    with led.engine.begin() as conn:
        led.append(conn, [(f"r{i}", "received", {"n": i, "x": 0.5 * i}) for i in range(1, 4)])
    led.append_now([("r1", "completed", {"evidence": {"deleted": ["a"]}}), ("r2", "completed", {})])
    yield led
    led.engine.dispose()


def _raw(led: Ledger, stmt) -> None:
    with led.engine.begin() as conn:
        conn.execute(stmt)


def test_chain_links_and_verifies(ledger):
    entries = ledger.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    for prev, e in zip([GENESIS] + [x.hash for x in entries[:-1]], entries, strict=True):
        assert e.prev_hash == prev
        assert e.hash == entry_hash(prev, canonical_json(e.body))  # hash covers canonical JSON + previous hash
    assert ledger.entries(request_id="r1")[1].body["evidence"] == {"deleted": ["a"]}
    assert ledger.count() == 5 and ledger.count("completed") == 2
    rep = ledger.verify()
    assert rep.ok and rep.entries == 5 and rep.head == entries[-1].hash


def test_ledger_has_no_update_or_delete_api():
    public = {n for n in dir(Ledger) if not n.startswith("_")}
    assert public == {"append", "append_now", "entries", "count", "head", "verify"}  # reads and appends only


def test_edited_entry_is_reported(ledger):
    row = ledger.entries()[2]
    body = dict(row.body, x=99.0)
    _raw(ledger, ledger_entries.update().where(ledger_entries.c.seq == 3).values(body=canonical_json(body)))
    rep = ledger.verify()
    assert not rep.ok and rep.bad_seq == 3 and "edited" in rep.reason


def test_edit_with_recomputed_hash_breaks_the_next_link(ledger):
    e = ledger.entries()[1]
    body = canonical_json(dict(e.body, n=42))
    _raw(ledger, ledger_entries.update().where(ledger_entries.c.seq == 2).values(
        body=body, hash=entry_hash(e.prev_hash, body)))
    rep = ledger.verify()
    assert not rep.ok and rep.bad_seq == 3 and "does not link" in rep.reason


def test_edited_column_is_reported(ledger):
    _raw(ledger, ledger_entries.update().where(ledger_entries.c.seq == 4).values(status="failed"))
    rep = ledger.verify()
    assert not rep.ok and rep.bad_seq == 4 and "columns" in rep.reason


def test_removed_entry_is_reported(ledger):
    _raw(ledger, ledger_entries.delete().where(ledger_entries.c.seq == 2))
    rep = ledger.verify()
    assert not rep.ok and rep.bad_seq == 3 and "entry 2 is missing" in rep.reason


def test_reordered_entries_are_reported(ledger):
    _raw(ledger, ledger_entries.update().where(ledger_entries.c.seq == 2).values(seq=-2))
    _raw(ledger, ledger_entries.update().where(ledger_entries.c.seq == 3).values(seq=2))
    _raw(ledger, ledger_entries.update().where(ledger_entries.c.seq == -2).values(seq=3))
    rep = ledger.verify()
    assert not rep.ok and rep.bad_seq == 2


def test_removed_tail_is_caught_by_an_external_anchor(ledger):
    last = ledger.entries()[-1]
    _raw(ledger, ledger_entries.delete().where(ledger_entries.c.seq == last.seq))
    assert ledger.verify().ok  # the chain alone cannot see a truncated tail ...
    rep = ledger.verify({last.seq: last.hash})  # ... a certificate naming the entry can
    assert not rep.ok and rep.bad_seq == 5 and "missing" in rep.reason


def test_canonical_json_is_stable_and_jsonable():
    import numpy as np

    a = canonical_json(to_jsonable({"b": np.float32(0.5), "a": (1, 2), "c": {"z": 1, "y": float("nan")}}))
    assert a == '{"a":[1,2],"b":0.5,"c":{"y":"nan","z":1}}'
    assert json.loads(a)["a"] == [1, 2]


@pytest.mark.parametrize("start,end", [("2024-01-31T10:00:00+00:00", "2024-02-29T10:00:00+00:00"),
                                       ("2023-12-15T00:00:00+00:00", "2024-01-15T00:00:00+00:00"),
                                       ("2023-03-31T08:30:00+00:00", "2023-04-30T08:30:00+00:00")])
def test_deadline_is_one_calendar_month(start, end):
    assert one_month_after(parse_iso(start)) == parse_iso(end)


def test_bad_database_url_is_a_clear_error(tmp_path):
    from unlearnlab.ledger.errors import LedgerError

    with pytest.raises(LedgerError, match="Cannot open the ledger database"):
        make_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none")
    assert isinstance(make_engine(tmp_path / "x.db"), sa.Engine)
