"""Progress as an event stream: jobs emit events, a renderer shows them (live on a terminal, lines otherwise).

Events are small dicts so they cross process boundaries (a pool worker puts them on a queue):
    {"kind": "plan"|"start"|"progress"|"done"|"failed"|"cached"|"wait"|"message"|"warning", "job": label,
     "t": epoch secs, ...kind-specific fields}
`emit()` sends to the sink installed for the current job (`reporting()`); with none installed it does nothing,
so library code (the training loop) can report unconditionally.
"""
from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO

Sink = Callable[[dict], None]

_state = threading.local()


def _sink() -> tuple[Sink | None, str]:
    return getattr(_state, "sink", None), getattr(_state, "job", "")


@contextmanager
def reporting(sink: Sink | None, job: str = "") -> Iterator[None]:
    """Route `emit()` calls made inside the block (this thread) to `sink`, tagged with `job`."""
    old = _sink()
    _state.sink, _state.job = sink, job
    try:
        yield
    finally:
        _state.sink, _state.job = old


def emit(kind: str, **fields: Any) -> None:
    """Send one event to the current sink (no-op without one)."""
    sink, job = _sink()
    if sink is not None:
        sink({"kind": kind, "job": fields.pop("job", job), "t": time.time(), **fields})


_last_step: dict[str, float] = {}


def training_step(what: str, epoch: int, epochs: int, step: int, steps: int, *, every_s: float = 2.0) -> None:
    """Report training progress (called by the training loop); throttled to one event per `every_s` per job."""
    sink, job = _sink()
    if sink is None:
        return
    now = time.monotonic()
    if step < steps and now - _last_step.get(job, 0.0) < every_s:
        return
    _last_step[job] = now
    emit("progress", what=what, epoch=epoch, epochs=epochs, step=step, steps=steps)


_curves = threading.local()


