"""What a cube URL holds before ingest writes there: refuse what ingest did not make, clean only its own.

Ingest writes only inside what it owns. Before the first object of a new cube it writes a run manifest
(``<cube>/.insarcloud-ingest-run.json``: the frame, the run id and every key the run is about to create);
the cube's root ``zarr.json`` lands last, and the manifest is removed once it has. So at a cube URL:

- a root ``zarr.json`` of a frame cube of this frame: an existing cube (appended to; a left-over manifest of
  this frame, from a run killed between its last two requests, is removed);
- nothing: a new cube;
- only the objects a manifest of this frame lists (a run killed before its root landed): exactly those
  objects are removed, then a new cube;
- anything else (source files, other cubes, another frame's cube, a Zarr store that is no frame cube, a
  manifest of another frame): :class:`~insarcloud.errors.CubeOwnershipError` naming the URL and what was
  found; nothing is deleted.

Listing is one request (``ls`` of the URL's top level) for the usual cases; a recursive ``find`` runs only
when a manifest says a killed run may have left objects, before any of them is removed.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from typing import Any, Literal

from insarcloud.errors import CubeOwnershipError
from insarcloud.io.storage import get_fs, protocol_of, with_retries

log = logging.getLogger(__name__)

MANIFEST = ".insarcloud-ingest-run.json"
_TMP = re.compile(r"^(?P<key>.+)\.tmp-\d+(-\d+)?$")  # local atomic writes: <key>.tmp-<pid>[-<rand>]


def _rel(root: str, path: str) -> str:
    path = path.rstrip("/")
    return path[len(root) + 1:] if path.startswith(root + "/") else path


def _describe(names: list[str], root: str) -> str:
    shown = ", ".join(sorted(names)[:5])
    more = f", ... ({len(names)} in all)" if len(names) > 5 else ""
    return shown + more


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        data = with_retries(fs.cat_file, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        out = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"_unreadable": True}
    return out if isinstance(out, dict) else {"_unreadable": True}


def check_target(cube_url: str, frame: str, storage_options: dict[str, Any] | None = None
                 ) -> Literal["new", "existing"]:
    """Decide whether ``cube_url`` is this frame's existing cube or room for a new one (see the module
    docstring); remove a killed run's recorded objects; raise CubeOwnershipError for anything else."""
    fs, root = get_fs(cube_url, storage_options)
    root = root.rstrip("/")
    meta = _read_json(fs, f"{root}/zarr.json")
    manifest = _read_json(fs, f"{root}/{MANIFEST}")
    if manifest is not None and manifest.get("frame") != frame:
        raise CubeOwnershipError(
            f"{cube_url} holds an ingest run manifest of frame {manifest.get('frame')!r}, not {frame}: "
            f"refusing to write there (a cube URL names one frame's cube, e.g. .../cubes/{frame}.zarr)")
    if meta is not None:
        attrs = meta.get("attributes") or {}
        if meta.get("node_type") != "group" or "frame" not in attrs:
            raise CubeOwnershipError(f"{cube_url} holds a Zarr {meta.get('node_type', 'object')} that is not a "
                                     f"frame cube (no 'frame' attribute): refusing to write there")
        if attrs["frame"] != frame:
            raise CubeOwnershipError(f"{cube_url} holds the cube of frame {attrs['frame']}, not {frame}: "
                                     f"refusing to write there")
        if manifest is not None:  # killed after its root landed, before the manifest went: ours, done
            with_retries(fs.rm_file, f"{root}/{MANIFEST}")
        return "existing"
    try:
        top = list(with_retries(fs.ls, root, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        top = []
    if any(p.rstrip("/") == root for p in top) and fs.isfile(root):
        raise CubeOwnershipError(f"{cube_url} is a file, not a cube: refusing to write there")
    names = [_rel(root, p) for p in top]
    ours = set(manifest.get("objects", [])) if manifest else set()
    allowed_top = {MANIFEST} | {k.split("/", 1)[0] for k in ours}
    foreign = [n for n in names if n not in allowed_top and not _is_tmp_of(n, ours)]
    if foreign:
        raise CubeOwnershipError(f"{cube_url} holds {len(foreign)} {'entry' if len(foreign) == 1 else 'entries'} "
                                 f"that {'is' if len(foreign) == 1 else 'are'} not this frame's cube: "
                                 f"{_describe(foreign, root)}; refusing to write there (nothing was deleted)")
    if not names:
        return "new"
    if manifest is None or manifest.get("_unreadable"):
        raise CubeOwnershipError(f"{cube_url} holds {_describe(names, root)} and no readable ingest run manifest: "
                                 f"refusing to write there (nothing was deleted)")
    found = [_rel(root, p) for p in with_retries(fs.find, root)]
    leftovers = [n for n in found if n != MANIFEST and (n in ours or _is_tmp_of(n, ours))]
    foreign = [n for n in found if n != MANIFEST and n not in leftovers]
    if foreign:
        raise CubeOwnershipError(f"{cube_url} holds {len(foreign)} objects that are not this cube: "
                                 f"{_describe(foreign, root)}; refusing to write there (nothing was deleted)")
    log.warning("%s: removing %d objects of interrupted ingest run %s (listed in its manifest)", cube_url,
                len(leftovers), manifest.get("run_id"))
    for n in leftovers:  # one by one, by exact key: never a recursive delete
        try:
            with_retries(fs.rm_file, f"{root}/{n}")
        except FileNotFoundError:
            pass
    if protocol_of(cube_url) == "file":
        _remove_empty_dirs(root)
    return "new"


def _is_tmp_of(name: str, ours: set[str]) -> bool:
    m = _TMP.match(name)
    return bool(m and m.group("key") in ours)


def _remove_empty_dirs(root: str) -> None:
    """Remove the folders a local run left empty below ``root`` (never a file, never ``root`` itself)."""
    root = root.removeprefix("file://")
    for here, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
        if here != root:
            try:
                os.rmdir(here)
            except OSError:
                pass


def write_manifest(cube_url: str, frame: str, run_id: str, keys: list[str],
                   storage_options: dict[str, Any] | None = None) -> None:
    """Record, before the first of them is written, every key a new-cube run creates."""
    fs, root = get_fs(cube_url, storage_options)
    root = root.rstrip("/")
    body = json.dumps({"frame": frame, "run_id": run_id, "objects": sorted(keys),
                       "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                       "what": "objects an insarcloud ingest run creates; removed once its root zarr.json lands"},
                      indent=1).encode()
    if protocol_of(cube_url) == "file":
        fs.makedirs(root, exist_ok=True)
        tmp = f"{root}/{MANIFEST}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, f"{root}/{MANIFEST}")
    else:
        with_retries(fs.pipe_file, f"{root}/{MANIFEST}", body)


def remove_manifest(cube_url: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, root = get_fs(cube_url, storage_options)
    try:
        with_retries(fs.rm_file, f"{root.rstrip('/')}/{MANIFEST}")
    except FileNotFoundError:
        pass
