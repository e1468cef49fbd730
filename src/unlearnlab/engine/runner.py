"""How a run executes: specs -> job graph -> scheduler over a backend -> records in the store.

Jobs (all keyed by content, so an original or an oracle shared by many runs is built once):
    build   train (or load) the 'original' or the 'oracle' model of one seed       key model:<task's model key>
    run     apply one method (or a baseline) to the original, evaluate, attack      key run:<spec key of the record>
    floor   the oracle of seed s2 scored against the oracle of seed s1 (noise floor) key run:<spec key>
Run and floor jobs depend on the build jobs of their seed(s). A run whose record is already in the store is reused
(never recomputed) and build jobs that no pending run needs are pruned. Jobs are claimed in the store's jobs table
(coord.py) so concurrent processes share the work; a failing job is recorded with its error and its dependants are
skipped, while every other job goes on.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from . import coord
from .backends import make_backend


@dataclasses.dataclass
class Job:
    """One node of the graph (a plain dict travels to workers: see as_dict)."""

    key: str
    kind: str
    label: str
    spec: dict
    seed: int
    role: str = ""
    method: str = ""
    other: int = -1
    rspec: dict | None = None
    deps: tuple[str, ...] = ()
    sweep: str = ""
    resources: dict = dataclasses.field(default_factory=dict)  # Ray request: {"cpus": 1, "gpus": 0.5}

    def as_dict(self) -> dict:
        """The picklable form handed to a backend."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Graph:
    """Jobs by key (insertion order = a valid topological order) and, per spec, the run keys it reports."""

    jobs: dict[str, Job] = dataclasses.field(default_factory=dict)
    runs_of: list[list[str]] = dataclasses.field(default_factory=list)

    def add(self, job: Job) -> str:
        """Add `job` unless a job with its key exists (shared); returns the key."""
        self.jobs.setdefault(job.key, job)
        return job.key

    def count(self, kind: str) -> int:
        """Number of jobs of one kind."""
        return sum(j.kind == kind for j in self.jobs.values())


def _scenario(spec) -> str:
    return f"{spec.dataset} {spec.forget}"


def expand(specs: list, *, floor: bool = True) -> Graph:
    """The job graph of `specs` (validated by their tasks before anything runs)."""
    from ..store import spec_key
    from ..tasks import get_task

    g = Graph()
    for spec in specs:
        plan = get_task(spec.task).plan(spec)
        sd, where = spec.to_dict(), _scenario(spec)
        models = {}
        for (role, seed), mkey in plan.model_keys.items():
            models[(role, seed)] = g.add(Job(f"model:{mkey}", "build", f"build {role} seed {seed} ({where})", sd, seed,
                                             role=role, sweep=spec.name))
        keys = []
        for (method, seed), rspec in plan.record_specs.items():
            if method == "oracle-floor":
                if not floor or not plan.oracle:  # a task without an oracle has no noise floor
                    continue
                other = rspec["config"]["other_seed"]
                deps = tuple(models[k] for k in (("oracle", seed), ("oracle", other)) if k in models)
                job = Job(f"run:{spec_key(rspec)}", "floor", f"noise floor seeds {seed}/{other} ({where})", sd, seed,
                          other=other, rspec=rspec, deps=deps, sweep=spec.name)
            else:
                deps = tuple(models[k] for k in (("original", seed), ("oracle", seed)) if k in models)
                job = Job(f"run:{spec_key(rspec)}", "run", f"{method} seed {seed} ({where})", sd, seed,
                          method=method, rspec=rspec, deps=deps, sweep=spec.name)
            keys.append(g.add(job))
        g.runs_of.append(keys)
    return g


def text_sink(progress: Callable[[str], None] | None) -> Callable[[dict], None]:
    """Adapt the event stream to a callback of strings (the API's legacy `progress=`)."""
    if progress is None:
        return lambda ev: None

    def sink(ev: dict) -> None:
        k = ev["kind"]
        if k == "message":
            progress(ev["text"])
        elif k == "cached":
            progress(f"{ev['job']}: reusing stored run {ev.get('run_id', '')}")
        elif k == "start":
            progress(ev["job"])
        elif k == "failed":
            progress(f"{ev['job']} failed: {ev.get('error', '')}")
    return sink


