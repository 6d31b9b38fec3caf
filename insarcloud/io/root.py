"""A cube whose root is a stage's output (the area cube's mosaic): the root follows every update.

``xr.open_zarr(area_url)`` shows the area cube's root, so the root itself must always be the current mosaic; a
frame stage's pointer (:mod:`insarcloud.io.stages`) cannot help a reader that opens the root. The stage writes
its new output, complete with its marker, into a staging group ``<stage>_<fingerprint[:8]>``
(:func:`plan_root_output`), then :func:`replace_root` makes the root equal that group:

1. the root's marker is flipped to incomplete (one write of the root ``zarr.json``): from here on a crash makes
   the next run redo the swap, and no run takes a half-swapped root for a current one;
2. every array of the group replaces the root's array of that name (the old array's objects are removed first,
   so a new chunk grid never meets stale chunks; object copies are server-side on S3); root arrays the new
   output lacks are removed, only when the root carries this stage's marker (nothing the program did not
   create is removed: a root holding foreign arrays is refused before anything is written);
3. the staging group is removed and the consolidated metadata refreshed;
4. the root ``zarr.json`` is written last with the group's attributes (marker complete, fingerprint).

Child groups (stage pointers, other groups, anything not a root array) are never touched. A reader opening the
root during steps 1-3 sees an incomplete marker (docs/STAGES.md, "The area cube's root").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from insarcloud.errors import StageOutputError
from insarcloud.io.cube import (
    MARKER,
    OutputPlan,
    consolidate,
    open_zarr_group,
    params_hash,
    read_marker,
)
from insarcloud.io.storage import exists, get_fs, join, read_bytes, with_retries, write_bytes_atomic

log = logging.getLogger(__name__)


def plan_root_output(url: str, stage: str, params: Mapping[str, Any],
                     storage_options: dict[str, Any] | None = None) -> OutputPlan:
    """Where a stage whose output is the cube's root writes.

    ``OutputPlan("", True)``: the root is complete with these parameters, nothing to do. Otherwise the staging
    group ``f"{stage}_{hash[:8]}"``, ``done`` when it is already complete with them (a run stopped while
    replacing the root, or an older version's group): then only :func:`replace_root` is left to do.
    """
    h = params_hash(params)
    root = read_marker(url, "", storage_options) or {}
    if root.get("complete") and root.get("params_hash") == h:
        return OutputPlan("", True)
    group = f"{stage}_{h[:8]}"
    staged = read_marker(url, group, storage_options) or {}
    return OutputPlan(group, bool(staged.get("complete") and staged.get("params_hash") == h))


def _root_arrays(url: str, storage_options: dict[str, Any] | None) -> list[str]:
    if not exists(join(url, "zarr.json"), storage_options):
        return []
    return sorted(open_zarr_group(url, None, storage_options).array_keys())


def _node_json(url: str, node: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    return json.loads(read_bytes(join(url, node, "zarr.json") if node else join(url, "zarr.json"), storage_options))


def _write_root_attrs(url: str, attributes: Mapping[str, Any], storage_options: dict[str, Any] | None) -> None:
    """Rewrite the root ``zarr.json`` with ``attributes``, keeping what else it holds (consolidated metadata)."""
    meta = {"zarr_format": 3, "node_type": "group"}
    if exists(join(url, "zarr.json"), storage_options):
        meta = _node_json(url, "", storage_options)
    meta["attributes"] = dict(attributes)
    write_bytes_atomic(join(url, "zarr.json"), json.dumps(meta, indent=2).encode(), storage_options)


def replace_root(url: str, group: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Make the root of the cube at ``url`` equal its complete group ``group``, then remove ``group``.

    Returns the root's array names afterwards. Raises StageOutputError when ``group`` is not complete, or
    when the root holds arrays but no marker of the same stage (it was not written by this stage).
    """
    from insarcloud.io.lease import hold

    staged = _node_json(url, group, storage_options).get("attributes", {})
    marker = dict(staged.get(MARKER, {}))
    if not marker.get("complete"):
        raise StageOutputError(f"group {group!r} of {url} is not complete: it cannot replace the root")
    stage = marker.get("stage")
    new = sorted(open_zarr_group(url, group, storage_options).array_keys())
    with hold(url, "root", storage_options, job=f"stage {stage}: root"):
        old = _root_arrays(url, storage_options)
        root_marker = read_marker(url, "", storage_options) or {}
        if old and root_marker.get("stage") != stage:
            raise StageOutputError(
                f"the root of {url} holds arrays ({', '.join(old[:6])}) that the {stage!r} stage did not write "
                f"(root marker: {root_marker.get('stage')!r}): not replaced, nothing removed")
        old_attrs = (_node_json(url, "", storage_options).get("attributes", {})
                     if exists(join(url, "zarr.json"), storage_options) else {})
        _write_root_attrs(url, {**old_attrs, MARKER: {**root_marker, "stage": stage, "complete": False}},
                          storage_options)
        fs, path = get_fs(url, storage_options)
        path = path.rstrip("/")
        for name in new:
            if name in old:
                with_retries(fs.rm, f"{path}/{name}", recursive=True)
            src = f"{path}/{group}/{name}"
            keys = with_retries(fs.find, src)
            dsts = [f"{path}/{name}{k[len(src):]}" for k in keys]
            if isinstance(fs, LocalFileSystem):  # object stores have no folders; a local copy needs its parents
                for parent in sorted({d.rsplit("/", 1)[0] for d in dsts}):
                    fs.makedirs(parent, exist_ok=True)
            with_retries(fs.copy, keys, dsts)
        for name in sorted(set(old) - set(new)):
            with_retries(fs.rm, f"{path}/{name}", recursive=True)
        with_retries(fs.rm, f"{path}/{group}", recursive=True)
        consolidate(url, storage_options)
        _write_root_attrs(url, staged, storage_options)  # last: the root is complete and current
    log.info("%s: root replaced by %s (%d arrays; %d removed)", url, group, len(new), len(set(old) - set(new)))
    return new


__all__ = ["plan_root_output", "replace_root"]
