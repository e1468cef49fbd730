"""Results store: record round trip, resume lookup, filters, export, artifacts, model cache, clear errors."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sqlite3

import pytest
import torch

import unlearnlab.artifacts as artifacts_mod
import unlearnlab.store as store_mod
from unlearnlab.errors import CheckpointError, ConfigError, StoreError
from unlearnlab.store import SCHEMA_VERSION, Store, StoreWarning, spec_key


def make_record(dataset="digits", method="ga", seed=0, **metrics) -> dict:
    """A run record shaped like the ones api.run() writes."""
    return {
        "spec": {"dataset": dataset, "forget": "random:10%", "model": "mlp", "method": method,
                 "config": {"lr": 1e-3, "epochs": 2}, "seed": seed},
        "metrics": {"ua": 0.25, "ra": 0.99, **metrics},
        "timings": {"wall_s": 1.5, "cpu_s": 2.25},
        "memory": {"peak_rss_mb": 312.0},
        "env": {"torch": torch.__version__, "device": "cpu", "git_sha": None},
    }


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "res") as s:
        yield s


def test_record_round_trips_exactly(store):
    rec = make_record(nan=float("nan"), inf=float("inf"), ninf=float("-inf"), negzero=-0.0,
                      tiny=5e-324, third=1 / 3, big=2**63 + 1, text="ü ✓", flag=True, none=None,
                      per_class=[0.1, 0.2, float("nan")], nested={"a": {"b": [1, 2.5]}})
    rid = store.add_run(rec)
    got = store.get_run(rid)
    assert len(rid) == 12 and got["id"] == rid and got["spec_key"] == spec_key(rec["spec"])
    assert got["schema_version"] == SCHEMA_VERSION and got["status"] == "completed"
    assert got["created"].endswith("+00:00")
    m = got["metrics"]
    assert math.isnan(m["nan"]) and m["inf"] == math.inf and m["ninf"] == -math.inf
    assert math.copysign(1.0, m["negzero"]) == -1.0 and m["tiny"] == 5e-324 and m["third"] == 1 / 3
    assert m["big"] == 2**63 + 1 and m["text"] == "ü ✓" and m["flag"] is True and m["none"] is None
    assert math.isnan(m["per_class"][2]) and m["per_class"][:2] == [0.1, 0.2]
    for k in ("spec", "timings", "memory", "env"):
        assert got[k] == rec[k]
    assert "id" not in rec  # the caller's dict is not mutated
    # a second Store on the same directory (another process would do the same) reads the same record
    assert json.dumps(Store(store.root).get_run(rid)) == json.dumps(got)


def test_numpy_tuples_paths_are_normalised_and_bad_values_refused(store, tmp_path):
    import numpy as np

    rid = store.add_run({"spec": {"shape": (1, 8, 8), "file": tmp_path / "ids.txt"},
                         "metrics": {"acc": np.float32(0.5), "n": np.int64(3), "v": np.arange(3)}})
    got = store.get_run(rid)
    assert got["spec"] == {"shape": [1, 8, 8], "file": str(tmp_path / "ids.txt")}
    assert got["metrics"] == {"acc": 0.5, "n": 3, "v": [0, 1, 2]}
    with pytest.raises(StoreError, match=r"record\.metrics\.obj .*type object"):
        store.add_run({"spec": {}, "metrics": {"obj": object()}})
    with pytest.raises(StoreError, match="non-string key 3"):
        store.add_run({"spec": {}, "metrics": {3: 0.1}})
    with pytest.raises(StoreError, match="'spec' dict"):
        store.add_run({"metrics": {}})
    assert store.count_runs() == 1


def test_spec_key_is_canonical():
    a = {"method": "ga", "config": {"lr": 0.1, "epochs": 2}, "seed": 0}
    b = {"seed": 0, "config": {"epochs": 2, "lr": 0.1}, "method": "ga"}
    canon = json.dumps(a, sort_keys=True, separators=(",", ":"))
    assert spec_key(a) == spec_key(b) == hashlib.sha256(canon.encode()).hexdigest()[:20]
    assert spec_key(a) != spec_key({**a, "seed": 1})


def test_find_run_lets_a_sweep_resume(store):
    done = [store.add_run(make_record(method=m, seed=s)) for m in ("ga", "ft") for s in (0, 1)]
    todo = [make_record(method=m, seed=s)["spec"] for m in ("ga", "ft", "rl") for s in (0, 1)]
    found = [store.find_run(spec) for spec in todo]
    assert found[:4] == done and found[4:] == [None, None]
    # a failed/partial status is not a completed run
    store.add_run({**make_record(method="rl", seed=0), "status": "failed"})
    assert store.find_run(todo[4]) is None
    # the newest completed run wins when a spec was run twice
    again = store.add_run(make_record(method="ga", seed=0))
    assert store.find_run(todo[0]) == again


def test_list_runs_filters_order_and_limit(store):
    ids = [store.add_run(make_record(dataset=d, method=m)) for d in ("digits", "cifar10") for m in ("ga", "ft")]
    dict_ds = store.add_run({"spec": {"dataset": {"name": "digits", "path": None}, "method": "ga"}})
    assert [r["id"] for r in store.list_runs()] == [dict_ds, *ids[::-1]]
    assert {r["id"] for r in store.list_runs(dataset="digits")} == {ids[0], ids[1], dict_ds}
    assert [r["id"] for r in store.list_runs(dataset="cifar10", method="ft")] == [ids[3]]
    assert {r["id"] for r in store.list_runs(method="ga")} == {ids[0], ids[2], dict_ds}
    assert store.list_runs(method="salun") == []
    assert [r["id"] for r in store.list_runs(limit=2)] == [dict_ds, ids[3]]
    for bad in (0, -1, "3", True):
        with pytest.raises(ConfigError, match="limit must be a positive integer"):
            store.list_runs(limit=bad)


def test_method_seconds_is_the_median_per_method_on_a_dataset(store):
    for t, m, d in ((1.0, "ga", "digits"), (9.0, "ga", "digits"), (5.0, "ga", "digits"), (7.0, "ft", "digits"),
                    (100.0, "ga", "cifar10")):
        store.add_run({**make_record(dataset=d, method=m), "timings": {"wall_s": t}})
    store.add_run({**make_record(method="ft"), "timings": {}})  # untimed: not counted
    assert store.method_seconds("digits") == {"ga": 5.0, "ft": 7.0}
    assert store.method_seconds({"name": "digits", "path": None}) == {"ga": 5.0, "ft": 7.0}  # a spec's dataset
    assert store.method_seconds("cifar10") == {"ga": 100.0} and store.method_seconds("none") == {}
    for t in (6.0, 6.0, 6.0):  # trials that reused a cached Fisher: their time leaves out the method's own cost
        store.add_run({**make_record(dataset="cifar10", method="fisher_forgetting"), "timings": {"wall_s": t},
                       "method_info": {"fisher_reused": True}})
    store.add_run({**make_record(dataset="cifar10", method="fisher_forgetting"), "timings": {"wall_s": 500.0},
                   "method_info": {"fisher_reused": False}})
    assert store.method_seconds("cifar10")["fisher_forgetting"] == 500.0


def test_get_run_prefixes_and_did_you_mean(store):
    ids = [store.add_run(make_record(seed=i)) for i in range(20)]  # 20 ids over 16 first digits: a shared prefix
    rid = ids[0]
    assert store.get_run(rid[:8])["id"] == rid
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(StoreError, match=f"prefix '{shared}' is ambiguous"):
        store.get_run(shared)
    typo = rid[:-1] + ("0" if rid[-1] != "0" else "1")
    with pytest.raises(StoreError, match=f"No run '{typo}'.*Did you mean {rid}"):
        store.get_run(typo)
    with pytest.raises(StoreError, match="not a run id"):
        store.get_run("xyz!")
    assert store.get_run(f" {rid[:8].upper()}\n")["id"] == rid


def test_delete_run(store):
    a, b = store.add_run(make_record(seed=0)), store.add_run(make_record(seed=1))
    store.delete_run(a[:6])
    assert [r["id"] for r in store.list_runs()] == [b]
    assert store.find_run(make_record(seed=0)["spec"]) is None
    with pytest.raises(StoreError, match="No run"):
        store.delete_run(a)


def test_export_csv_and_json_parse_back(store, tmp_path):
    ids = [store.add_run(make_record(method=m, ua_nan=float("nan"), per_class=[1, 2])) for m in ("ga", "ft")]
    store.add_run(make_record(method="rl"))
    # JSON to a path: atomic (no temp file left), parsed back equal to get_run
    out = tmp_path / "runs.json"
    assert store.export(None, "json", out) == 3
    back = json.loads(out.read_text())
    assert [r["id"] for r in back] == [*ids, store.list_runs(limit=1)[0]["id"]]  # oldest first
    assert json.dumps(back[0]) == json.dumps(store.get_run(ids[0]))
    assert math.isnan(back[0]["metrics"]["ua_nan"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res", "runs.json"]
    # CSV to a stream: one row per run, flattened columns
    buf = io.StringIO()
    assert store.export([i[:7] for i in ids], "csv", buf) == 2
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["id"] for r in rows] == ids
    assert {"spec.method", "spec.config.lr", "metrics.ua", "timings.wall_s", "memory.peak_rss_mb",
            "env.device"} <= set(rows[0])
    assert list(rows[0])[:3] == ["id", "created", "spec_key"]
    assert rows[1]["spec.method"] == "ft" and float(rows[0]["spec.config.lr"]) == 1e-3
    assert float(rows[0]["timings.cpu_s"]) == 2.25 and math.isnan(float(rows[0]["metrics.ua_nan"]))
    assert json.loads(rows[0]["metrics.per_class"]) == [1, 2] and rows[0]["env.git_sha"] == ""
    with pytest.raises(ConfigError, match="'csv' or 'json'"):
        store.export(None, "xlsx", buf)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="does not exist"):
        store.export(None, "csv", tmp_path / "nodir" / "x.csv")


def test_interrupted_add_run_rolls_back(store, monkeypatch):
    store.add_run(make_record(seed=0))

    def interrupt(stage):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod, "_crash_point", interrupt)
    with pytest.raises(KeyboardInterrupt):
        store.add_run(make_record(seed=1))
    monkeypatch.setattr(store_mod, "_crash_point", lambda stage: None)
    assert store.count_runs() == 1 and not store.conn.in_transaction
    store.add_run(make_record(seed=2))
    assert store.count_runs() == 2


def test_artifacts_content_addressed(store, tmp_path, monkeypatch):
    data = os.urandom(3 * 2**20 + 17)  # several chunks
    d = store.put_bytes(data)
    assert d == hashlib.sha256(data).hexdigest()
    p = store.artifact_path(d)
    assert p.read_bytes() == data and p.parent.name == d[:2] and p.parent.parent == store.root / "artifacts"
    assert store.put_bytes(data) == d and store.verify_artifact(d)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    assert store.put_file(src) == d
    assert list((store.root / "tmp").iterdir()) == []
    with pytest.raises(StoreError, match="not an artifact id"):
        store.artifact_path("abc")
    with pytest.raises(StoreError, match="is not in"):
        store.artifact_path("0" * 64)
    with pytest.raises(StoreError, match="no such file"):
        store.put_file(tmp_path / "missing.bin")

    def interrupt(stage):
        if stage == "artifact-chunk":
            raise KeyboardInterrupt

    monkeypatch.setattr(artifacts_mod, "_crash_point", interrupt)
    other = b"x" * (2 * 2**20)
    with pytest.raises(KeyboardInterrupt):
        store.put_bytes(other)
    with pytest.raises(StoreError):
        store.artifact_path(hashlib.sha256(other).hexdigest())
    assert list((store.root / "tmp").iterdir()) == []


def test_stale_tmp_files_cleaned_on_open(store):
    dead = store.root / "tmp" / "999999999-deadbeef.tmp"  # above any pid_max: its writer is gone
    live = store.root / "tmp" / f"{os.getpid()}-cafe.tmp"  # a live writer's file is kept
    foreign = store.root / "tmp" / "notes.txt"
    for f in (dead, live, foreign):
        f.write_bytes(b"partial")
    Store(store.root)
    assert not dead.exists() and live.exists() and foreign.exists()
    os.utime(live, (0, 0))  # a day-old temp file is removed even if the pid is alive
    assert store.clean_tmp() == 1 and not live.exists()


def _mlp(seed):
    from unlearnlab.models import build_model

    return build_model("mlp", (1, 8, 8), 4, seed=seed)


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_model_cache_round_trip(store):
    src, dst = _mlp(0), _mlp(1)
    assert not _same(src, dst)
    assert store.load_model("orig/digits/abc/mlp/0", dst) is None
    meta = {"arch": "mlp", "seed": 0, "train_s": 1.25, "recipe": {"lr": 0.05}}
    store.save_model("orig/digits/abc/mlp/0", src, meta)
    assert store.load_model("orig/digits/abc/mlp/0", dst) == meta
    assert _same(src, dst)
    # same weights under another key share one artifact; a re-save overwrites the entry
    store.save_model("other", src, {})
    assert len(list((store.root / "artifacts").rglob("*"))) == 2  # one <aa> dir + one blob
    store.save_model("other", _mlp(2), {"v": 2})
    assert store.load_model("other", dst) == {"v": 2} and _same(dst, _mlp(2))
    # a cached entry of another architecture is a caller error, and leaves the model untouched
    from unlearnlab.models import build_model

    three = build_model("mlp", (1, 8, 8), 3, seed=5)
    before = {k: v.clone() for k, v in three.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit"):
        store.load_model("orig/digits/abc/mlp/0", three)
    assert all(torch.equal(before[k], v) for k, v in three.state_dict().items())


def test_corrupt_cached_model_is_treated_as_missing(store):
    src = _mlp(0)
    store.save_model("k", src, {"a": 1})
    blob = next(p for p in (store.root / "artifacts").rglob("*") if p.is_file())
    raw = bytearray(blob.read_bytes())
    raw[-5] ^= 0xFF  # flip a bit inside the tensor data
    blob.write_bytes(bytes(raw))
    dst = _mlp(1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.warns(StoreWarning, match="corrupt"):
        assert store.load_model("k", dst) is None
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())
    assert not blob.exists() and list((store.root / "models").rglob("*.json")) == []
    store.save_model("k", src, {"a": 1})  # rebuilt
    assert store.load_model("k", dst) == {"a": 1} and _same(src, dst)
    index = next((store.root / "models").rglob("*.json"))
    index.write_text(index.read_text()[:10])  # truncated index
    with pytest.warns(StoreWarning, match="corrupt"):
        assert store.load_model("k", dst) is None
    assert not index.exists()


def test_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNLAB_HOME", str(tmp_path / "home"))
    s = Store()
    assert s.root == (tmp_path / "home").resolve() and (s.root / "runs.sqlite").is_file()
    monkeypatch.delenv("UNLEARNLAB_HOME")
    monkeypatch.chdir(tmp_path)
    assert Store().root == (tmp_path / "results").resolve()


def test_clear_errors_for_bad_directories_and_files(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(StoreError, match=f"Cannot write to the results directory {blocker}/res.*--results"):
        Store(blocker / "res")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=f"{bad / 'runs.sqlite'} cannot be read.*Move it away"):
        Store(bad)
    newer = tmp_path / "newer"
    Store(newer).close()
    with sqlite3.connect(newer / "runs.sqlite") as c:
        c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*newer unlearnlab"):
        Store(newer)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "runs.sqlite") as c:
        c.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(StoreError, match="another program \\(tables: users\\), not an unlearnlab store"):
        Store(foreign)


def test_writer_lock_held_too_long_is_a_clear_error(store, monkeypatch):
    monkeypatch.setattr(store_mod, "_BUSY_MS", 50)
    s = Store(store.root)  # connects with a 50 ms busy timeout
    holder = sqlite3.connect(store.db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert s.list_runs() == []  # readers are not blocked by a writer (WAL)
        with pytest.raises(StoreError, match="Cannot access .*wait and retry"):
            s.add_run(make_record())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not s.conn.in_transaction and s.add_run(make_record())


def test_store_pickles_by_root(store):
    import pickle

    rid = store.add_run(make_record())
    copy = pickle.loads(pickle.dumps(store))
    assert copy.root == store.root and copy.get_run(rid)["id"] == rid and copy.conn is not store.conn


def test_store_is_safe_across_threads(store):
    import threading

    errors: list[BaseException] = []

    def writer(m):
        try:
            for s in range(25):
                store.add_run(make_record(method=m, seed=s))
        except Exception as e:  # noqa: BLE001 - re-raised in the main thread via `errors`
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(m,)) for m in ("ga", "ft")]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        assert all(r["metrics"]["ua"] == 0.25 for r in store.list_runs())
    assert errors == [] and store.count_runs() == 50
    assert len(store.list_runs(method="ft")) == 25
