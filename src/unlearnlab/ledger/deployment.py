"""A deployment directory: everything the deletion service needs for one deployed model.

Layout of ``DIR``::

    deployment.json          {"format": 1, "scheme": name, "guarantee": ..., "database": null | URL,
                              "window_s": 0.5, "created_at": ...}
    records.json             every record id the model was trained on (the lineage universe)
    ledger.db                the SQLite ledger + queue (used when "database" is null)
    keys/signing.key         Ed25519 private key, PEM, mode 0600 (created on first use)
    keys/signing.pub         its public key, PEM: hand it to whoever verifies certificates
    keys/subject.key         32-byte HMAC key for subject ids, mode 0600 (created on first use)
    scheme/CURRENT           name of the live scheme state version (swapped atomically)
    scheme/<version>/state/  scheme.save() output of that version
    scheme/<version>/evidence.json   delete() evidence of the batch that produced the version
    certificates/<request>.json      signed certificates of completed requests
    service.lock             lock file: one process applies deletions at a time

With "database" set to a PostgreSQL URL the ledger and queue live there instead of ledger.db; give each
deployment its own database (the chain is one per database). Only one process applies deletions at a time
(service.lock); any number may submit requests and read status.

A batch is committed to the scheme by swapping CURRENT to the new version; older versions (which
still derive from the deleted records) are then purged and listed in the evidence.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..artifacts import file_lock
from ..exact.base import DeletionScheme, load_scheme
from .certificates import load_or_create_signing_key
from .chain import Ledger, to_jsonable
from .db import iso, make_engine, utcnow
from .errors import DeploymentError, NoLineageError
from .subjects import SubjectHasher, SubjectIndex

FORMAT = 1
CONFIG = "deployment.json"
INITIAL_VERSION = "000000-initial"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Deployment:
    """An opened deployment directory (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        cfg_path = self.root / CONFIG
        if not cfg_path.is_file():
            raise DeploymentError(
                f"{self.root} is not a deployment (no {CONFIG}). Create one with "
                "`unlearnlab ledger init --deployment DIR` or ledger.create_deployment()."
            )
        try:
            self.config: dict[str, Any] = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise DeploymentError(f"{cfg_path} is not valid JSON ({exc}); restore it from backup.") from exc
        if self.config.get("format") != FORMAT:
            raise DeploymentError(f"{cfg_path} has format {self.config.get('format')!r}; this version reads {FORMAT}.")
        self.engine = make_engine(self.config.get("database") or self.root / "ledger.db")
        self.ledger = Ledger(self.engine)
        self.hasher = SubjectHasher(self.root / "keys" / "subject.key")
        self.subjects = SubjectIndex(self.engine, self.hasher)
        self.signing_key = load_or_create_signing_key(self.root / "keys" / "signing.key")
        self._records: frozenset[str] | None = None

    # -- static facts ----------------------------------------------------------------------------
    @property
    def public_key_path(self) -> Path:
        """The PEM public key that verifies this deployment's certificates."""
        return self.root / "keys" / "signing.pub"

    @property
    def scheme_name(self) -> str:
        """Registered name of the deployed scheme."""
        return str(self.config["scheme"])

    @property
    def window_s(self) -> float:
        """Default batching window in seconds."""
        return float(self.config.get("window_s", 0.5))

    @property
    def record_ids(self) -> frozenset[str]:
        """Every record id the deployed model was trained on."""
        if self._records is None:
            path = self.root / "records.json"
            try:
                self._records = frozenset(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError) as exc:
                raise DeploymentError(f"Cannot read {path} ({exc}); the deployment is incomplete.") from exc
        return self._records

    def certificate_path(self, request_id: str) -> Path:
        """Where the certificate of `request_id` is written."""
        return self.root / "certificates" / f"{request_id}.json"

    # -- scheme state versions -------------------------------------------------------------------
    def current_version(self) -> str:
        """The live scheme state version."""
        try:
            return (self.root / "scheme" / "CURRENT").read_text().strip()
        except OSError as exc:
            raise DeploymentError(f"{self.root}/scheme/CURRENT is missing ({exc}); the deployment is damaged.") from exc

    def load_scheme(self, version: str | None = None) -> DeletionScheme:
        """Load the scheme state of `version` (default: the live one)."""
        return load_scheme(self.root / "scheme" / (version or self.current_version()) / "state")

    def work_dir(self, version: str) -> Path:
        """The private working copy where a batch producing `version` is applied."""
        return self.root / "scheme" / f".{version}.work"

    def open_work_copy(self, base: str, version: str) -> DeletionScheme:
        """Copy the `base` state to a working directory and load it there (the live state is never mutated)."""
        work = self.work_dir(version)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(self.root / "scheme" / base / "state", work / "state")
        return load_scheme(work / "state")

    def stage_version(self, scheme: DeletionScheme, version: str, evidence: Mapping[str, Any] | None) -> None:
        """Save `scheme` (and the evidence of its batch) in its working copy and rename it to `version`."""
        base, work = self.root / "scheme", self.work_dir(version)
        scheme.save(work / "state")
        if evidence is not None:
            _atomic_text(work / "evidence.json", json.dumps(to_jsonable(evidence), sort_keys=True))
        shutil.rmtree(base / version, ignore_errors=True)
        os.replace(work, base / version)

    def relative(self, path: str | os.PathLike, version: str | None = None) -> str:
        """`path` relative to the deployment root, a working-copy path mapped to its final version directory."""
        p = Path(path)
        if version is not None:
            try:
                p = self.root / "scheme" / version / p.resolve().relative_to(self.work_dir(version))
            except ValueError:
                pass
        try:
            return str(p.resolve().relative_to(self.root))
        except ValueError:
            return str(p)

    def commit_version(self, version: str) -> None:
        """Make `version` live by atomically replacing scheme/CURRENT (the commit point of a batch)."""
        _atomic_text(self.root / "scheme" / "CURRENT", version + "\n")
        fd = os.open(self.root / "scheme", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_evidence(self, version: str) -> dict[str, Any]:
        """The evidence stored with a version."""
        return json.loads((self.root / "scheme" / version / "evidence.json").read_text())

    def stale_files(self) -> list[str]:
        """Files of scheme versions other than the live one (they derive from deleted records)."""
        live, base = self.current_version(), self.root / "scheme"
        out = []
        for d in sorted(base.iterdir()):
            if d.is_dir() and d.name != live:
                out += [str(p.relative_to(self.root)) for p in sorted(d.rglob("*")) if p.is_file()]
        return out

    def purge_stale(self) -> list[str]:
        """Delete every scheme version but the live one; returns the files removed."""
        files = self.stale_files()
        live, base = self.current_version(), self.root / "scheme"
        for d in base.iterdir():
            if d.is_dir() and d.name != live:
                shutil.rmtree(d)
        return files

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive inter-process lock held while deletions are applied."""
        return file_lock(self.root / "service.lock")


def create_deployment(directory: str | os.PathLike, scheme: Any, *, database: str | None = None,
                      subjects: Mapping[str, Sequence[str]] | None = None, window_s: float = 0.5) -> Deployment:
    """Create a deployment in `directory` from a fitted scheme (with lineage), optional DB URL and subject index."""
    if not isinstance(scheme, DeletionScheme):
        raise NoLineageError(type(scheme).__name__)
    records = list(scheme.records)
    if not records:
        raise NoLineageError(scheme.name)
    root = Path(directory).expanduser().resolve()
    if (root / CONFIG).exists():
        raise DeploymentError(f"{root} already holds a deployment; pick an empty directory or open it instead.")
    unknown_owned = sorted({str(r) for rs in (subjects or {}).values() for r in rs} - set(records))
    if unknown_owned:
        raise DeploymentError(f"The subject index names {len(unknown_owned)} record(s) the scheme was not trained "
                              f"on, e.g. {unknown_owned[:3]}; fix the subject -> records mapping.")
    (root / "scheme").mkdir(parents=True, exist_ok=True)
    (root / "keys").mkdir(exist_ok=True)
    os.chmod(root / "keys", 0o700)
    (root / "certificates").mkdir(exist_ok=True)
    _atomic_text(root / "records.json", json.dumps(sorted(records)))
    dep_stage = root / "scheme" / INITIAL_VERSION
    shutil.rmtree(dep_stage, ignore_errors=True)
    scheme.save(dep_stage / "state")
    _atomic_text(root / "scheme" / "CURRENT", INITIAL_VERSION + "\n")
    cfg = {"format": FORMAT, "scheme": scheme.name, "guarantee": scheme.guarantee, "database": database,
           "window_s": float(window_s), "created_at": iso(utcnow())}
    _atomic_text(root / CONFIG, json.dumps(cfg, indent=1, sort_keys=True))
    dep = Deployment(root)
    if subjects:
        dep.subjects.register(subjects)
    return dep


def create_digits_deployment(directory: str | os.PathLike, *, scheme: str = "analytic_head", seed: int = 0,
                             database: str | None = None, window_s: float = 0.5,
                             subjects_per_record: bool = False, **scheme_kwargs: Any) -> Deployment:
    """Fit `scheme` on scikit-learn's digits train split (record ids ``digits-0000`` ...) and deploy it."""
    from ..data import load_dataset
    from ..exact.base import SCHEMES

    bundle = load_dataset("digits", seed=seed)
    x, y = bundle.train.x, bundle.train.y
    ids = [f"digits-{i:04d}" for i in range(len(y))]
    model = SCHEMES.get(scheme)(**scheme_kwargs).fit(x, y, ids)
    owners = {f"subject-{i:04d}": [r] for i, r in enumerate(ids)} if subjects_per_record else None
    return create_deployment(directory, model, database=database, subjects=owners, window_s=window_s)
