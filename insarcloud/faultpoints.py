"""Recorded crash points for kill-and-resume tests: exit the process at a named point, not after N seconds.

``$INSARCLOUD_EXIT_AT=POINT:N`` makes the process leave with :data:`EXIT_CODE` (no clean-up, no ``finally``,
no atexit: as SIGKILL would) the N-th time code calls ``reached(POINT)``. Unset (always, outside tests),
``reached`` costs one dictionary look-up. A test then knows exactly what was written before the "kill"
(e.g. the area job after the first frame's qc stage), on a quiet machine and on a loaded one alike.
"""

from __future__ import annotations

import os
import sys
import threading

ENV = "INSARCLOUD_EXIT_AT"
EXIT_CODE = 86  # distinct from Python's 1, argparse's 2 and a signal's 128+n

_lock = threading.Lock()
_counts: dict[str, int] = {}


def reached(point: str) -> None:
    """Count ``point``; exit the process at once when ``$INSARCLOUD_EXIT_AT`` says so (see the module doc)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.rpartition(":")
    if name != point:
        return
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        if _counts[point] >= int(nth or 1):
            sys.stderr.write(f"insarcloud: exiting at fault point {point!r} ({ENV}={spec})\n")
            sys.stderr.flush()
            os._exit(EXIT_CODE)