class _Scheduler:
    """Runs a graph's pending jobs on a backend in dependency order, coordinating through the store."""

    def __init__(self, graph: Graph, store, backend, sink, resume: bool):
        self.g, self.store, self.backend, self.sink, self.resume = graph, store, backend, sink, resume
        self.root = str(store.root) if store is not None else None
        self.owner = coord.new_owner()
        self.results: dict[str, dict] = {}
        self.errors: dict[str, dict] = {}
        self.running: set[str] = set()
        self.waiting: dict[str, float] = {}  # jobs another process holds -> when we last looked
        self.reused: list[dict] = []  # 'cached' events of stored runs, sent after the plan
        self._seconds: dict[str, dict[str, float]] = {}  # per dataset (a name or a {name, path}): method_seconds

    def _stored(self, job: Job) -> dict | None:
        if self.store is None or not self.resume or job.rspec is None:
            return None
        found = self.store.find_run(job.rspec)
        return self.store.get_run(found) if found else None

    def prune(self) -> list[str]:
        """Mark stored runs done; return the pending keys (build jobs only where a pending run needs them)."""
        pending: list[str] = []
        for key, job in self.g.jobs.items():
            if job.kind == "build":
                continue
            rec = self._stored(job)
            if rec is not None:
                self.results[key] = {"ok": True, "record": rec, "cached": True}
                self.reused.append({"kind": "cached", "job": job.label, "t": time.time(), "run_id": rec.get("id", ""),
                                    "summary": f"stored run {rec.get('id', '')}"})
            else:
                pending.append(key)
        needed = {d for k in pending for d in self.g.jobs[k].deps}
        return [k for k in self.g.jobs if k in needed] + self._longest_first(pending)

    def expected_s(self, key: str) -> float:
        """What this store's records say job `key` takes (median wall seconds of its method's runs on its dataset;
        0 when untimed, for a build, or without a store)."""
        job = self.g.jobs[key]
        if self.store is None or job.kind != "run":
            return 0.0
        ds = job.spec.get("dataset")
        if repr(ds) not in self._seconds:
            self._seconds[repr(ds)] = self.store.method_seconds(ds)
        return self._seconds[repr(ds)].get(job.method, 0.0)

    def _longest_first(self, keys: list[str]) -> list[str]:
        """With parallel slots, the runs of the methods that took longest in this store's records (median wall time
        per dataset and method) start first: the longest-processing-time order, so a slow method's last seed does
        not run alone at the end while the other slots idle (a CIFAR sweep's last Fisher run did, for 7 minutes).
        Methods the store has not timed, and a serial backend, keep the plan order."""
        if self.store is None or self.backend.slots < 2:
            return keys
        return sorted(keys, key=lambda k: -self.expected_s(k))

    def _finish(self, key: str, res: dict) -> None:
        job = self.g.jobs[key]
        self.running.discard(key)
        now = time.time()
        if res.get("ok"):
            self.results[key] = res
            rec = res.get("record") or {}
            summary = res.get("summary") or ", ".join(
                f"{m} {rec['metrics'][m]:.2f}" for m in ("UA", "TA", "Avg.Gap", "forget_ROUGE", "Forget Quality")
                if isinstance(rec.get("metrics", {}).get(m), float))
            self.sink({"kind": "done", "job": job.label, "t": now, "seconds": res.get("seconds", 0.0),
                       "summary": summary})
        else:
            self.errors[key] = res
            self.sink({"kind": "failed", "job": job.label, "t": now, "error": res.get("error", "")})
        if self.store is not None:
            coord.finish(self.store, key, owner=self.owner, ok=bool(res.get("ok")), error=res.get("error", ""),
                         run_id=(res.get("record") or {}).get("id", ""))

    def _start(self, key: str) -> None:
        job = self.g.jobs[key]
        if self.store is not None:
            holder = coord.claim(self.store, key, owner=self.owner, label=job.label, kind=job.kind, sweep=job.sweep)
            if holder is not None:
                if key not in self.waiting:
                    self.sink({"kind": "wait", "job": job.label, "t": time.time(),
                               "detail": f"computed by another process ({holder})"})
                self.waiting[key] = time.time()
                return
            rec = self._stored(job)  # finished by another process since we planned: adopt its record
            if rec is not None:
                self.waiting.pop(key, None)
                self.results[key] = {"ok": True, "record": rec, "cached": True}
                coord.finish(self.store, key, owner=self.owner, ok=True, run_id=rec.get("id", ""))
                self.sink({"kind": "cached", "job": job.label, "t": time.time(), "run_id": rec.get("id", "")})
                return
        self.waiting.pop(key, None)
        self.running.add(key)
        self.sink({"kind": "start", "job": job.label, "t": time.time()})
        self.backend.submit(job.as_dict(), self.root)

    def _poll_waiting(self) -> list[str]:
        """Jobs held by other processes: adopt their results when done; return those to compute ourselves."""
        retry = []
        for key, last in list(self.waiting.items()):
            if time.time() - last < 1.0:
                continue
            job = self.g.jobs[key]
            state = coord.status_of(self.store, key, self.owner)
            if state == "running":
                self.waiting[key] = time.time()
                continue
            del self.waiting[key]
            rec = self._stored(job) if job.kind != "build" else None
            if rec is not None or (job.kind == "build" and state == "done"):
                self.results[key] = {"ok": True, "record": rec, "cached": True}
                self.sink({"kind": "cached", "job": job.label, "t": time.time(), "run_id": (rec or {}).get("id", "")})
            else:  # the other process failed, died or left no record: compute it here
                retry.append(key)
        return retry

    def run(self, order: list[str]) -> None:
        """Schedule until every job in `order` finished, failed or was skipped."""
        todo = list(order)
        beat = _Heartbeat(self.store, self.owner, self.running) if self.store is not None else None
        try:
            while todo or self.running or self.waiting:
                for key in list(todo):
                    deps = self.g.jobs[key].deps
                    failed = [d for d in deps if d in self.errors]
                    if failed:
                        todo.remove(key)
                        err = self.errors[failed[0]].get("error", "")
                        self._finish(key, {"ok": False, "error": f"skipped: {self.g.jobs[failed[0]].label} failed "
                                                                 f"({err})", "skipped": True})
                    elif all(d in self.results for d in deps) and len(self.running) < self.backend.slots:
                        todo.remove(key)
                        self._start(key)
                for key, res in self.backend.wait(0.2 if (self.running or self.waiting) else 0.0):
                    self._finish(key, res)
                if self.waiting:
                    todo += self._poll_waiting()
                elif todo and not self.running and not any(
                        all(d in self.results for d in self.g.jobs[k].deps) for k in todo):
                    raise RuntimeError(f"scheduler stalled on {[self.g.jobs[k].label for k in todo[:3]]}")
        finally:
            if beat is not None:
                beat.stop()
            if self.store is not None:
                coord.release_all(self.store, self.owner)