@contextmanager
def collect_curves(max_points: int = 200) -> Iterator[dict[str, list[list[float]]]]:
    """Collect the training loss of every train() call inside the block: {what: [[step, loss], ...]} (thinned to
    at most `max_points` per curve by keeping every k-th point)."""
    box: dict[str, list[list[float]]] = {}
    old = getattr(_curves, "box", None)
    _curves.box = box
    try:
        yield box
    finally:
        _curves.box = old
        for name, pts in box.items():
            k = -(-len(pts) // max_points)
            box[name] = pts[::k] if k > 1 else pts


_epoch = threading.local()


@contextmanager
def epoch_hook(fn: Callable[[str, int, Any], None]) -> Iterator[None]:
    """Call fn(what, epoch, model) after every epoch of every train() call inside the block (e.g. to evaluate an
    unlearning trajectory); the model is the one being trained, in whatever mode training left it."""
    old = getattr(_epoch, "fn", None)
    _epoch.fn = fn
    try:
        yield
    finally:
        _epoch.fn = old


def epoch_end(what: str, epoch: int, model: Any) -> None:
    """Run the active epoch hook, if any (train() calls this after each epoch; epochs count from 1)."""
    fn = getattr(_epoch, "fn", None)
    if fn is not None:
        fn(what, epoch, model)


def record_loss(what: str, step: int, loss: Any) -> None:
    """Append (step, loss) to the active curve collector (no-op, and no device sync, without one)."""
    box = getattr(_curves, "box", None)
    if box is not None:
        box.setdefault(what, []).append([step, float(loss.detach().float().mean())])


class Tracker:
    """Counts of jobs by state and a rate estimate, shared by both renderers."""

    def __init__(self) -> None:
        self.total = 0
        self.done = self.failed = self.cached = 0
        self.running: dict[str, dict] = {}
        self.t0 = time.time()
        self.durations: list[float] = []  # runs and floors
        self.build_durations: list[float] = []  # model builds (training, or loading a cached model: ~1 s)
        self.builds = self.builds_finished = 0
        self.workers = 1  # parallel jobs, from the plan event
        self.pending: Counter[str] = Counter()  # labels of the jobs still to compute, when the plans list them
        self.expected: dict[str, float] = {}  # what the store's records say a pending job takes (seconds)
        self.kind_durations: dict[str, list[float]] = {}
        self.last_t = 0.0  # the latest event's time: 'now' for the running jobs' elapsed time

    def update(self, ev: dict) -> None:
        """Fold one event into the counts."""
        k, job = ev["kind"], ev.get("job", "")
        self.last_t = max(self.last_t, float(ev.get("t", 0.0)))
        if k == "plan":  # several graphs in one session (an audit's populations) add up
            self.total += int(ev.get("jobs", 0))
            self.builds += int(ev.get("builds", 0))
            self.workers = int(ev.get("workers", self.workers))
            self.pending.update(ev.get("pending", ()))
            self.expected.update(ev.get("expected", {}))
        elif k == "start":
            self.running[job] = {"since": ev["t"], "detail": ""}
        elif k == "progress" and job in self.running:
            self.running[job]["detail"] = _step_text(ev)
        elif k in ("done", "failed", "cached"):
            info = self.running.pop(job, None)
            build = job.startswith("build ")
            if self.pending[job] > 0:  # a reused job was never pending
                self.pending[job] -= 1
            self.builds_finished += build
            if k == "cached":
                self.cached += 1
            elif k == "failed":
                self.failed += 1
            else:
                self.done += 1
                if info is not None:
                    (self.build_durations if build else self.durations).append(ev["t"] - info["since"])
                    self.kind_durations.setdefault(_kind_of(job), []).append(ev["t"] - info["since"])

    @property
    def finished(self) -> int:
        """Jobs that need no more work (computed, reused or failed)."""
        return self.done + self.failed + self.cached

    def eta_s(self) -> float | None:
        """Seconds left: remaining model builds x their mean time plus remaining runs x theirs, over the parallel
        workers (None before a job has finished). Builds and runs are timed apart: a build that finds its model
        cached takes a second, and a resumed sweep's first jobs are such builds, so one average of both would
        promise the remaining hour of runs in half a minute. While runs are left and none has been timed the ETA is
        unknown (None): a cached build's second says nothing about a run (a resumed class:3 sweep printed
        'ETA 0m37s' with 67 runs left). Builds not yet timed borrow the runs' mean.
        The mean, not the median: job times are skewed (one method's run can take 5x the others'), and the time left
        is a sum of them. When the plans list their jobs (the runner's do), each kind of job is timed apart:
        _eta_by_kind."""
        def mean(xs: list[float]) -> float | None:
            return sum(xs) / len(xs) if xs else None

        run, build = mean(self.durations), mean(self.build_durations)
        if +self.pending:
            return self._eta_by_kind(run, build)
        left_builds = max(0, self.builds - self.builds_finished)
        left_runs = max(0, self.total - self.finished - left_builds)
        if (left_runs and run is None) or (run is None and build is None):
            return None
        return (left_builds * (build if build is not None else run) + left_runs * (run or 0.0)) / max(1, self.workers)

    def _eta_by_kind(self, run: float | None, build: float | None) -> float | None:
        """The ETA when the plans listed their jobs: each kind of job left (a method's runs, a kind of model build)
        at its own mean time (SCRUB's or Fisher forgetting's runs can take 5x FT's: one mean over all runs promised
        '2m20s' with three 500 s Fisher runs left), a kind not yet timed in this session at what the store's records
        say (the plan's 'expected', engine/runner.py), else at the mean of its family (runs, or builds, which
        borrow the runs' when none is timed); a running job counts only the part of its kind's mean not yet
        elapsed. Unknown (None) while a kind of run is left and no run at all has been timed."""
        busy = {j: info for j, info in self.running.items() if self.pending[j] > 0}
        running, left = Counter(_kind_of(j) for j in busy), Counter()
        for label, n in (+self.pending).items():
            left[_kind_of(label)] += n
        total = 0.0
        for kind, n in left.items():
            fam = build if kind.startswith("build ") and build is not None else run
            m = self.kind_durations.get(kind)
            stored = [self.expected[j] for j in self.pending if _kind_of(j) == kind and j in self.expected]
            each = sum(m) / len(m) if m else (sorted(stored)[len(stored) // 2] if stored else fam)
            if each is None:
                return None
            total += (n - running[kind]) * each + sum(max(0.0, each - (self.last_t - info["since"]))
                                                      for j, info in busy.items() if _kind_of(j) == kind)
        return total / max(1, self.workers)

    def summary(self) -> str:
        """'12/30 jobs (3 reused, 1 failed), 2 running, ETA 4m10s'."""
        eta = self.eta_s()
        extra = ", ".join(x for x in (f"{self.cached} reused" if self.cached else "",
                                      f"{self.failed} failed" if self.failed else "") if x)
        return (f"{self.finished}/{self.total} jobs" + (f" ({extra})" if extra else "") +
                f", {len(self.running)} running" + (f", ETA {_duration(eta)}" if eta is not None else ""))


def _kind_of(label: str) -> str:
    """The kind of a job, from its label: 'fisher_forgetting seed 3 (cifar10-dev class:3)' -> 'fisher_forgetting',
    'build oracle seed 4 (…)' -> 'build oracle' (the jobs whose times are alike)."""
    return re.split(r" seed \d| \(", label, maxsplit=1)[0]


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _step_text(ev: dict) -> str:
    return (f"{ev.get('what', 'training')} epoch {ev.get('epoch')}/{ev.get('epochs')}, "
            f"step {ev.get('step')}/{ev.get('steps')}")


class LineRenderer:
    """Timestamped plain lines (stderr not a terminal: files, pipes, nohup); progress lines at most every 10 s."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0):
        self.stream = stream or sys.stderr
        self.tracker, self.every_s = Tracker(), every_s
        self._last_progress: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, ev: dict) -> None:
        with self._lock:
            self.tracker.update(ev)
            line = self._line(ev)
            if line:
                stamp = datetime.fromtimestamp(ev["t"]).strftime("%Y-%m-%d %H:%M:%S")
                self.stream.write(f"{stamp} {line}\n")
                self.stream.flush()

    def _line(self, ev: dict) -> str:
        k, job, tr = ev["kind"], ev.get("job", ""), self.tracker
        if k == "plan":
            return f"plan: {ev.get('jobs', 0)} jobs ({ev.get('detail', '')}), backend {ev.get('backend', 'serial')}"
        if k == "progress":
            if ev["t"] - self._last_progress.get(job, 0.0) < self.every_s and ev.get("step") != ev.get("steps"):
                return ""
            self._last_progress[job] = ev["t"]
            return f"  {job}: {_step_text(ev)}"
        if k == "start":
            return f"start {job}"
        if k == "done":
            return f"done  {job} ({ev.get('seconds', 0):.1f}s) {ev.get('summary', '')}".rstrip() + \
                f" | {tr.summary()}"
        if k == "cached":
            return f"reuse {job}: {ev.get('summary', 'stored')} | {tr.summary()}"
        if k == "failed":
            return f"FAIL  {job}: {ev.get('error', '')} | {tr.summary()}"
        if k == "wait":
            return f"wait  {job}: {ev.get('detail', 'computed by another process')}"
        if k == "message":
            return ev.get("text", "")
        if k == "warning":
            return f"WARN  {job}: {ev.get('text', '')}"
        return ""


class LiveRenderer:
    """A rich live display on a terminal: counts, ETA and each running job's epoch/step."""

    def __init__(self, console: Any = None):
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(stderr=True)
        self.tracker = Tracker()
        self._lock = threading.Lock()
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveRenderer:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(*exc)
        self.console.print(f"finished: {self.tracker.summary()}", highlight=False)

    def __call__(self, ev: dict) -> None:
        with self._lock:
            self.tracker.update(ev)
            if ev["kind"] == "failed":
                self.console.print(f"failed {ev.get('job')}: {ev.get('error', '')}", highlight=False, markup=False)
            elif ev["kind"] == "warning":
                self.console.print(f"warning {ev.get('job')}: {ev.get('text', '')}", highlight=False, markup=False)
            self.live.update(self._render())

    def _render(self) -> Any:
        from rich.table import Table

        t = Table.grid(padding=(0, 1))
        t.add_row(f"[bold]{self.tracker.summary()}[/]")
        now = time.time()
        for job, info in list(self.tracker.running.items())[:12]:
            t.add_row(f"  {job} [dim]{_duration(now - info['since'])}[/] {info['detail']}")
        return t


@contextmanager
def renderer(*, quiet: bool = False, stream: TextIO | None = None) -> Iterator[Sink]:
    """The sink for a run: live display if stderr is a terminal, timestamped lines otherwise, nothing if quiet."""
    if quiet:
        yield lambda ev: None
        return
    target = stream or sys.stderr
    if stream is None and target.isatty():
        with LiveRenderer() as live:
            yield live
    else:
        yield LineRenderer(target)


__all__ = ["LineRenderer", "LiveRenderer", "Tracker", "collect_curves", "emit", "record_loss",
           "renderer", "reporting", "training_step"]
