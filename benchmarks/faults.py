"""Fault table: the real CLI against hostile inputs and faults on a local S3 endpoint (issue 17).

    python benchmarks/faults.py --json bench-output/faults.json [--only CASE ...] [--list]

Starts moto's S3 server on loopback and one Dask cluster of worker processes (the CLIs share it through
``--scheduler``, so a killed CLI leaves no workers behind), ingests the real frame crop
(tests/data/licsar) once as the reference, then runs each case with ``python -m insarcloud.cli`` in its own
process and prints a table:

- outcome: the exit code and the line of output that explains it;
- data lost: a sentinel object beside ``--cube`` (and every object of an existing cube or source tree the
  case points at) is checked by ETag before and after: yes when any is gone or changed;
- landed: the good pairs that should be in the cube are there, ingested, with the reference's dates and
  data ("-" where the case writes no cube);
- names the thing: the message names the URL, file, pair, owner or option at fault ("-" where no error is
  expected);
- pass: the issue's expected behaviour held (each case states it).

Faults are injected at recorded points, never after a guessed time: a process stops itself right after its
lease exists (``INSARCLOUD_FAULT_STOP_AT``); the endpoint goes down after the Nth data object PUT through a
TCP proxy in front of moto (and comes back after a fixed outage, the fault's own shape). Cases that hang on
a tree without the fix are stopped at ``--timeout`` seconds and count as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from insarcloud.pipelines.local_s3 import free_port, local_s3, stop_process  # noqa: E402

FRAME = "106A_09048_000909"
CROP = ROOT / "tests" / "data" / "licsar"
FRAME_DIR = CROP / "106" / FRAME
GOOD_PAIRS = sorted(p.name for p in (FRAME_DIR / "interferograms").iterdir())
KEY_ID = "AKIAFAULTBENCH7Q2XZ9"  # moto accepts any key; a distinctive one to look for in logs
SECRET = "faultbench/secret/Zq8vX3nM5pL0wR7tY2uI"


@dataclass
class Outcome:
    case: str
    expected: str
    rc: int | None = None
    message: str = ""
    data_lost: bool = False
    landed: bool | None = None
    names_thing: bool | None = None
    passed: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Bench:
    endpoint: str
    so: dict[str, Any]
    bucket: str
    scheduler: str
    timeout: float
    reference: Any = None

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(**self.so)

    def prefix(self, case: str) -> str:
        """A fresh folder ``bucket/case-xxxxxx`` (no scheme)."""
        return f"{self.bucket.removeprefix('s3://')}/{case.replace('/', '-')}-{uuid.uuid4().hex[:6]}"

    def upload_source(self, prefix: str) -> str:
        """The crop under ``s3://{prefix}/licsar/106/FRAME``; returns the LiCSAR root URL."""
        fs = self.fs()
        for path in FRAME_DIR.rglob("*"):
            if path.is_file():
                fs.pipe_file(f"{prefix}/licsar/106/{FRAME}/{path.relative_to(FRAME_DIR)}", path.read_bytes())
        return f"s3://{prefix}/licsar"

    def put(self, url: str, data: bytes) -> None:
        self.fs().pipe_file(url.removeprefix("s3://"), data)

    def get(self, url: str) -> bytes:
        return self.fs().cat_file(url.removeprefix("s3://"))

    def snapshot(self, url: str) -> dict[str, str]:
        """{key: ETag} of every object under ``url`` (or of the object itself)."""
        fs = self.fs()
        path = url.removeprefix("s3://").rstrip("/")
        try:
            found = fs.find(path, detail=True)
        except FileNotFoundError:
            found = {}
        if not found and fs.isfile(path):
            found = {path: fs.info(path)}
        return {k: str(v.get("ETag")) for k, v in found.items()}

    def sentinel(self, folder: str) -> tuple[str, dict[str, str]]:
        url = f"{folder.rstrip('/')}/SENTINEL-do-not-delete.txt"
        self.put(url, b"a user's file that insarcloud did not create\n")
        return url, self.snapshot(url)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float | None = None,
            scheduler: bool = True, stop_at: str | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "insarcloud.cli", *args]
        if scheduler and args and args[0] == "ingest":
            cmd += ["--scheduler", self.scheduler]
        e = dict(os.environ)
        e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        e.update(env or {})
        if stop_at:
            e["INSARCLOUD_FAULT_STOP_AT"] = stop_at
        return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def run(self, *args: str, **kw: Any) -> tuple[int | None, str]:
        """Run the CLI to its end (or ``--timeout``: then kill its process group, rc None)."""
        timeout = kw.pop("timeout", None) or self.timeout
        proc = self.cli(*args, **kw)
        try:
            out, err = proc.communicate(timeout=timeout)
            return proc.returncode, out + err
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return None, out + err + f"\n[killed after {timeout:.0f}s]"

    def ingest(self, src: str, cube: str, *extra: str, **kw: Any) -> tuple[int | None, str]:
        return self.run("ingest", src, "--frame", FRAME, "--cube", cube, "--chunk", "128", *extra, **kw)

    def pairs_equal_reference(self, cube: str, pairs: list[str]) -> bool:
        """``pairs`` are in the cube, ingested, with the reference's dates and data."""
        from insarcloud.io import open_cube

        try:
            ds = open_cube(cube, self.so)
        except Exception:  # noqa: BLE001 (a cube that does not open is the finding)
            return False
        have = [str(p) for p in ds.pair.values]
        if not set(pairs) <= set(have):
            return False
        ref = self.reference
        for p in pairs:
            a, b = ds.sel(pair=p), ref.sel(pair=p)
            if a.primary.values != b.primary.values or a.secondary.values != b.secondary.values:
                return False
            for name in ("phase", "coh"):
                if not np.array_equal(a[name].values, b[name].values, equal_nan=True):
                    return False
        return True


