"""The ingest log of a frame cube: one small object per run, outside the cube's root metadata.

Each run's record (what it added, completed, skipped, replaced and failed, with timings) is one element of
the Zarr array ``ingest/runs``: a variable-length UTF-8 string array of fixed length 2**31 with one element
per chunk, so writing run *i* is one PUT of chunk ``ingest/runs/c/<i>`` and never changes any metadata.
The root ``zarr.json`` (consolidated metadata) therefore stays the same size however many runs there are,
and a run that changes nothing (a no-op re-ingest) leaves it byte-identical. Loose JSON objects would have
been simpler to read by hand, but Zarr warns on every object in a group's folder that is not a Zarr node,
and the cube stays a pure Zarr hierarchy.

The root attribute ``ingest`` keeps what a reader needs at a glance, changed only when it changes:
``missing_products``, ``errors`` (per pair or file, the latest reason; cleared when it lands) and
``log`` (where the records are).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import zarr

from insarcloud.io.storage import get_fs, with_retries

log = logging.getLogger(__name__)

RUNS = "runs"  # array name inside group ``ingest``
RUNS_LEN = 2**31
LOG_POINTER = "ingest/runs (one JSON record per run; `insarcloud info CUBE` prints them)"


def add_runs_array(ingest_group: zarr.Group) -> bool:
    """Create ``ingest/runs`` unless it exists; returns whether it was created (metadata changed)."""
    if RUNS in ingest_group:
        return False
    ingest_group.create_array(RUNS, shape=(RUNS_LEN,), chunks=(1,), dtype=str, fill_value="",
                              attributes={"long_name": "ingest run records (JSON), one per run, in run order"})
    return True


def _run_indices(cube_url: str, so: dict[str, Any] | None) -> list[int]:
    fs, root = get_fs(cube_url, so)
    try:
        names = with_retries(fs.ls, f"{root.rstrip('/')}/ingest/{RUNS}/c", detail=False)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        tail = n.rstrip("/").rsplit("/", 1)[-1]
        if tail.isdigit():
            out.append(int(tail))
    return sorted(out)


def _runs_array(cube_url: str, so: dict[str, Any] | None, mode: str) -> zarr.Array:
    from insarcloud.io import cube as cubemod

    group = cubemod.open_zarr_group(cube_url, "ingest", so, mode=mode)
    return group[RUNS]


def append_run(cube_url: str, so: dict[str, Any] | None, record: dict[str, Any]) -> int:
    """Write ``record`` as the next run (one object); returns its index. One writer per cube at a time
    (the lease) keeps indices unique."""
    idx = _run_indices(cube_url, so)
    i = idx[-1] + 1 if idx else 0
    arr = _runs_array(cube_url, so, "r+")
    with_retries(arr.__setitem__, i, json.dumps(record, default=str))
    return i


def read_runs(cube_url: str, so: dict[str, Any] | None = None, last: int | None = None) -> list[dict[str, Any]]:
    """The run records in run order (the ``last`` ones only when given); older cubes' records kept in
    the ``ingest`` group's attributes come first."""
    from insarcloud.io import cube as cubemod

    group = cubemod.open_zarr_group(cube_url, "ingest", so)
    legacy = list(group.attrs.get("runs", []))
    if RUNS not in group:
        return legacy[-last:] if last else legacy
    idx = _run_indices(cube_url, so)
    if last:
        idx = idx[-last:]
    arr = group[RUNS]
    out = legacy
    for i in idx:
        value = arr[i]
        text = value.item() if isinstance(value, np.ndarray) else str(value)
        if text:
            out.append(json.loads(text))
    return out[-last:] if last else out


def summary(old: dict[str, Any], failed: dict[str, str], completed: list[str], missing: list[str]) -> dict[str, Any]:
    """The root ``ingest`` attribute after a run: errors re-evaluated by this run replace the old ones
    (every unfinished pair and every metadata file is looked at again by each run); a static layer's
    error stays until a new cube is made."""
    errors = {k: v for k, v in (old.get("errors") or {}).items() if k.startswith("static:")}
    errors.update(failed)
    for p in completed:
        errors.pop(p, None)
    return {"missing_products": list(missing), "errors": dict(sorted(errors.items())), "log": LOG_POINTER}
