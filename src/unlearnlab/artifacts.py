"""Content-addressed artifacts and the model cache: every file appears whole or not at all.

Layout under a store root:
    artifacts/<aa>/<sha256>     immutable blobs, named by the SHA-256 of their bytes
    models/<kk>/<keyhash>.json  model-cache index: {"key", "artifact", "meta"} (weights are an artifact)
    tmp/<pid>-<random>.tmp      files being written; renamed into place only when complete

Writers put bytes into tmp/ (same filesystem as artifacts/, so the final os.replace is atomic), fsync,
then rename. A writer killed half-way leaves only a tmp file, which the next `ArtifactStore` open
removes once its writer process is gone (or the file is a day old).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import CheckpointError, StoreError

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TMP = re.compile(r"(\d+)-[0-9a-z_]+\.tmp")
_CHUNK = 1 << 20
_STALE_S = 24 * 3600


class StoreWarning(UserWarning):
    """A store entry was unusable (e.g. a corrupt cached model) and has been discarded."""


def _crash_point(stage: str) -> None:
    """No-op marker between write steps; crash-safety tests replace it to pause or kill a writer."""


def jsonable(obj: Any, where: str = "record") -> Any:
    """A plain-JSON copy of `obj` (numpy/torch scalars and arrays -> Python, tuples -> lists, paths -> str).

    Raises StoreError naming the offending field for anything that would not round-trip exactly.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise StoreError(f"{where} has a non-string key {k!r}; JSON keys must be strings "
                                 "(convert it with str() before storing).")
            out[k] = jsonable(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return jsonable(obj.tolist(), where)
    raise StoreError(f"{where} has a value of type {type(obj).__name__} ({obj!r:.60}), which cannot be "
                     "stored as JSON; convert it to a number, string, list or dict first.")


def dumps(obj: Any) -> str:
    """Compact JSON; non-finite floats are written as NaN / Infinity / -Infinity so they round-trip."""
    return json.dumps(obj, allow_nan=True, separators=(",", ":"), ensure_ascii=False)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (flock on `path`), released on exit or when the holder dies."""
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ArtifactStore:
    """Content-addressed blobs and a keyed model cache under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        try:
            for sub in ("artifacts", "models", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            probe = self.root / "tmp" / f"{os.getpid()}-probe.tmp"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"Cannot write to the results directory {self.root} ({e.strerror or e}). "
                             "Choose a writable directory with --results DIR or $UNLEARNLAB_HOME.") from None
        self.clean_tmp()

    # -- temp files -------------------------------------------------------------------------------
    def clean_tmp(self, max_age_s: float = _STALE_S) -> int:
        """Remove leftovers of interrupted writes (writer process gone, or older than `max_age_s`)."""
        removed, now = 0, time.time()
        for entry in os.scandir(self.root / "tmp"):
            m = _TMP.fullmatch(entry.name)
            if not m:
                continue
            try:
                stale = now - entry.stat().st_mtime > max_age_s
                if stale or not _pid_alive(int(m.group(1))):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _tmp_path(self) -> Path:
        return self.root / "tmp" / f"{os.getpid()}-{os.urandom(8).hex()}.tmp"

    def _write_tmp(self, fill: Callable[[IO[bytes]], str]) -> tuple[Path, str]:
        """Create a tmp file, let `fill` write it (returning a digest), fsync; remove it on any failure."""
        path = self._tmp_path()
        try:
            with open(path, "xb") as f:
                digest = fill(f)
                f.flush()
                os.fsync(f.fileno())
            _crash_point("tmp-written")
            return path, digest
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _publish(self, tmp: Path, dest: Path) -> None:
        """Atomically move a complete tmp file to `dest` (its directory is created and synced)."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)

    # -- artifacts --------------------------------------------------------------------------------
    def _blob(self, digest: str) -> Path:
        return self.root / "artifacts" / digest[:2] / digest

    def _adopt(self, tmp: Path, digest: str) -> str:
        """Make the complete tmp file the artifact `digest` (dropped if that artifact already exists)."""
        dest = self._blob(digest)
        if dest.is_file() and dest.stat().st_size == tmp.stat().st_size:
            tmp.unlink(missing_ok=True)  # already stored: content addressing deduplicates
        else:
            self._publish(tmp, dest)
        return digest

    def _put_stream(self, write_chunks: Callable[[Callable[[bytes], None]], None]) -> str:
        def fill(f: IO[bytes]) -> str:
            h = hashlib.sha256()

            def emit(chunk: bytes) -> None:
                h.update(chunk)
                f.write(chunk)
                _crash_point("artifact-chunk")

            write_chunks(emit)
            return h.hexdigest()

        try:
            return self._adopt(*self._write_tmp(fill))
        except OSError as e:
            raise StoreError(f"Cannot write an artifact under {self.root} ({e}). "
                             "Check free disk space and permissions.") from None

    def put_bytes(self, data: bytes) -> str:
        """Store `data` (if not already stored) and return its SHA-256 hex digest."""
        view = memoryview(data)

        def chunks(emit: Callable[[bytes], None]) -> None:
            for i in range(0, len(view), _CHUNK):
                emit(view[i:i + _CHUNK])

        return self._put_stream(chunks)

    def put_file(self, path: str | os.PathLike) -> str:
        """Copy the file at `path` into the store (streamed) and return its SHA-256 hex digest."""
        src = Path(path)
        if not src.is_file():
            raise StoreError(f"Cannot store {src}: no such file.")

        return self._put_stream(lambda emit: _stream_file(src, emit))

    def artifact_path(self, digest: str) -> Path:
        """Path of the stored artifact `digest`; StoreError if it is not in this store."""
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise StoreError(f"{digest!r} is not an artifact id; expected 64 lowercase hex characters (a SHA-256).")
        p = self._blob(digest)
        if not p.is_file():
            raise StoreError(f"Artifact {digest} is not in {self.root / 'artifacts'}; it was never stored here "
                             "or has been deleted. Check the results directory (--results / $UNLEARNLAB_HOME).")
        return p

    def verify_artifact(self, digest: str) -> bool:
        """True when the stored bytes of `digest` still hash to `digest`."""
        h = hashlib.sha256()
        with open(self.artifact_path(digest), "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
        return h.hexdigest() == digest

    # -- model cache ------------------------------------------------------------------------------
    def _index(self, key: str) -> Path:
        kh = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / "models" / kh[:2] / f"{kh}.json"

    def save_model(self, key: str, model: Any, meta: dict) -> None:
        """Cache `model`'s state under `key`: safetensors weights as an artifact, then the index (atomic)."""
        from safetensors.torch import save_file

        meta = jsonable(meta, "meta")
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tmp = self._tmp_path()
        try:
            save_file(state, str(tmp))
            h = hashlib.sha256()
            with open(tmp, "rb+") as f:
                while block := f.read(_CHUNK):
                    h.update(block)
                os.fsync(f.fileno())
            _crash_point("model-weights-written")
            digest = self._adopt(tmp, h.hexdigest())
            body = dumps({"key": key, "artifact": digest, "meta": meta}).encode()
            index_tmp, _ = self._write_tmp(lambda f: _write_all(f, body))
            self._publish(index_tmp, self._index(key))
        except OSError as e:
            raise StoreError(f"Cannot cache model {key!r} under {self.root / 'models'} ({e}). "
                             "Check free disk space and permissions.") from None
        finally:
            tmp.unlink(missing_ok=True)

    def load_model(self, key: str, model: Any) -> dict | None:
        """Fill `model` from the cache entry `key` and return its meta; None if absent or corrupt (then removed)."""
        index = self._index(key)
        if not index.is_file():
            return None
        try:
            entry = json.loads(index.read_text())
            digest, meta = entry["artifact"], entry["meta"]
            if entry.get("key") != key:
                raise ValueError(f"index holds key {entry.get('key')!r}")
            if not self.verify_artifact(digest):
                self._blob(digest).unlink(missing_ok=True)
                raise ValueError(f"weights {digest[:12]}... do not match their checksum")
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                state = load_file(str(self._blob(digest)))
            except SafetensorError as e:
                raise ValueError(f"unreadable safetensors file: {e}") from None
        except (ValueError, KeyError, TypeError, OSError, StoreError) as e:
            warnings.warn(f"Cached model {key!r} ({index}) is corrupt ({e}); removed it, it will be rebuilt.",
                          StoreWarning, stacklevel=2)
            index.unlink(missing_ok=True)
            return None
        _load_exact(model, state, key)
        return meta


def write_text_atomic(dest: Path, text: str) -> None:
    """Write `text` to `dest` atomically (temporary file beside it, fsync, rename); StoreError on failure."""
    dest = dest.expanduser().resolve()
    if not dest.parent.is_dir():
        raise StoreError(f"Cannot export to {dest}: directory {dest.parent} does not exist.")
    tmp = dest.parent / f".{dest.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        raise StoreError(f"Cannot write the export file {dest} ({e}).") from None
    finally:
        tmp.unlink(missing_ok=True)


def _write_all(f: IO[bytes], body: bytes) -> str:
    f.write(body)
    return ""


def _stream_file(path: Path, emit: Callable[[bytes], None]) -> None:
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            emit(block)


def _load_exact(model: Any, state: dict, key: str) -> None:
    """Load `state` into `model` only if every name and shape matches (no half-filled model)."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or bad:
        what = "; ".join(f"{n}: {', '.join(v[:3])}" for n, v in
                         (("missing", missing), ("unexpected", extra), ("shape differs", bad)) if v)
        raise CheckpointError(f"Cached model {key!r} does not fit the given model ({what}). "
                              "The cache key must include the architecture; pass a matching model.")
    model.load_state_dict(state, strict=True)


__all__ = ["ArtifactStore", "StoreWarning", "dumps", "jsonable"]