def _message(text: str) -> str:
    """The line a user would read: an error line if any, else the last non-log line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for key in ("error:", "FAILED", "Error", "refused", "ERROR"):
        hit = [ln for ln in lines if key in ln and "distributed." not in ln]
        if hit:
            return hit[0][:300]
    summary = [ln for ln in lines if "pairs written" in ln]
    if summary:
        return summary[-1][:300]
    plain = [ln for ln in lines if " INFO " not in ln and " DEBUG " not in ln and "distributed." not in ln]
    return (plain[-1] if plain else (lines[-1] if lines else ""))[:300]


def _unchanged(b: Bench, snaps: dict[str, dict[str, str]]) -> bool:
    return all(b.snapshot(url) == snap for url, snap in snaps.items())


CASES: dict[str, tuple[str, Callable[[Bench, Outcome], None]]] = {}


def case(name: str, expected: str) -> Callable:
    def deco(fn: Callable[[Bench, Outcome], None]) -> Callable:
        CASES[name] = (expected, fn)
        return fn
    return deco


# --------------------------------------------------------------------------------------------------
# Where ingest writes


@case("cube_at_source_folder", "refused (rc != 0) naming the URL; every source file kept")
def _cube_at_source(b: Bench, o: Outcome) -> None:
    p = b.prefix("srcfolder")
    src = b.upload_source(p)
    target = f"{src}/106/{FRAME}"
    snaps = {target: b.snapshot(target)}
    o.rc, out = b.ingest(src, target)
    o.message = _message(out)
    o.data_lost = not _unchanged(b, snaps)
    o.names_thing = target.removeprefix("s3://") in out
    o.passed = o.rc not in (0, None) and not o.data_lost and o.names_thing


@case("cube_at_folder_of_cubes", "refused naming the URL; the cubes and a sentinel there kept")
def _cube_at_folder(b: Bench, o: Outcome) -> None:
    p = b.prefix("cubesfolder")
    cubes = f"s3://{p}/cubes"
    b.fs().copy(f"{b.bucket.removeprefix('s3://')}/reference/{FRAME}.zarr", f"{p}/cubes/{FRAME}.zarr",
                recursive=True)
    sentinel, _ = b.sentinel(cubes)
    snaps = {cubes: b.snapshot(cubes)}
    o.rc, out = b.ingest(str(CROP), cubes)
    o.message = _message(out)
    o.data_lost = not _unchanged(b, snaps)
    o.names_thing = cubes.removeprefix("s3://") in out
    o.passed = o.rc not in (0, None) and not o.data_lost and o.names_thing


@case("cube_of_another_frame", "refused naming the URL and the other frame; that cube kept")
def _cube_other_frame(b: Bench, o: Outcome) -> None:
    from insarcloud.io import make_frame_dataset, write_new_cube

    p = b.prefix("otherframe")
    cube = f"s3://{p}/cubes/{FRAME}.zarr"
    other = "001D_00001_000001"
    shape = (2, 8, 8)
    ds = make_frame_dataset(frame=other, pairs=["20200101_20200113", "20200113_20200125"],
                            lat=40 - np.arange(8) * 1e-3, lon=10 + np.arange(8) * 1e-3,
                            phase=np.zeros(shape, "float32"), coh=np.ones(shape, "float32"))
    write_new_cube(ds, cube, b.so)
    sentinel, _ = b.sentinel(f"s3://{p}/cubes")
    snaps = {f"s3://{p}/cubes": b.snapshot(f"s3://{p}/cubes")}
    o.rc, out = b.ingest(str(CROP), cube)
    o.message = _message(out)
    o.data_lost = not _unchanged(b, snaps)
    o.names_thing = cube.removeprefix("s3://") in out or other in out
    o.passed = o.rc not in (0, None) and not o.data_lost and o.names_thing


# --------------------------------------------------------------------------------------------------
# One writer per cube


def _stopped_at_lease(b: Bench, cube: str, ttl: str = "600") -> subprocess.Popen:
    proc = b.cli("ingest", str(CROP), "--frame", FRAME, "--cube", cube, "--chunk", "128",
                 env={"INSARCLOUD_LEASE_TTL_S": ttl}, stop_at="lease-acquired")
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("insarcloud-fault-point lease-acquired"):
            return proc
    proc.wait()
    raise RuntimeError(f"ingest exited ({proc.returncode}) before taking its lease (no lease on this tree?)")


@case("two_concurrent_ingests", "the second is refused naming the first's owner (or waits); the cube equals one run")
def _two_ingests(b: Bench, o: Outcome) -> None:
    from insarcloud.io.lease import read_lease

    p = b.prefix("concurrent")
    cube = f"s3://{p}/cubes/{FRAME}.zarr"
    sentinel, snap = b.sentinel(f"s3://{p}/cubes")
    first = _stopped_at_lease(b, cube)
    try:
        owner = (read_lease(cube, "root", b.so) or {}).get("owner", "?")
        o.rc, out = b.ingest(str(CROP), cube)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out1, err1 = first.communicate(timeout=b.timeout)
    o.message = _message(out)
    o.names_thing = owner in out
    same = o.landed = b.pairs_equal_reference(cube, GOOD_PAIRS)
    o.data_lost = not _unchanged(b, {sentinel: snap})
    o.notes.append(f"first run rc={first.returncode}")
    o.passed = o.rc not in (0, None) and o.names_thing and first.returncode == 0 and same and not o.data_lost


@case("killed_owner_then_resume", "SIGKILL while holding the lease; the next run takes it over and completes")
def _killed_owner(b: Bench, o: Outcome) -> None:
    p = b.prefix("killed")
    cube = f"s3://{p}/cubes/{FRAME}.zarr"
    sentinel, snap = b.sentinel(f"s3://{p}/cubes")
    first = _stopped_at_lease(b, cube)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    o.rc, out = b.ingest(str(CROP), cube)
    o.message = _message(out)
    same = o.landed = b.pairs_equal_reference(cube, GOOD_PAIRS)
    o.data_lost = not _unchanged(b, {sentinel: snap})
    o.names_thing = None
    o.passed = o.rc == 0 and same and not o.data_lost


# --------------------------------------------------------------------------------------------------
# Bad metadata, folder names and phase values: the rest of the frame lands, the bad file is named


def _bad_source_case(b: Bench, o: Outcome, tag: str, mutate: Callable[[str], str], good: list[str],
                     again: bool = False) -> None:
    p = b.prefix(tag)
    src = b.upload_source(p)
    frame_url = f"{src}/106/{FRAME}"
    named = mutate(frame_url)
    cube = f"s3://{p}/cubes/{FRAME}.zarr"
    sentinel, snap = b.sentinel(f"s3://{p}/cubes")
    o.rc, out = b.ingest(src, cube)
    o.message = _message(out)
    landed = b.pairs_equal_reference(cube, good)
    if again and landed:  # later appends must still work
        rc2, out2 = b.ingest(src, cube)
        o.notes.append(f"second run rc={rc2}: {_message(out2)}")
        landed = rc2 == o.rc and "Traceback" not in out2 and b.pairs_equal_reference(cube, good)
    o.landed = landed
    o.data_lost = not _unchanged(b, {sentinel: snap})
    o.names_thing = named in out
    o.passed = o.rc not in (0, None) and "Traceback" not in out and landed and o.names_thing and not o.data_lost


def _edit(b: Bench, url: str, fn: Callable[[bytes], bytes]) -> None:
    b.put(url, fn(b.get(url)))


@case("bad_baselines_value", "good pairs land; rc != 0 naming metadata/baselines")
def _bad_baselines(b: Bench, o: Outcome) -> None:
    def mutate(frame_url: str) -> str:
        _edit(b, f"{frame_url}/metadata/baselines", lambda d: d.replace(b"-98", b"abc", 1))
        return "baselines"
    _bad_source_case(b, o, "baselines", mutate, GOOD_PAIRS)


@case("heading_n/a", "good pairs land; rc != 0 naming metadata.txt")
def _bad_heading(b: Bench, o: Outcome) -> None:
    def mutate(frame_url: str) -> str:
        _edit(b, f"{frame_url}/metadata/metadata.txt",
              lambda d: b"\n".join(b"heading=n/a" if ln.startswith(b"heading=") else ln for ln in d.split(b"\n")))
        return "metadata.txt"
    _bad_source_case(b, o, "heading", mutate, GOOD_PAIRS)


@case("bad_poly_line", "good pairs land; rc != 0 naming the -poly.txt file")
def _bad_poly(b: Bench, o: Outcome) -> None:
    def mutate(frame_url: str) -> str:
        _edit(b, f"{frame_url}/metadata/{FRAME}-poly.txt", lambda d: d + b"-92.1 not-a-number\n")
        return f"{FRAME}-poly.txt"
    _bad_source_case(b, o, "poly", mutate, GOOD_PAIRS)


@case("non_utf8_metadata", "good pairs land; rc != 0 naming metadata.txt")
def _non_utf8(b: Bench, o: Outcome) -> None:
    def mutate(frame_url: str) -> str:
        _edit(b, f"{frame_url}/metadata/metadata.txt", lambda d: d.replace(b"TanDEMX", b"Tan\xff\xfeDEMX"))
        return "metadata.txt"
    _bad_source_case(b, o, "nonutf8", mutate, GOOD_PAIRS)


@case("bad_folder_20241318_20241330", "good pairs land and a later append works; rc != 0 naming the folder")
def _bad_folder(b: Bench, o: Outcome) -> None:
    bad = "20241318_20241330"

    def mutate(frame_url: str) -> str:
        good = GOOD_PAIRS[0]
        for kind in ("diff_pha", "cc"):
            data = (FRAME_DIR / "interferograms" / good / f"{good}.geo.{kind}.tif").read_bytes()
            b.put(f"{frame_url}/interferograms/{bad}/{bad}.geo.{kind}.tif", data)
        return bad
    _bad_source_case(b, o, "folder", mutate, GOOD_PAIRS, again=True)


def _rewrite_phase(b: Bench, frame_url: str, pair: str, fn: Callable[[np.ndarray], np.ndarray], dtype: str) -> str:
    import rasterio
    from rasterio.io import MemoryFile

    path = FRAME_DIR / "interferograms" / pair / f"{pair}.geo.diff_pha.tif"
    with rasterio.open(path) as src:
        arr, profile = src.read(1), src.profile
    profile.update(dtype=dtype, nodata=None)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(fn(arr).astype(dtype), 1)
        b.put(f"{frame_url}/interferograms/{pair}/{pair}.geo.diff_pha.tif", mem.read())
    return f"{pair}.geo.diff_pha.tif"


PHASE_FAULTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "int16": (lambda a: np.round(np.nan_to_num(a) * 1000), "int16"),  # milliradians, as some tools store it
    "uint8": (lambda a: np.round((np.nan_to_num(a) + np.pi) / (2 * np.pi) * 255), "uint8"),
    "x100": (lambda a: a * 100, "float32"),
}

for _kind in PHASE_FAULTS:
    def _make(kind: str) -> Callable[[Bench, Outcome], None]:
        def run(b: Bench, o: Outcome) -> None:
            bad_pair = GOOD_PAIRS[1]

            def mutate(frame_url: str) -> str:
                fn, dtype = PHASE_FAULTS[kind]
                return _rewrite_phase(b, frame_url, bad_pair, fn, dtype)
            _bad_source_case(b, o, f"phase-{kind}", mutate, [p for p in GOOD_PAIRS if p != bad_pair])
        return run
    case(f"phase_{_kind}", "that pair refused naming its file; the others land; rc != 0")(_make(_kind))


@case("corrected_file_replaced", "after a bad (x100) phase file is corrected at the source, re-ingest replaces "
      "the pair "
      "(rc 0, cube equals the reference, the pair named)")
def _corrected(b: Bench, o: Outcome) -> None:
    p = b.prefix("corrected")
    src = b.upload_source(p)
    frame_url = f"{src}/106/{FRAME}"
    pair = GOOD_PAIRS[1]
    _rewrite_phase(b, frame_url, pair, PHASE_FAULTS["x100"][0], "float32")
    cube = f"s3://{p}/cubes/{FRAME}.zarr"
    sentinel, snap = b.sentinel(f"s3://{p}/cubes")
    rc1, out1 = b.ingest(src, cube)
    o.notes.append(f"first run (bad file) rc={rc1}: {_message(out1)}")
    good = (FRAME_DIR / "interferograms" / pair / f"{pair}.geo.diff_pha.tif").read_bytes()
    b.put(f"{frame_url}/interferograms/{pair}/{pair}.geo.diff_pha.tif", good)
    o.rc, out = b.ingest(src, cube)
    o.message = _message(out)
    same = o.landed = b.pairs_equal_reference(cube, GOOD_PAIRS)
    o.data_lost = not _unchanged(b, {sentinel: snap})
    o.names_thing = pair in out
    o.passed = o.rc == 0 and same and not o.data_lost and o.names_thing


for _kind, _fn in {"truncated": lambda d: d[: len(d) // 2], "garbage": lambda d: os.urandom(len(d))}.items():
    def _make_corrupt(kind: str, fn: Callable[[bytes], bytes]) -> Callable[[Bench, Outcome], None]:
        def run(b: Bench, o: Outcome) -> None:
            bad_pair = GOOD_PAIRS[2]

            def mutate(frame_url: str) -> str:
                _edit(b, f"{frame_url}/interferograms/{bad_pair}/{bad_pair}.geo.diff_pha.tif", fn)
                return f"{bad_pair}.geo.diff_pha.tif"
            _bad_source_case(b, o, f"corrupt-{kind}", mutate, [p for p in GOOD_PAIRS if p != bad_pair])
        return run
    case(f"corrupt_geotiff_{_kind}", "that pair refused naming its file; the others land; rc != 0")(
        _make_corrupt(_kind, _fn))


# --------------------------------------------------------------------------------------------------
# Storage faults


class FlakyProxy:
    """A TCP proxy in front of the S3 endpoint that goes down after the Nth data-object PUT it forwards
    (a recorded point) for ``outage`` seconds, then listens again on the same port."""

    def __init__(self, upstream_port: int, after_puts: int, outage: float) -> None:
        self.port, self.upstream = free_port(), upstream_port
        self.after, self.outage = after_puts, outage
        self.puts, self.went_down, self.came_back = 0, threading.Event(), threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(65536):
                if count and not self.went_down.is_set():
                    self.puts += data.count(b"PUT ") if b"/c/" in data else 0
                    if self.puts >= self.after:
                        self.loop.create_task(self._outage())
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self.conns.update({writer, up_w})
        await asyncio.gather(self._pipe(reader, up_w, True), self._pipe(up_r, writer, False))
        self.conns.difference_update({writer, up_w})

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _outage(self) -> None:
        if self.went_down.is_set():
            return
        self.went_down.set()
        assert self.server is not None
        self.server.close()
        for w in list(self.conns):
            w.transport.abort()
        await asyncio.sleep(self.outage)
        await self._listen()
        self.came_back.set()

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
            for w in list(self.conns):
                w.transport.abort()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@case("endpoint_down_8s_mid_ingest", "retries through the outage: rc 0 and the cube equals the reference (or a "
      "clear 'storage unreachable' error naming the endpoint, never a file blamed)")
def _endpoint_down(b: Bench, o: Outcome) -> None:
    p = b.prefix("outage")
    cube = f"s3://{p}/cubes/{FRAME}.zarr"
    sentinel, snap = b.sentinel(f"s3://{p}/cubes")
    upstream = int(b.endpoint.rsplit(":", 1)[1])
    with FlakyProxy(upstream, after_puts=3, outage=8.0) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        o.rc, out = b.ingest(str(CROP), cube, env={"AWS_ENDPOINT_URL": endpoint})
        o.notes.append(f"proxy went down after {proxy.puts} data PUTs: {proxy.went_down.is_set()}, "
                       f"came back: {proxy.came_back.is_set()}")
    o.message = _message(out)
    same = o.landed = b.pairs_equal_reference(cube, GOOD_PAIRS)
    o.data_lost = not _unchanged(b, {sentinel: snap})
    blamed_file = any(s in out for s in ("not a supported file format", "corrupt")) and ".tif" in out
    unreachable = "unreachable" in out.lower() and str(proxy.port) in out
    o.names_thing = None if o.rc == 0 else unreachable
    o.passed = proxy.went_down.is_set() and not o.data_lost and not blamed_file and (
        (o.rc == 0 and same) or (o.rc not in (0, None) and unreachable))


# --------------------------------------------------------------------------------------------------
# Arguments, logs, review server


for _chunk in ("0", "-512"):
    def _make_chunk(value: str) -> Callable[[Bench, Outcome], None]:
        def run(b: Bench, o: Outcome) -> None:
            p = b.prefix("chunk")
            cube = f"s3://{p}/cubes/{FRAME}.zarr"
            sentinel, snap = b.sentinel(f"s3://{p}/cubes")
            # No --scheduler: a run that is not refused must not leave 1-pixel tasks on the shared workers.
            o.rc, out = b.run("ingest", str(CROP), "--frame", FRAME, "--cube", cube, "--chunk", value,
                              scheduler=False, timeout=min(b.timeout, 90))
            o.message = _message(out)
            o.data_lost = not _unchanged(b, {sentinel: snap})
            o.names_thing = "--chunk" in out or "chunk" in o.message
            o.passed = o.rc not in (0, None) and o.names_thing and not o.data_lost and "Traceback" not in out
        return run
    case(f"chunk_{_chunk}", "refused before any cluster starts, naming --chunk")(_make_chunk(_chunk))


@case("debug_log_has_no_key_id", "INSARCLOUD_LOG_LEVEL=DEBUG ingest: neither the access key id nor the secret "
      "appears in the output")
def _debug_log(b: Bench, o: Outcome) -> None:
    p = b.prefix("debuglog")
    cube = f"s3://{p}/cubes/{FRAME}.zarr"
    o.rc, out = b.ingest(str(CROP), cube, env={"INSARCLOUD_LOG_LEVEL": "DEBUG", "AWS_ACCESS_KEY_ID": KEY_ID,
                                               "AWS_SECRET_ACCESS_KEY": SECRET})
    leaked = KEY_ID in out or SECRET in out
    o.message = f"key id in output: {KEY_ID in out}; secret in output: {SECRET in out}; {len(out.splitlines())} lines"
    o.names_thing = None
    o.data_lost = False
    o.passed = o.rc == 0 and not leaked and "DEBUG" in out


@case("review_cross_site_post", "a cross-site text/plain POST (Origin: another site) is refused and writes no "
      "verdict; a same-origin POST is accepted")
def _review_post(b: Bench, o: Outcome) -> None:
    from insarcloud import io
    from insarcloud.qc import dataset, synthetic

    p = b.prefix("review")
    s = synthetic.make_stack(np.random.default_rng(4), shape=(96, 96))
    ds = io.make_frame_dataset(frame="012A_05850_131313", pairs=s.pairs, lat=1.0 - np.arange(96) * 0.001,
                               lon=10.0 + np.arange(96) * 0.001, phase=s.phase, coh=s.coh, unw=s.unw)
    cube = f"s3://{p}/cubes/012A_05850_131313.zarr"
    io.write_new_cube(ds, cube, b.so)
    out_url = f"s3://{p}/datasets/qc_tiles.zarr"
    dataset.build_dataset([cube], out_url, tile=48, storage_options=b.so)
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "insarcloud.qc.review", out_url, "--port", "0"], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("serving "):
            raise RuntimeError(f"review server did not start: {line!r}")
        base = line.split()[1].rstrip("/")
        tiles = json.loads(urllib.request.urlopen(f"{base}/api/tiles", timeout=30).read())  # noqa: S310
        items = tiles.get("tiles", tiles) if isinstance(tiles, dict) else tiles
        tile = int(items[0]["tile"])

        def post(origin: str, ctype: str, t: int) -> int:
            req = urllib.request.Request(f"{base}/api/verdict", method="POST",
                                         data=json.dumps({"tile": t, "verdict": "accept"}).encode(),
                                         headers={"Content-Type": ctype, "Origin": origin})
            try:
                return urllib.request.urlopen(req, timeout=30).status  # noqa: S310
            except urllib.error.HTTPError as exc:
                return exc.code

        verdicts = f"{out_url}/verdicts"
        cross = post("http://evil.example", "text/plain", tile)
        written = bool(b.snapshot(verdicts))
        same = post(base, "application/json", int(items[-1]["tile"]))
        o.rc = cross
        o.message = f"cross-site POST -> HTTP {cross} (verdict written: {written}); same-origin POST -> HTTP {same}"
        o.names_thing = None
        o.data_lost = False
        o.passed = cross in (400, 403) and not written and same == 200
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------------------------------


def _reference(b: Bench, client: Any) -> None:
    from insarcloud.io import open_cube
    from insarcloud.io.ingest import ingest_frame

    url = f"{b.bucket}/reference/{FRAME}.zarr"
    ingest_frame(str(CROP), FRAME, url, storage_options=b.so, chunk=128, client=client)
    b.reference = open_cube(url, b.so).load()


def _table(rows: list[Outcome]) -> str:
    def yn(v: bool | None) -> str:
        return "-" if v is None else ("yes" if v else "no")

    head = f"{'case':34} {'pass':4} {'rc':>4} {'lost':4} {'landed':6} {'named':5} {'s':>5}  message"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.case:34} {yn(r.passed):4} {str(r.rc):>4} {yn(r.data_lost):4} {yn(r.landed):6} "
                     f"{yn(r.names_thing):5} "
                     f"{r.seconds:5.0f}  {r.message[:110]}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write the table and counts here")
    ap.add_argument("--only", nargs="*", default=None, help="run only these cases")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--timeout", type=float, default=240, help="seconds before a CLI run counts as hung")
    args = ap.parse_args()
    if args.list:
        for name, (expected, _) in CASES.items():
            print(f"{name:34} {expected}")
        return
    names = args.only or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; --list shows them")
    from distributed import Client, LocalCluster

    rows: list[Outcome] = []
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    with local_s3(key="testing", secret="testing") as endpoint:
        so = {"endpoint_url": endpoint, "key": "testing", "secret": "testing", "use_listings_cache": False}
        import s3fs

        bucket = f"faults-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem(**so).mkdir(bucket)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                               memory_limit="2GiB")
        client = Client(cluster)
        try:
            b = Bench(endpoint, so, f"s3://{bucket}", cluster.scheduler_address, args.timeout)
            _reference(b, client)
            for name in names:
                expected, fn = CASES[name]
                o = Outcome(name, expected)
                t0 = time.perf_counter()
                try:
                    fn(b, o)
                except Exception as exc:  # noqa: BLE001 (a case that cannot even run is a failed case)
                    o.passed = False
                    o.notes.append(f"case raised {type(exc).__name__}: {exc}")
                    o.message = o.message or f"{type(exc).__name__}: {exc}"[:300]
                o.seconds = round(time.perf_counter() - t0, 1)
                rows.append(o)
                print(f"{name:34} {'PASS' if o.passed else 'FAIL'} rc={o.rc} lost={o.data_lost} landed={o.landed} "
                      f"named={o.names_thing} {o.seconds:.0f}s  {o.message[:100]}", flush=True)
        finally:
            client.close(timeout=60)
            with contextlib.suppress(Exception):
                cluster.close(timeout=120)
            shutil.rmtree(tmp, ignore_errors=True)
    named = [r for r in rows if r.names_thing is not None]
    counts = {
        "cases": len(rows),
        "passed": sum(r.passed for r in rows),
        "failed": sum(not r.passed for r in rows),
        "data_lost": sum(r.data_lost for r in rows),
        "good_pairs_not_landed": sum(r.landed is False for r in rows),
        "names_the_thing": f"{sum(bool(r.names_thing) for r in named)}/{len(named)}",
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    print()
    print(_table(rows))
    print()
    print(json.dumps(counts))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"counts": counts, "cases": [asdict(r) for r in rows],
                                   "git": _git_rev()}, indent=1, default=str))


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
