"""Ingest writes only inside what it owns: refused cube URLs keep every byte; a killed run's leftovers are
removed by the keys its manifest recorded, and nothing else ever is. Real moto S3 server, real CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import s3fs
import zarr

from insarcloud.cli import main
from insarcloud.errors import CubeOwnershipError
from insarcloud.io import ingest as ingest_mod
from insarcloud.io import make_frame_dataset, open_cube, write_new_cube
from insarcloud.io.cube_target import MANIFEST
from insarcloud.io.ingest import ingest_frame

FRAME = "106A_09048_000909"
OTHER = "012A_05850_131313"


def _small_cube(frame: str) -> object:
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(1.0, 0.9, 4), np.linspace(10.0, 10.1, 5)
    return make_frame_dataset(frame=frame, pairs=["20240101_20240113"], lat=lat, lon=lon,
                              phase=rng.uniform(-3, 3, (1, 4, 5)).astype("float32"),
                              coh=np.full((1, 4, 5), 0.5, "float32"))


def _snapshot(fs: s3fs.S3FileSystem, bucket: str) -> dict[str, bytes]:
    return {p: fs.cat_file(p) for p in fs.find(bucket.removeprefix("s3://"))}


@pytest.fixture()
def source(licsar_frame_dir, bucket, storage_options) -> str:
    fs = s3fs.S3FileSystem(**storage_options)
    fs.put(str(licsar_frame_dir) + "/", f"{bucket}/licsar/106/{FRAME}/", recursive=True)
    return f"{bucket}/licsar"


def _cases(bucket: str, storage_options: dict, source: str) -> dict[str, str]:
    """Cube URLs that hold something else than this frame's cube, with sentinels next to and under each."""
    fs = s3fs.S3FileSystem(**storage_options)
    write_new_cube(_small_cube(OTHER), f"{bucket}/cubes/{OTHER}.zarr", storage_options)
    write_new_cube(_small_cube("012A_05850_131314"), f"{bucket}/cubes/012A_05850_131314.zarr", storage_options)
    fs.pipe_file(f"{bucket}/foreign/notes.txt", b"not a cube")
    cases = {
        "source frame folder": f"{source}/106/{FRAME}",
        "parent of two cubes": f"{bucket}/cubes",
        "cube of another frame": f"{bucket}/cubes/{OTHER}.zarr",
        "non-empty foreign folder": f"{bucket}/foreign",
    }
    for url in cases.values():
        parent = url.rsplit("/", 1)[0]
        fs.pipe_file(f"{parent}/sentinel-next-to.txt", b"keep me")
        fs.pipe_file(f"{url}/sentinel-under.txt", b"keep me too")
    return cases


def test_refused_cube_urls_keep_everything(source, bucket, storage_options, capsys):
    """Every refused run exits 2, names the URL and what it found, and deletes nothing (CLI, before any
    cluster starts)."""
    fs = s3fs.S3FileSystem(**storage_options)
    cases = _cases(bucket, storage_options, source)
    before = _snapshot(fs, bucket)
    for what, url in cases.items():
        rc = main(["ingest", source, "--frame", FRAME, "--cube", url, "--chunk", "128"])
        err = capsys.readouterr().err
        assert rc == 2, what
        assert url in err and "refusing" in err, (what, err)
        assert _snapshot(fs, bucket) == before, what
    err_other = main(["ingest", source, "--frame", FRAME, "--cube", cases["cube of another frame"]])
    assert err_other == 2 and OTHER in capsys.readouterr().err
    main(["ingest", source, "--frame", FRAME, "--cube", cases["parent of two cubes"]])
    assert f"{OTHER}.zarr" in capsys.readouterr().err  # what was found is named
    # the library refuses the same way (no CLI pre-flight there)
    with pytest.raises(CubeOwnershipError, match="interferograms"):
        ingest_frame(source, FRAME, cases["source frame folder"], storage_options=storage_options)
    assert _snapshot(fs, bucket) == before
    kept = zarr.open_array(cases["cube of another frame"], path="phase", mode="r", storage_options=storage_options)
    np.testing.assert_array_equal(kept[:], _small_cube(OTHER).phase.values)


def test_killed_new_cube_leftovers_removed_by_manifest_only(licsar_frame_dir, tmp_path, monkeypatch):
    """A run killed before its root zarr.json landed: the next run removes exactly the keys the manifest
    lists and completes; with one foreign object among them it refuses and removes nothing."""
    src = str(licsar_frame_dir.parent.parent)
    cube = tmp_path / "cubes" / f"{FRAME}.zarr"
    sentinel = tmp_path / "cubes" / "sentinel.txt"
    sentinel.parent.mkdir(parents=True)
    sentinel.write_text("keep me")

    class Killed(Exception):
        pass

    real_put = ingest_mod._put_objects

    def put_then_die(fs, root, objects, *, local):
        if "zarr.json" in objects:  # the root goes last: die just before it
            raise Killed
        real_put(fs, root, objects, local=local)

    monkeypatch.setattr(ingest_mod, "_put_objects", put_then_die)
    with pytest.raises(Killed):
        ingest_frame(src, FRAME, str(cube), chunk=64)
    monkeypatch.undo()
    manifest = json.loads((cube / MANIFEST).read_text())
    left = sorted(str(p.relative_to(cube)) for p in cube.rglob("*") if p.is_file())
    assert manifest["frame"] == FRAME and set(left) - {MANIFEST} <= set(manifest["objects"])
    assert len(left) > 10 and not (cube / "zarr.json").exists()

    foreign = cube / "phase" / "my-notes.txt"
    foreign.write_text("not ingest's")
    with pytest.raises(CubeOwnershipError, match="my-notes.txt"):
        ingest_frame(src, FRAME, str(cube), chunk=64)
    assert sorted(str(p.relative_to(cube)) for p in cube.rglob("*") if p.is_file()) == sorted(
        left + ["phase/my-notes.txt"])
    shutil.move(foreign, tmp_path / "moved-notes.txt")

    report = ingest_frame(src, FRAME, str(cube), chunk=64)
    assert len(report.completed) == 6 and not report.failed
    assert not (cube / MANIFEST).exists() and sentinel.read_text() == "keep me"
    assert open_cube(str(cube)).sizes["pair"] == 6
