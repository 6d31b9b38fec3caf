"""glibc's malloc thresholds raised for the duration of a heavy task in a Dask worker (docs/qc.md, "By stored
tile"; docs/scale.md, "Worker processes and glibc's allocator").

Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_`` = 64 KiB, which also turns off glibc's dynamic mmap
threshold (glibc manual, "Malloc Tunable Parameters"): every NumPy temporary above 128 KiB is then a fresh mapping
that the kernel faults in and zeroes, in every task. A QC tile task allocates thousands of such temporaries
(a few MB per block and kernel); on two worker processes that doubled QC's CPU against the same tasks in one
process. Raising the thresholds for the whole worker (``engines.MALLOC_THRESHOLD``) saved ~20 % of every stage's
worker CPU but let the inversion's worker keep ~1 GB more between tasks, so it stays opt-in. Here they are raised
only while a task that asks runs, and the heap's free memory is handed back (``malloc_trim``) when the last such
task of the process ends, so nothing is kept between tasks.

Outside a process that set the variables (the driver, Dask's synchronous or threaded schedulers, any non-glibc
platform) this does nothing: glibc's dynamic threshold already keeps such temporaries on the heap there.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The thresholds while a task runs: glibc's own ceiling of its dynamic mmap threshold on 64-bit (32 MiB), so a
#: tile's large arrays stay mappings and its temporaries are reused from the heap.
TASK_THRESHOLD = 32 * 2**20
#: glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD parameter numbers (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's initial mmap threshold (used when only the trim threshold was set: that freezes it at this value).
DEFAULT_MMAP_THRESHOLD = 128 * 1024

_lock = threading.Lock()
_active = 0


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl and others have no mallopt semantics to restore)
        return libc
    except (OSError, AttributeError):
        return None


def _start_environ() -> dict[str, str]:
    """The environment this process was started with (what glibc read), not today's ``os.environ``: Dask's
    nanny writes ``MALLOC_TRIM_THRESHOLD_`` into its parent's environment, whose allocator never read it."""
    try:
        with open("/proc/self/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return dict(os.environ)
    return dict(i.decode(errors="replace").partition("=")[::2] for i in items if b"=" in i)


def _set_from_environ() -> dict[int, int]:
    """The thresholds the process was started with, by parameter (empty: glibc's dynamic thresholds)."""
    env = _start_environ()
    trim, mmap = env.get("MALLOC_TRIM_THRESHOLD_"), env.get("MALLOC_MMAP_THRESHOLD_")
    if trim is None and mmap is None:
        return {}
    out = {M_MMAP_THRESHOLD: int(mmap) if mmap is not None else DEFAULT_MMAP_THRESHOLD}
    if trim is not None:
        out[M_TRIM_THRESHOLD] = int(trim)
    return out


@contextlib.contextmanager
def task_heap(threshold: int = TASK_THRESHOLD) -> Iterator[bool]:
    """Within: glibc's trim and mmap thresholds at ``threshold`` when the process's environment had set them
    (a Dask worker); yields whether it changed anything. Threads share the setting (counted); the last to leave
    restores the environment's values and trims the heap."""
    global _active
    before = _set_from_environ()
    libc = _libc() if before else None
    if libc is None or min(before.values()) >= threshold:
        yield False
        return
    with _lock:
        if _active == 0:
            libc.mallopt(M_MMAP_THRESHOLD, threshold)
            libc.mallopt(M_TRIM_THRESHOLD, threshold)
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                for param, value in before.items():
                    libc.mallopt(param, value)
                libc.malloc_trim(0)


def heap_task(fn: F) -> F:
    """``fn`` run inside :func:`task_heap` (a Dask task function; ``map_blocks`` still sees its ``block_info``
    keyword through ``functools.wraps``)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with task_heap():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["TASK_THRESHOLD", "heap_task", "task_heap"]
