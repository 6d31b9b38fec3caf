"""The stage contract: input fingerprints, "done", and the current-output pointer of each stage (docs/STAGES.md).

A stage's output is identified by its *fingerprint*: the hash of the stage name, its parameters and the
identities of the exact inputs it read (the pair list, the fingerprints of the upstream groups it read,
the content hashes of files such as a model checkpoint; never a path). "Done" means a complete group with
that fingerprint exists; anything else recomputes, and :func:`plan_stage` says why in one line.

Each stage has one pointer in the cube, the group ``stages/<stage>`` whose attributes name the stage's
current output group. It is rewritten (one PUT of one small ``zarr.json``) only after the new group is
complete, so a reader never sees a half-written output; consumers read by stage name through
:func:`open_stage` / :func:`input_group`, never by a fixed group name. Older groups stay until
``insarcloud gc`` removes those no pointer references.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import xarray as xr

from insarcloud.core.contract import StagePlan, StageResult
from insarcloud.errors import CubeError
from insarcloud.io.cube import (
    IDENTITY_KEY,
    IDENTITY_VERSION,
    POINTER_GROUP,
    open_cube,
    open_zarr_group,
    params_hash,
    read_marker,
    resolve_output,
)
from insarcloud.io.storage import exists, join, read_bytes, write_bytes_atomic

log = logging.getLogger(__name__)

POINTER_ATTR = "insarcloud_current"
#: Stages with a pointer, and the group a cube written before pointers existed used for each (None: varies).
STAGE_DEFAULT_GROUPS: dict[str, str | None] = {
    "qc": "qc", "quality": "quality", "unwrap": None, "invert": None, "noise": "noise", "forecast": "forecast",
}
#: Prefixes of every group a stage writes (``gc`` considers only these, and only with a stage marker).
_STAGE_PREFIXES = ("qc", "quality", "unw_", "ts_", "noise", "forecast", "mosaic")


def content_sha256(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """sha256 of an object's bytes (a checkpoint's identity is its content, not where it lies)."""
    return hashlib.sha256(read_bytes(url, storage_options)).hexdigest()


def group_fingerprint(url: str, group: str, storage_options: dict[str, Any] | None = None) -> str:
    """The fingerprint (marker ``params_hash``) of a complete group; CubeError when it is not complete."""
    marker = read_marker(url, group, storage_options) or {}
    if not marker.get("complete"):
        raise CubeError(f"group {group!r} of {url} is absent or incomplete: it cannot be a stage input")
    return str(marker.get("params_hash", ""))


def _pairs_id(pairs: Sequence[str]) -> dict[str, Any]:
    names = [str(p) for p in pairs]
    return {"n": len(names), "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


def stage_identity(stage: str, params: Mapping[str, Any], *, pairs: Sequence[str] | None = None,
                   upstream: Mapping[str, str] | None = None, files: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
    """The identity a fingerprint hashes: stage, params, and the inputs' identities.

    pairs : the pair list the stage actually uses (order included).
    upstream : label -> fingerprint of each upstream group read (e.g. ``{"qc": "a1b2..."}``).
    files : label -> content sha256 of each file read (e.g. ``{"checkpoint": "..."}``).
    """
    inputs: dict[str, Any] = {}
    if pairs is not None:
        inputs["pairs"] = _pairs_id(pairs)
    if upstream:
        inputs["upstream"] = {k: str(v) for k, v in sorted(upstream.items())}
    if files:
        inputs["files"] = {k: str(v) for k, v in sorted(files.items())}
    return json.loads(json.dumps({IDENTITY_KEY: IDENTITY_VERSION, "stage": stage, "params": dict(params),
                                  "inputs": inputs}, default=str))


def fingerprint(identity: Mapping[str, Any]) -> str:
    return params_hash(identity)


# ---------------------------------------------------------------------------------------------------------
# Pointers


def _pointer_url(url: str, stage: str) -> str:
    return join(url, POINTER_GROUP, stage, "zarr.json")


def _group_json(attributes: Mapping[str, Any]) -> bytes:
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}, indent=1).encode()


def read_pointer(url: str, stage: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The pointer of ``stage`` (``group``, ``base``, ``fingerprint``, ``updated_at``), None when it has none."""
    try:
        meta = json.loads(read_bytes(_pointer_url(url, stage), storage_options))
    except (FileNotFoundError, OSError):
        return None
    ptr = meta.get("attributes", {}).get(POINTER_ATTR)
    return dict(ptr) if ptr else None


