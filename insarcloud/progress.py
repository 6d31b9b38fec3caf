"""Progress of long computations: lines at a steady cadence on stderr when it is not a terminal (``kubectl logs``,
CI, a file), a rich bar when it is.

A line looks like::

    insarcloud progress: invert 012A_05443_131313 ts_quality: 120/480 tasks (25%), 3.1 tasks/s, ETA 1m56s

and is printed at 0%, at 100% and every ``INSARCLOUD_PROGRESS_SECONDS`` seconds (default 15) in between.
``compute`` runs a Dask collection with such a reporter: on a ``distributed`` client it follows the
scheduler's count of the graph's tasks (``distributed.diagnostics.progressbar.ProgressBar``'s feed, what
``distributed.progress`` draws), otherwise a ``dask.callbacks.Callback`` counts finished tasks. Ray actor loops
call ``Reporter.update`` per chunk. Reporting never fails the computation it watches.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

log = logging.getLogger(__name__)

ENV_SECONDS = "INSARCLOUD_PROGRESS_SECONDS"
ENV_OFF = "INSARCLOUD_PROGRESS"  # "0" switches progress output off
DEFAULT_SECONDS = 15.0


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_line(label: str, done: int, total: int, unit: str, elapsed: float) -> str:
    """One progress line: counts, percentage, rate and the ETA from the mean rate so far."""
    pct = 100.0 * done / total if total else 100.0
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = _duration((total - done) / rate) if rate > 0 and done < total else ("0s" if done >= total else "?")
    return (f"insarcloud progress: {label}: {done}/{total} {unit} ({pct:.0f}%), {rate:.2g} {unit}/s, "
            f"ETA {eta}, elapsed {_duration(elapsed)}")


# rich allows one live display at a time: the reporters of a process (the area job's frames, their stages)
# share one Progress, started by the first and stopped by the last
_LIVE: dict[str, Any] = {"bar": None, "users": 0}
_LIVE_LOCK = threading.Lock()


def _live_acquire(stream: TextIO) -> Any:
    with _LIVE_LOCK:
        if _LIVE["bar"] is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            _LIVE["bar"] = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                    TimeRemainingColumn(), console=Console(file=stream), transient=True)
            _LIVE["bar"].start()
        _LIVE["users"] += 1
        return _LIVE["bar"]


def _live_release() -> None:
    with _LIVE_LOCK:
        _LIVE["users"] -= 1
        if _LIVE["users"] <= 0 and _LIVE["bar"] is not None:
            _LIVE["bar"].stop()
            _LIVE["bar"], _LIVE["users"] = None, 0


class Reporter:
    """Counts ``done``/``total`` of one piece of work and shows it.

    On a terminal (``stream.isatty()``) a transient rich bar; otherwise lines on ``stream`` at 0%, 100% and at
    most every ``interval`` seconds. Thread-safe (the area job's frames run in threads).
    """

    def __init__(self, label: str, total: int, unit: str = "tasks", *, stream: TextIO | None = None,
                 interval: float | None = None, tty: bool | None = None) -> None:
        self.label, self.total, self.unit = label, int(total), unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = float(os.environ.get(ENV_SECONDS, DEFAULT_SECONDS)) if interval is None else interval
        self.enabled = os.environ.get(ENV_OFF, "1") != "0"
        self.tty = (getattr(self.stream, "isatty", lambda: False)() if tty is None else tty) and self.enabled
        self.done = 0
        self._t0 = time.monotonic()
        self._last = -1e18
        self._lock = threading.Lock()
        self._closed = False
        self._final = False
        self._bar: Any = None
        if self.tty:
            self._bar = _live_acquire(self.stream)
            self._task = self._bar.add_task(f"{label} ({unit})", total=self.total)
        elif self.total > 0:
            self._emit(force=True)

    def _emit(self, force: bool = False) -> None:
        if not self.enabled or self.tty:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            if self._final and self.done >= self.total:
                return  # the 100% line is written once
            self._final = self.done >= self.total > 0
            self._last = now
            print(format_line(self.label, self.done, self.total, self.unit, now - self._t0), file=self.stream,
                  flush=True)

    def set(self, done: int, total: int | None = None) -> None:
        """Absolute counts (a scheduler reports how many of all tasks remain)."""
        with self._lock:
            if total is not None:
                self.total = int(total)
            self.done = min(int(done), self.total) if self.total else int(done)
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done, total=self.total)
            elif self.total > 0:  # the first line as soon as the total is known, the cadence, 100% when reached
                self._emit(force=self._last < -1e17 or self.done >= self.total)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.set(self.done + n)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.remove_task(self._task)
                _live_release()
            elif not self._final and self.total > 0:
                self._emit(force=True)  # where it stopped (an error, or no 100% line yet)

    def note(self, message: str) -> None:
        """A line about this work (a stage started, a frame done): on stderr, or above the bar on a terminal."""
        if not self.enabled:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.console.print(f"{self.label}: {message}")
            else:
                print(f"insarcloud progress: {self.label}: {message}", file=self.stream, flush=True)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _distributed_client() -> Any:
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # no client active
        return None


def _scheduler_is(client: Any) -> bool:
    """Whether dask would run a compute on ``client`` now (its default scheduler, unless dask.config says
    otherwise)."""
    from dask.base import get_scheduler

    sched = get_scheduler()
    return sched is None or getattr(sched, "__self__", None) is client


def _follow_distributed(client: Any, futures: list[Any], reporter: Reporter) -> None:
    from distributed.diagnostics.progressbar import ProgressBar

    class _Feed(ProgressBar):  # the scheduler streams {"all", "remaining", "status"} at ``interval``
        def _draw_bar(self, remaining: int = 0, all: int = 0, **kwargs: Any) -> None:  # noqa: A002
            reporter.set(all - remaining, all)

    try:
        client.sync(_Feed(futures, scheduler=client.scheduler.address, interval="500ms", complete=True).listen)
    except Exception as exc:  # noqa: BLE001 - a progress feed that fails must not fail the computation
        log.debug("progress feed for %s failed: %s", reporter.label, exc)


def compute(obj: Any, label: str, unit: str = "tasks") -> Any:
    """``dask.compute(obj)`` (or the active distributed client's), reporting the graph's tasks as they finish."""
    import dask

    client = _distributed_client()
    if client is not None and not _scheduler_is(client):
        client = None  # dask.config's scheduler (e.g. "threads" in a test) overrides the default client
    if client is not None:
        future = client.compute(obj)  # a list of futures when ``obj`` is a list or tuple of collections
        futures = list(future) if isinstance(future, (list, tuple)) else [future]
        with Reporter(label, 0, unit) as reporter:
            _follow_distributed(client, futures, reporter)
            results = client.gather(futures)
            return results if isinstance(future, (list, tuple)) else results[0]
    from dask.callbacks import Callback

    class _Count(Callback):
        def _start_state(self, dsk: Any, state: Any) -> None:
            reporter.set(0, len(state["ready"]) + len(state["waiting"]) + len(state.get("finished", ())))

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            reporter.update(1)

    with Reporter(label, 0, unit) as reporter, _Count():
        return dask.compute(obj)[0]
