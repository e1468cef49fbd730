"""Where jobs execute: in this process (serial), a local process pool, or Ray. All run `work()` on a job dict.

Thread sizing: oversubscribed OpenMP threads made steps 10x slower on a loaded 2-core machine, so the pool gives each
of its W workers floor(cores / W) torch threads (W x threads <= cores) and sets OMP_WAIT_POLICY=PASSIVE (idle OpenMP
threads sleep instead of spinning on the cores other workers need). Ray workers get the same through runtime_env.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .events import reporting

_STORES: dict[str, Any] = {}


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def work(job: dict, store_root: str | None, sink: Callable[[dict], None] | None) -> dict:
    """Execute one job (build a model, run a method, or measure the floor); never raises.

    Returns {"ok": True, "summary", "record"?} or {"ok": False, "error", "trace", "exception"?}.
    """
    from ..errors import UnlearnLabError
    from ..spec import from_dict
    from ..tasks import get_task

    t0 = time.perf_counter()
    try:
        store = None
        if store_root:
            if store_root not in _STORES:
                from .dist_store import open_store  # [distributed] a RankStore under a multi-process launch

                _STORES[store_root] = open_store(store_root)
            store = _STORES[store_root]
        spec = from_dict(job["spec"])
        task = get_task(spec.task)
        with reporting(sink, job["label"]):
            if job["kind"] == "build":
                return {"ok": True, "summary": task.build(spec, job["seed"], job["role"], store),
                        "seconds": time.perf_counter() - t0}
            if job["kind"] == "floor":
                rec = task.floor(spec, job["seed"], job["other"], store, job["rspec"])
            else:
                rec = task.run(spec, job["seed"], job["method"], store, job["rspec"])
        if store is not None:
            rec = store.get_run(store.add_run(rec))  # as stored: id, created, spec_key, JSON-normalised values
        return {"ok": True, "record": rec, "seconds": time.perf_counter() - t0}
    except UnlearnLabError as e:
        return {"ok": False, "error": str(e), "trace": "", "exception": e, "seconds": time.perf_counter() - t0}
    except Exception as e:  # a bug or a library failure: isolated to this job, with its traceback kept
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=8),
                "exception": e, "seconds": time.perf_counter() - t0}


class _Pump(threading.Thread):
    """Forwards workers' events from a queue (`get(timeout=...)` raising `empty` when idle) to the sink."""

    def __init__(self, get: Callable[..., dict], empty: type[Exception], sink: Callable[[dict], None]):
        super().__init__(daemon=True)
        self.get, self.empty, self.sink = get, empty, sink
        self._stop_ev = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_ev.is_set():
            try:
                self.sink(self.get(timeout=0.3))
            except self.empty:
                continue
            except Exception:  # noqa: BLE001 - the queue is gone (pool or cluster shut down): stop forwarding
                return

    def stop(self, grace_s: float = 0.6) -> None:
        """Let the last events through, then stop."""
        time.sleep(grace_s)
        self._stop_ev.set()
        self.join(timeout=2)


class SerialBackend:
    """Jobs run one at a time in this process (shares loaded models across jobs; needed without a store)."""

    name = "serial"

    def __init__(self, sink: Callable[[dict], None]):
        self.sink, self.slots, self.workers = sink, 1, 1
        self._done: list[tuple[str, dict]] = []

    def submit(self, job: dict, store_root: str | None) -> None:
        """Run `job` now; its result is returned by the next wait()."""
        self._done.append((job["key"], work(job, store_root, self.sink)))

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        """Finished (job key, result) pairs; with none, sleeps `timeout` (no busy loop while another process
        computes a job this scheduler waits for)."""
        out, self._done = self._done, []
        if not out and timeout > 0:
            time.sleep(timeout)
        return out

    def close(self, abort: bool = False) -> None:
        """Nothing to release."""


def _init_worker(threads: int, events: Any, parent: int | None = None) -> None:
    import torch

    torch.set_num_threads(threads)
    global _EVENTS
    _EVENTS = events
    if parent is not None:
        exit_with_parent(parent)


def exit_with_parent(parent: int, every: float = 1.0) -> None:
    """End this worker process as soon as process `parent` is gone (checked every `every` seconds from a daemon
    thread). A killed run otherwise leaves its pool workers computing, and storing, jobs nobody waits for, with
    the code they imported before any edit: a rerun then reuses those records."""
    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="unlearnlab-parent-watch").start()


