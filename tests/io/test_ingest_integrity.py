"""A bad product never stops a frame: bad metadata, folder names and values fail alone, named; corrected
sources replace what landed; exit codes tell the truth; a no-op run leaves the root metadata untouched.
The real frame copy, corrupted, on moto's real S3 server, ingested on real Dask worker processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import s3fs

from insarcloud.cli import main
from insarcloud.errors import ConfigError, ProductValueError
from insarcloud.io import open_cube
from insarcloud.io.command import cube_info
from insarcloud.io.ingest import ingest_frame
from insarcloud.io.ingest_log import read_runs
from insarcloud.io.licsar import check_values

FRAME = "106A_09048_000909"
PAIRS = ["20240106_20240118", "20240106_20240130", "20240106_20240211",
         "20240118_20240130", "20240118_20240211", "20240130_20240211"]


def _copy(licsar_frame_dir: Path, tmp_path: Path) -> Path:
    work = tmp_path / "licsar" / "106" / FRAME
    shutil.copytree(licsar_frame_dir, work)
    return work


def _put_tree(tmp_path: Path, bucket: str, storage_options: dict) -> str:
    fs = s3fs.S3FileSystem(**storage_options)
    fs.put(str(tmp_path / "licsar") + "/", f"{bucket}/src/", recursive=True)
    return f"{bucket}/src"


def _tif(work: Path, pair: str, kind: str) -> Path:
    return work / "interferograms" / pair / f"{pair}.geo.{kind}.tif"


def _rewrite(path: Path, fn, dtype: str | None = None) -> None:
    with rasterio.open(path) as ds:
        profile, data = ds.profile.copy(), ds.read(1)
    out = fn(data)
    profile["dtype"] = dtype or str(out.dtype)
    profile.pop("nodata", None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out.astype(profile["dtype"]), 1)


def _truth(frame_dir: Path, pair: str) -> np.ndarray:
    with rasterio.open(_tif(frame_dir, pair, "diff_pha")) as ds:
        raw = ds.read(1).astype("float32")
    raw[raw == 0] = np.nan
    return raw


def _corrupt_metadata(work: Path, case: str) -> tuple[str, str]:
    """Corrupt one thing; returns (report key, a word the reason holds)."""
    meta = work / "metadata"
    if case == "baselines":
        lines = (meta / "baselines").read_text().splitlines()
        parts = lines[2].split()
        parts[2] = "abc"
        lines[2] = " ".join(parts)
        (meta / "baselines").write_text("\n".join(lines) + "\n")
        return "metadata/baselines", "line 3"
    if case == "heading":
        text = (meta / "metadata.txt").read_text().replace("heading=-12.019061", "heading=n/a")
        (meta / "metadata.txt").write_text(text)
        return "metadata/metadata.txt", "heading"
    if case == "poly":
        with open(meta / f"{FRAME}-poly.txt", "a") as f:
            f.write("-91.2 north\n")
        return f"metadata/{FRAME}-poly.txt", "line 10"
    if case == "utf8":
        (meta / "metadata.txt").write_bytes((meta / "metadata.txt").read_bytes() + b"comment=caf\xe9 \xff\n")
        return "metadata/metadata.txt", "UTF-8"
    if case == "folder":
        bad = work / "interferograms" / "20241318_20241330"
        bad.mkdir()
        for kind in ("diff_pha", "cc"):
            shutil.copy(_tif(work, PAIRS[0], kind), bad / f"20241318_20241330.geo.{kind}.tif")
        return "interferograms/20241318_20241330", "not a date"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["baselines", "heading", "poly", "utf8", "folder"])
def test_bad_metadata_fails_alone(case, licsar_frame_dir, tmp_path, bucket, storage_options, dask_client, capsys):
    """The bad file or folder is reported by name and reason (report, cube errors, stderr, exit 3), every
    pair lands, and a later append still works."""
    work = _copy(licsar_frame_dir, tmp_path)
    shutil.move(work / "interferograms" / PAIRS[5], tmp_path / "held")
    key, word = _corrupt_metadata(work, case)
    src = _put_tree(tmp_path, bucket, storage_options)
    cube = f"{bucket}/cubes/{FRAME}.zarr"

    rc = main(["ingest", src, "--frame", FRAME, "--cube", cube, "--chunk", "128",
               "--scheduler", dask_client.scheduler.address])
    err = capsys.readouterr().err
    assert rc == 3
    assert key in err and word in err, err
    info = cube_info(cube)
    assert info["pairs"] == PAIRS[:5] and key in info["errors"] and word in info["errors"][key]

    fs = s3fs.S3FileSystem(**storage_options)
    fs.put(str(tmp_path / "held") + "/", f"{src}/106/{FRAME}/interferograms/{PAIRS[5]}/", recursive=True)
    again = ingest_frame(src, FRAME, cube, storage_options=storage_options, client=dask_client)
    assert again.completed == [PAIRS[5]] and set(again.failed) == {key} and again.exit_code == 3
    ds = open_cube(cube, storage_options)
    assert list(ds.pair.values) == PAIRS
    np.testing.assert_array_equal(ds.phase.sel(pair=PAIRS[5]).values, _truth(licsar_frame_dir, PAIRS[5]))
    if case == "heading":
        assert np.isnan(ds.attrs["heading_deg"])
    # a baselines file with a bad line is not half-trusted: the frame lands without bperp
    assert ("bperp" in ds) == (case != "baselines")


def test_values_refused_corrected_replaced_and_noop_runs(licsar_frame_dir, tmp_path, bucket, storage_options,
                                                         dask_client, capsys):
    """Integer, uint8 and x100 phase and float 0..255 coherence fail as their pair, named; corrected files
    land on the next run (exit 0); a changed source replaces an ingested pair (recorded in the log); ten
    no-op runs leave the root zarr.json byte-identical."""
    work = _copy(licsar_frame_dir, tmp_path)
    bad = {
        PAIRS[0]: ("diff_pha", lambda a: np.rint(a * 1000), "int16", "int16"),
        PAIRS[1]: ("diff_pha", lambda a: a * 100, "float32", "outside [-pi, pi]"),
        PAIRS[2]: ("cc", lambda a: a.astype("float32"), "float32", "coherence spans"),
        PAIRS[3]: ("diff_pha", lambda a: np.clip(np.rint((a + np.pi) * 40), 0, 255), "uint8", "uint8"),
    }
    for pair, (kind, fn, dtype, _) in bad.items():
        _rewrite(_tif(work, pair, kind), fn, dtype)
    src = _put_tree(tmp_path, bucket, storage_options)
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    sched = ["--scheduler", dask_client.scheduler.address]

    assert main(["ingest", src, "--frame", FRAME, "--cube", cube, "--chunk", "128", *sched]) == 3
    err = capsys.readouterr().err
    for pair, (kind, _, _, word) in bad.items():
        line = next(ln for ln in err.splitlines() if f"FAILED {pair}" in ln)
        assert f"{pair}.geo.{kind}.tif" in line and word in line, line
    assert list(open_cube(cube, storage_options).pair.values) == PAIRS[4:]

    # corrected files: the failed pairs land, exit 0
    fs = s3fs.S3FileSystem(**storage_options)
    for pair, (kind, *_) in bad.items():
        fs.put_file(str(_tif(licsar_frame_dir, pair, kind)), f"{src}/106/{FRAME}/interferograms/{pair}/"
                    f"{pair}.geo.{kind}.tif")
    assert main(["ingest", src, "--frame", FRAME, "--cube", cube, *sched]) == 0
    capsys.readouterr()
    ds = open_cube(cube, storage_options)
    assert sorted(ds.pair.values) == PAIRS and not cube_info(cube)["errors"]
    for pair in bad:
        np.testing.assert_array_equal(ds.phase.sel(pair=pair).values, _truth(licsar_frame_dir, pair))

    # a changed source replaces what landed
    changed = PAIRS[5]
    _rewrite(_tif(work, changed, "diff_pha"), lambda a: -a, "float32")
    fs.put_file(str(_tif(work, changed, "diff_pha")), f"{src}/106/{FRAME}/interferograms/{changed}/"
                f"{changed}.geo.diff_pha.tif")
    rep = ingest_frame(src, FRAME, cube, storage_options=storage_options, client=dask_client)
    assert rep.replaced == [changed] and rep.completed == [changed] and rep.exit_code == 0
    np.testing.assert_array_equal(open_cube(cube, storage_options).phase.sel(pair=changed).values,
                                  -_truth(licsar_frame_dir, changed))
    assert read_runs(cube, storage_options, last=1)[0]["replaced"] == [changed]

    # no-op runs: the root zarr.json never changes, each run's record is its own object
    root = f"{cube.removeprefix('s3://')}/zarr.json"
    before, n_runs = fs.cat_file(root), len(read_runs(cube, storage_options))
    for _ in range(10):
        noop = ingest_frame(src, FRAME, cube, storage_options=storage_options, client=dask_client)
        assert not noop.completed and len(noop.skipped) == 6 and noop.exit_code == 0
    assert fs.cat_file(root) == before
    runs = read_runs(cube, storage_options)
    assert len(runs) == n_runs + 10 and len({r["run_id"] for r in runs}) == len(runs)
    assert main(["info", cube]) == 0
    out = capsys.readouterr().out
    assert "ingest runs (last 13)" in out and rep.run_id in out


def test_check_values_against_licsar_conventions(licsar_frame_dir):
    """The real frame's products pass; what cannot be phase or coherence is refused, the file named."""
    for pair in PAIRS:
        for kind in ("diff_pha", "cc"):
            with rasterio.open(_tif(licsar_frame_dir, pair, kind)) as ds:
                check_values(ds.read(1), kind, f"{pair}.{kind}")
    pha = np.array([[0.0, 3.1415927, -3.1415927, np.nan]], "float32")
    check_values(pha, "diff_pha", "ok.tif")
    check_values(np.array([[0.0, 1.0, np.nan]], "float32"), "cc", "ok.tif")
    check_values(np.arange(256, dtype="uint8")[None], "cc", "ok.tif")
    check_values(np.array([[-250.0, 900.0, 0.0]], "float32"), "unw", "ok.tif")
    refused = [
        (np.array([[1, 2]], "int16"), "diff_pha", "int16"),
        (np.array([[1, 2]], "uint8"), "diff_pha", "uint8"),
        (np.array([[314.1, -3.0]], "float32"), "diff_pha", "outside"),
        (np.array([[3.2, 0.0]], "float32"), "diff_pha", "outside"),
        (np.array([[np.inf, 0.0]], "float32"), "diff_pha", "infinite"),
        (np.array([[1, 2]], "int16"), "unw", "int16"),
        (np.array([[31415.0]], "float32"), "unw", "reaches"),
        (np.array([[0.0, 255.0]], "float32"), "cc", "0..1"),
        (np.array([[1, 2]], "uint16"), "cc", "uint16"),
    ]
    for arr, kind, word in refused:
        with pytest.raises(ProductValueError, match=word) as info:
            check_values(arr, kind, "s3://b/x.geo.tif")
        assert "s3://b/x.geo.tif" in str(info.value)


@pytest.mark.parametrize("argv, option", [
    (["--chunk", "0"], "--chunk"), (["--chunk", "-512"], "--chunk"), (["--chunk", "abc"], "--chunk"),
    (["--shard-chunks", "-1"], "--shard-chunks"), (["--shard-chunks", "65"], "--shard-chunks"),
    (["--product-threads", "0"], "--product-threads"),
])
def test_numeric_options_refused_before_any_cluster(argv, option, capsys, monkeypatch):
    """Usage errors exit 2 naming the option, before anything starts (no cluster, no storage)."""
    import insarcloud.engines as engines

    monkeypatch.setattr(engines, "dask_client", lambda *a, **k: pytest.fail("a cluster was started"))
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "/nonexistent", "--frame", FRAME, "--cube", "/nonexistent/c.zarr", *argv])
    assert exc.value.code == 2 and option in capsys.readouterr().err
    with pytest.raises(ConfigError, match="chunk"):
        ingest_frame("/nonexistent", FRAME, "/nonexistent/c.zarr", chunk=0)


def test_ingest_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    out = capsys.readouterr().out
    for code in ("0 ", "2 ", "3 ", "4 "):
        assert f"\n  {code}" in out