class _Heartbeat(threading.Thread):
    """Refreshes this scheduler's claims every 30 s (other hosts judge liveness by it)."""

    def __init__(self, store, owner: str, running: set[str]):
        super().__init__(daemon=True)
        self.store, self.owner, self.running = store, owner, running
        self._stop_ev = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_ev.wait(30.0):
            try:
                coord.heartbeat(self.store, list(self.running), self.owner)
            except Exception:  # noqa: BLE001 - a missed heartbeat only delays a takeover
                pass

    def stop(self) -> None:
        self._stop_ev.set()


def execute(specs: list, *, store=None, backend: str = "serial", workers: int | None = None,
            address: str | None = None, resume: bool = True, sink: Callable[[dict], None] | None = None,
            floor: bool = True, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> dict[str, Any]:
    """Run `specs` (RunSpecs) as one job graph; returns {"records": per spec, "errors": [...], "jobs": counts}.

    records holds, per spec, its run records in plan order (stored ones reused when `resume`). Each error is
    {"method", "seed", "kind", "job", "error", "exception" (serial backend only)}.
    """
    sink = sink or (lambda ev: None)
    graph = expand(specs, floor=floor)
    from ..distributed import launched

    if launched():  # [distributed] every rank runs every job in order; rank 0 alone stores and reports (dist_store)
        from .dist_store import for_launch

        backend, (store, sink) = "serial", for_launch(store, sink)
    if store is None and backend != "serial":
        backend = "serial"  # without a store, models travel between jobs only inside one process
    for job in graph.jobs.values():  # language-model jobs on a GPU ask Ray for one (or the given fraction)
        gpus = gpus_per_job or (1.0 if job.spec.get("device", "auto").startswith("cuda") else 0.0)
        job.resources = {"cpus": cpus_per_job, **({"gpus": gpus} if gpus else {})}
    be = make_backend(backend, sink, workers=workers, address=address, cpus_per_job=cpus_per_job,
                      gpus_per_job=gpus_per_job)
    finished = False
    try:
        sched = _Scheduler(graph, store, be, sink, resume)
        order = sched.prune()
        sink({"kind": "plan", "t": time.time(), "jobs": len(graph.jobs) - graph.count("build") + sum(
            graph.jobs[k].kind == "build" for k in order), "builds": sum(graph.jobs[k].kind == "build" for k in order),
            "backend": be.name, "workers": be.workers, "pending": [graph.jobs[k].label for k in order],
            "expected": {graph.jobs[k].label: t for k in order if (t := sched.expected_s(k)) > 0},
            "detail": f"{graph.count('build')} models, {graph.count('run')} runs, {graph.count('floor')} floors; "
                      f"{len(order)} to compute, {be.workers} worker(s)"})
        for ev in sched.reused:
            sink(ev)
        sched.run(order)
        finished = True
    finally:
        be.close(abort=not finished)
    records = [[sched.results[k]["record"] for k in keys if k in sched.results] for keys in graph.runs_of]
    errors = []
    for key, res in sched.errors.items():
        job = graph.jobs[key]
        errors.append({"method": job.method or job.role or "oracle-floor", "seed": job.seed, "kind": job.kind,
                       "job": job.label, "error": res.get("error", ""), "trace": res.get("trace", ""),
                       "exception": res.get("exception"), "skipped": bool(res.get("skipped"))})
    return {"records": records, "errors": errors,
            "jobs": {"total": len(graph.jobs), "computed": len(order), "failed": len(errors)}}


__all__ = ["Graph", "Job", "execute", "expand", "text_sink"]