def stop_pool(pool: Any) -> None:
    """End a ProcessPoolExecutor now: drop its queued work and terminate its workers. `shutdown(wait=True)`, what
    leaving a `with` block does, waits for every running job, so an interrupted run (`kill -INT`, `timeout -s INT`)
    would sit until they finish, and its workers would go on storing results computed with the code of before."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(5)


_EVENTS: Any = None


def _pool_work(job: dict, store_root: str | None) -> dict:
    res = work(job, store_root, _EVENTS.put if _EVENTS is not None else None)
    res.pop("exception", None)  # exceptions do not always pickle; the message and trace travel
    return res


class LocalBackend:
    """A spawn-based process pool of `workers` processes with cores // workers torch threads each."""

    name = "local"

    def __init__(self, sink: Callable[[dict], None], workers: int | None = None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        n = cores()
        self.workers = max(1, min(workers or n, n * 4))
        self.threads = max(1, n // self.workers)
        self.slots, self.sink = self.workers, sink
        ctx = mp.get_context("spawn")
        self._events = ctx.Queue()
        self._env_before = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
        os.environ.update({"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)})
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(self.threads, self._events, os.getpid()))
        self._futures: dict[Any, str] = {}
        self._pump = _Pump(self._events.get, queue.Empty, sink)

    def submit(self, job: dict, store_root: str | None) -> None:
        """Queue `job` on the pool."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            self._futures[self._pool.submit(_pool_work, job, store_root)] = job["key"]
        except BrokenProcessPool:
            from ..errors import UnlearnLabError

            raise UnlearnLabError(
                "The local backend's worker processes died. Workers start with multiprocessing 'spawn', which "
                "re-imports the calling script: put the calling code of a script under `if __name__ == "
                "'__main__':`, or use backend='serial'.") from None

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        """(job key, result) of the jobs that finished within `timeout` seconds."""
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as fwait

        if not self._futures:
            time.sleep(min(timeout, 0.2))
            return []
        done, _ = fwait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            key = self._futures.pop(f)
            try:
                out.append((key, f.result()))
            except Exception as e:  # the worker process died (killed, out of memory)
                out.append((key, {"ok": False, "error": f"worker process failed: {type(e).__name__}: {e}",
                                  "trace": "", "seconds": 0.0}))
        return out

    def close(self, abort: bool = False) -> None:
        """Stop the workers and restore the thread environment; `abort` (an interrupted run) ends running jobs
        instead of waiting for them."""
        if abort:
            stop_pool(self._pool)
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pump.stop(0.3)
        for k, v in self._env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ray_work(job: dict, store_root: str | None, threads: int, events: Any = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    res = work(job, store_root, events.put_nowait if events is not None else None)
    res.pop("exception", None)
    return res


class RayBackend:
    """Ray tasks, one per job, with resource requests (CPUs, GPUs or a GPU fraction) from the job."""

    name = "ray"

    def __init__(self, sink: Callable[[dict], None], address: str | None = None, workers: int | None = None,
                 cpus_per_job: float = 1.0, gpus_per_job: float = 0.0):
        from ..errors import ConfigError

        try:
            import ray
        except ImportError:
            raise ConfigError("The ray backend needs Ray: pip install 'unlearnlab[ray]' (or use --backend local)."
                              ) from None
        self.ray, self.sink = ray, sink
        self.threads = max(1, int(cpus_per_job))
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads), "OMP_WAIT_POLICY": "PASSIVE"}
        self._started = not ray.is_initialized()
        if self._started:
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": workers or cores(),
                                                                        "include_dashboard": False}
            ray.init(**kw, runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=False)
        total = ray.cluster_resources().get("CPU", 1)
        self.workers = self.slots = max(1, int(total // cpus_per_job))
        self._remote = ray.remote(_ray_work)
        self._opts = {"num_cpus": cpus_per_job, "num_gpus": gpus_per_job, "max_retries": 0}
        self._refs: dict[Any, str] = {}
        from ray.util.queue import Empty, Queue  # an actor: workers' events (epoch/step) reach this driver

        self._events = Queue(actor_options={"num_cpus": 0})
        self._pump = _Pump(self._events.get, Empty, sink)

    def submit(self, job: dict, store_root: str | None) -> None:
        """Start `job` as a Ray task, with the job's own resource request where it has one."""
        res = job.get("resources") or {}
        opts = {**self._opts, **{k: v for k, v in (("num_cpus", res.get("cpus")), ("num_gpus", res.get("gpus")))
                                 if v is not None}}
        threads = max(1, int(opts["num_cpus"]))
        self._refs[self._remote.options(**opts).remote(job, store_root, threads, self._events)] = job["key"]

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        """(job key, result) of the tasks that finished within `timeout` seconds."""
        if not self._refs:
            time.sleep(min(timeout, 0.2))
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            key = self._refs.pop(ref)
            try:
                out.append((key, self.ray.get(ref)))
            except Exception as e:  # the task's worker died
                out.append((key, {"ok": False, "error": f"ray task failed: {type(e).__name__}: {e}", "trace": "",
                                  "seconds": 0.0}))
        return out

    def close(self, abort: bool = False) -> None:
        """Shut down the local cluster this backend started (a joined cluster keeps running; `abort` cancels this
        run's tasks on it)."""
        if abort:
            for ref in list(self._refs):
                self.ray.cancel(ref, force=True)
        self._pump.stop()
        if self._started:
            self.ray.shutdown()


def make_backend(name: str, sink: Callable[[dict], None], *, workers: int | None = None,
                 address: str | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0) -> Any:
    """A backend by name: serial, local or ray (the per-job CPU/GPU request applies to Ray)."""
    from ..errors import UnknownNameError

    if name == "serial":
        return SerialBackend(sink)
    if name == "local":
        return LocalBackend(sink, workers)
    if name == "ray":
        return RayBackend(sink, address=address, workers=workers, cpus_per_job=cpus_per_job,
                          gpus_per_job=gpus_per_job)
    raise UnknownNameError("backend", name, ["local", "serial", "ray"])


__all__ = ["LocalBackend", "RayBackend", "SerialBackend", "cores", "make_backend", "work"]