def read_pointers(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every stage pointer of the cube (stage -> pointer)."""
    try:
        root = open_zarr_group(url, POINTER_GROUP, storage_options)
    except CubeError:
        return {}
    out = {}
    for name, _ in root.groups():
        ptr = read_pointer(url, name, storage_options)
        if ptr:
            out[name] = ptr
    return out


def set_current(url: str, stage: str, group: str, storage_options: dict[str, Any] | None = None, *,
                base: str | None = None) -> None:
    """Point ``stage`` at the complete ``group`` (one atomic object write; call it after the group is done)."""
    marker = read_marker(url, group, storage_options) or {}
    if not marker.get("complete"):
        raise CubeError(f"cannot point {stage!r} at {group!r} of {url}: the group is not complete")
    parent = join(url, POINTER_GROUP, "zarr.json")
    if not exists(parent, storage_options):
        write_bytes_atomic(parent, _group_json({"description": "insarcloud stage pointers (docs/STAGES.md)"}),
                           storage_options)
    old = read_pointer(url, stage, storage_options)
    if old and old.get("group") == group and old.get("fingerprint") == marker.get("params_hash"):
        return  # unchanged: no write (a no-op run leaves the cube's objects as they were)
    ptr = {"stage": stage, "group": group, "base": base or group, "fingerprint": marker.get("params_hash"),
           "updated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    write_bytes_atomic(_pointer_url(url, stage), _group_json({POINTER_ATTR: ptr}), storage_options)
    log.debug("%s: %s now points at %s", url, stage, group)


def current_group(url: str, stage: str, storage_options: dict[str, Any] | None = None,
                  default: str | None = None) -> str | None:
    """The group ``stage``'s pointer names when it is complete; else ``default`` (or the stage's legacy group)
    when that is complete; else None."""
    ptr = read_pointer(url, stage, storage_options)
    if ptr and (read_marker(url, ptr["group"], storage_options) or {}).get("complete"):
        return str(ptr["group"])
    fallback = default if default is not None else STAGE_DEFAULT_GROUPS.get(stage)
    if fallback and (read_marker(url, fallback, storage_options) or {}).get("complete"):
        return fallback
    return None


def input_group(url: str, stage: str, requested: str | None = None,
                storage_options: dict[str, Any] | None = None) -> str:
    """The group a consumer reads for ``stage``'s output.

    ``requested`` None: the stage's current group. A group name (e.g. ``ts_quality``, a stage's base
    name): the stage's current group when the pointer's base is that name (a newer output of the same
    kind), else that group itself. CubeError when nothing complete is found.
    """
    ptr = read_pointer(url, stage, storage_options)
    if ptr and (requested is None or requested in (ptr.get("base"), ptr.get("group"))):
        if (read_marker(url, ptr["group"], storage_options) or {}).get("complete"):
            return str(ptr["group"])
    group = requested if requested is not None else current_group(url, stage, storage_options)
    if group is None:
        raise CubeError(f"{url} has no complete output of the {stage!r} stage: run `insarcloud {stage}` first")
    return group


def optional_input_group(url: str, stage: str, requested: str | None = None,
                         storage_options: dict[str, Any] | None = None) -> str | None:
    """:func:`input_group` when that group is complete, else None (an optional input such as noise)."""
    try:
        group = input_group(url, stage, requested, storage_options)
    except CubeError:
        return None
    return group if (read_marker(url, group, storage_options) or {}).get("complete") else None


def open_stage(url: str, stage: str, storage_options: dict[str, Any] | None = None, *,
               requested: str | None = None, chunks: Any = None) -> xr.Dataset:
    """The current output of ``stage`` in the cube at ``url`` (lazy, Dask-backed)."""
    return open_cube(url, storage_options, group=input_group(url, stage, requested, storage_options),
                     chunks=chunks)


# ---------------------------------------------------------------------------------------------------------
# Plans


def _old_pairs(url: str, group: str, storage_options: dict[str, Any] | None) -> list[str] | None:
    try:
        g = open_zarr_group(url, group, storage_options)
        if "pair" in g.array_keys():
            return [str(v) for v in g["pair"][:]]
    except (CubeError, KeyError, ValueError):
        pass
    return None


def _diff(old: Mapping[str, Any] | None, new: Mapping[str, Any], old_pairs: list[str] | None,
          new_pairs: Sequence[str] | None) -> str:
    if old is None:
        return "no previous output"
    if "inputs" not in old or "stage" not in old:
        return "previous output has no input fingerprint (written before the stage contract)"
    why = []
    op, np_ = old.get("params", {}), new.get("params", {})
    changed = sorted(k for k in set(op) | set(np_) if op.get(k) != np_.get(k))
    if changed:
        why.append("params changed: " + ", ".join(changed))
    oi, ni = old.get("inputs", {}), new.get("inputs", {})
    if oi.get("pairs") != ni.get("pairs"):
        if old_pairs is not None and new_pairs is not None:
            added = [p for p in new_pairs if p not in set(old_pairs)]
            removed = [p for p in old_pairs if p not in set(new_pairs)]
            part = []
            if added:
                part.append(f"+{len(added)}: " + ", ".join(added[:3]) + (" ..." if len(added) > 3 else ""))
            if removed:
                part.append(f"-{len(removed)}: " + ", ".join(removed[:3]) + (" ..." if len(removed) > 3 else ""))
            why.append("pairs " + ("; ".join(part) or "reordered"))
        else:
            why.append(f"pairs {oi.get('pairs', {}).get('n', '?')} -> {ni.get('pairs', {}).get('n', '?')}")
    for kind in ("upstream", "files"):
        o, n = oi.get(kind, {}), ni.get(kind, {})
        for k in sorted(set(o) | set(n)):
            if o.get(k) != n.get(k):
                why.append(f"{k} {'fingerprint' if kind == 'upstream' else 'content'} "
                           f"{str(o.get(k) or 'none')[:8]} -> {str(n.get(k) or 'none')[:8]}")
    return "inputs changed (" + "; ".join(why) + ")" if why else "previous output is not complete"


_DECISIONS: dict[tuple[str, str], StagePlan] = {}
_DECISIONS_LOCK = threading.Lock()


def last_plan(url: str, stage: str) -> StagePlan | None:
    """The last plan this process made for ``stage`` of the cube at ``url`` (what the area job reports)."""
    with _DECISIONS_LOCK:
        return _DECISIONS.get((url, stage))


def run_planned(url: str, stage: str, fn: Callable[[], Any]) -> tuple[Any, StagePlan]:
    """``fn()`` (a stage's existing entry point on the cube at ``url``) and the plan it made: the stage entry
    points (``insarcloud/<stage>/stage.py``) turn their stage's own return value into a :class:`StageResult`.

    CubeError when ``fn`` made no plan for ``stage`` of ``url`` (a stage that bypassed :func:`plan_stage`).
    """
    with _DECISIONS_LOCK:
        _DECISIONS.pop((url, stage), None)  # a plan of an earlier call in this process must not stand in
    value = fn()
    plan = last_plan(url, stage)
    if plan is None:
        raise CubeError(f"the {stage} stage ran on {url} without planning its output (insarcloud.io.stages)")
    return value, plan


def stage_result(stage: str, plan: StagePlan, summary: Mapping[str, Any] | None = None,
                 group: str | None = None) -> StageResult:
    """The :class:`StageResult` of ``plan`` (group: the plan's unless given)."""
    return StageResult(stage, plan.group if group is None else group, plan, dict(summary or {}))


def plan_stage(url: str, stage: str, group: str, params: Mapping[str, Any], *,
               pairs: Sequence[str] | None = None, upstream: Mapping[str, str] | None = None,
               files: Mapping[str, str] | None = None, storage_options: dict[str, Any] | None = None,
               log_it: bool = True) -> StagePlan:
    """Decide what ``stage`` does: nothing (a complete group with the same fingerprint exists) or write
    ``plan.group`` (``group``, or ``f"{group}_{fingerprint[:8]}"`` when ``group`` holds another complete
    output: never overwritten). Logs one line saying why it recomputes."""
    identity = stage_identity(stage, params, pairs=pairs, upstream=upstream, files=files)
    fp = fingerprint(identity)
    out = resolve_output(url, group, identity, storage_options)
    if out.done:
        reason = f"current (fingerprint {fp[:8]})"
        if log_it:
            log.info("%s: %s of %s is %s: nothing to do", stage, out.group, url, reason)
        return _remember(url, StagePlan(stage, out.group, True, fp, identity, reason))
    ptr = read_pointer(url, stage, storage_options)
    prev = ptr["group"] if ptr else group
    marker = read_marker(url, prev, storage_options)
    old = None
    if marker and marker.get("complete"):  # the identity the marker records (none before the stage contract)
        old = {"stage": marker.get("stage"), "params": marker.get("params", {}), "inputs": marker["inputs"]} \
            if "inputs" in marker else {}
    old_pairs = _old_pairs(url, prev, storage_options) if old is not None and pairs is not None else None
    reason = _diff(old, identity, old_pairs, None if pairs is None else [str(p) for p in pairs])
    if log_it:
        log.info("%s: recomputing %s: %s", stage, out.group, reason)
    return _remember(url, StagePlan(stage, out.group, False, fp, identity, reason))


def _remember(url: str, plan: StagePlan) -> StagePlan:
    with _DECISIONS_LOCK:
        _DECISIONS[(url, plan.stage)] = plan
    return plan


def finish_stage(url: str, plan: StagePlan, storage_options: dict[str, Any] | None = None,
                 base: str | None = None) -> None:
    """After ``plan.group`` is complete (or found done): make it the stage's current output."""
    set_current(url, plan.stage, plan.group, storage_options, base=base)


# ---------------------------------------------------------------------------------------------------------
# Garbage collection


class GcPlan(NamedTuple):
    """remove : stage groups no pointer references (they carry an insarcloud stage marker).
    keep : groups kept and why (``"current <stage>"``, ``"not a stage output"``, ...)."""

    remove: list[str]
    keep: dict[str, str]


def gc_plan(url: str, storage_options: dict[str, Any] | None = None) -> GcPlan:
    """Which groups ``gc`` removes: only stage outputs written by insarcloud (marker present, name of a stage
    kind) that no stage pointer references. Everything else is kept (nothing the program did not create is
    deleted). A cube without any pointer keeps everything (its consumers still read fixed names)."""
    root = open_zarr_group(url, None, storage_options)
    pointers = read_pointers(url, storage_options)
    referenced = {p["group"]: s for s, p in pointers.items()}
    remove, keep = [], {}
    for name, _ in sorted(root.groups()):
        if name == POINTER_GROUP:
            keep[name] = "stage pointers"
            continue
        marker = read_marker(url, name, storage_options)
        if name in referenced:
            keep[name] = f"current {referenced[name]}"
        elif not marker or not marker.get("stage"):
            keep[name] = "not a stage output (no insarcloud marker)"
        elif not name.startswith(_STAGE_PREFIXES):
            keep[name] = "not a stage group name"
        elif marker.get("stage") not in pointers:
            keep[name] = f"stage {marker.get('stage')!r} has no pointer"
        else:
            remove.append(name)
    return GcPlan(remove, keep)


def gc(url: str, storage_options: dict[str, Any] | None = None, *, dry_run: bool = False) -> GcPlan:
    """Remove the groups :func:`gc_plan` lists (all, or none with ``dry_run``), then refresh metadata."""
    from insarcloud.io.cube import consolidate
    from insarcloud.io.storage import get_fs, with_retries

    plan = gc_plan(url, storage_options)
    if dry_run or not plan.remove:
        return plan
    fs, path = get_fs(url, storage_options)
    for name in plan.remove:
        log.info("gc: removing %s/%s (stage %s, not current)", url, name,
                 (read_marker(url, name, storage_options) or {}).get("stage"))
        with_retries(fs.rm, f"{path.rstrip('/')}/{name}", recursive=True)
    consolidate(url, storage_options)
    return plan


__all__ = [
    "GcPlan", "POINTER_GROUP", "StagePlan", "content_sha256", "current_group", "finish_stage", "fingerprint",
    "gc", "gc_plan", "group_fingerprint", "input_group", "last_plan", "open_stage", "optional_input_group",
    "plan_stage", "read_pointer", "read_pointers", "set_current", "stage_identity",
]
