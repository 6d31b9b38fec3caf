"""The stage contract (docs/STAGES.md): input fingerprints, current-output pointers, gc.

Each staleness case of issue 18 on a small simulated frame ingested from the local S3 endpoint: a later ingest
that appends pairs and a date makes invert and noise recompute and their consumers read the new groups; the
root metadata does not grow with no-op runs; gc removes only unreferenced stage outputs.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import xarray as xr

from insarcloud import io
from insarcloud.io import stages

FRAME = "012A_05443_131313"
SHAPE, EPOCHS, FIRST = (32, 32), 10, 7  # the first run sees the first 7 of 10 epochs


def simulated(n_epochs: int = EPOCHS, seed: int = 3):  # type: ignore[no-untyped-def]
    from insarcloud.simulate import simulate_frame

    return simulate_frame(frame_id=FRAME, shape=SHAPE, n_epochs=n_epochs, seed=seed, scene_seed=7, lon0=90.0,
                          lat0=31.5, min_neighbours=3, max_neighbours=3, missing_epoch_fraction=0.0,
                          missing_pair_fraction=0.0)


def write_source(sim, root: str, so: dict, first: int | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    """The LiCSAR tree of ``sim`` under ``root``; with ``first``, only pairs among its first ``first`` epochs
    (as LiCSAR had them before the later acquisitions). Returns the pair names written."""
    from insarcloud.simulate import write_licsar_frame

    url = write_licsar_frame(sim, root, so)
    pairs = [str(p) for p in sim.pairs]
    if first is None:
        return pairs
    cut = np.datetime_as_string(sim.dates[first - 1], unit="D").replace("-", "")
    fs, path = io.get_fs(url, so)
    late = [p for p in pairs if p.split("_")[1] > cut]
    for p in late:
        fs.rm(f"{path.rstrip('/')}/interferograms/{p}", recursive=True)
    for d in sim.dates[first:]:
        ymd = np.datetime_as_string(d, unit="D").replace("-", "")
        fs.rm(f"{path.rstrip('/')}/epochs/{ymd}", recursive=True)
    return [p for p in pairs if p not in late]


def ingest(src: str, cube: str, so: dict) -> None:
    from insarcloud.io.ingest import ingest_frame

    ingest_frame(src, FRAME, cube, storage_options=so, chunk=16)


def root_meta_size(cube: str, so: dict) -> int:
    fs, path = io.get_fs(io.join(cube, "zarr.json"), so)
    return len(fs.cat_file(path))


def test_invert_and_noise_recompute_after_ingest_appends_pairs_and_a_date(bucket, storage_options, caplog):
    """Failed before issue 18: invert said "complete with the same parameters" and kept the old series."""
    from insarcloud.invert.dask_ops import invert_cube
    from insarcloud.noise.dask_ops import noise_cube

    so = storage_options
    sim = simulated()
    src, cube = f"{bucket}/licsar", f"{bucket}/cubes/{FRAME}.zarr"
    first_pairs = write_source(sim, src, so, FIRST)
    ingest(src, cube, so)
    g1, _ = invert_cube(cube, weights="coherence", storage_options=so)
    n1, _ = noise_cube(cube, class_size=256, storage_options=so)
    assert stages.current_group(cube, "invert", so) == g1 and stages.current_group(cube, "noise", so) == n1
    assert io.open_cube(cube, so, group=g1).sizes["date"] == FIRST

    all_pairs = write_source(sim, src, so)  # LiCSAR added the later acquisitions
    ingest(src, cube, so)
    added = [p for p in all_pairs if p not in first_pairs]
    with caplog.at_level(logging.INFO, logger="insarcloud.io.stages"):
        g2, plan = invert_cube(cube, weights="coherence", storage_options=so)
        n2, skipped = noise_cube(cube, class_size=256, storage_options=so)
    assert plan is not None and g2 != g1 and not skipped and n2 != n1
    ts = stages.open_stage(cube, "invert", so)
    assert ts.sizes["date"] == EPOCHS  # the new dates are in the current time series
    assert io.open_cube(cube, so, group=g1).sizes["date"] == FIRST  # the old group is kept (provenance)
    assert stages.open_stage(cube, "noise", so).attrs["source_group"] == g2
    lines = [r.getMessage() for r in caplog.records if "recomputing" in r.getMessage()]
    assert len(lines) == 2, lines  # one line per stage saying why
    assert lines[0].startswith(f"invert: recomputing {g2}: inputs changed (pairs ")
    # a ts group has no pair coordinate to name the new pairs from: the counts (qc, quality, unwrap name them)
    assert f"pairs {len(first_pairs)} -> {len(first_pairs) + len(added)})" in lines[0]
    assert lines[1].startswith(f"noise: recomputing {n2}: inputs changed (invert fingerprint ")
    # a noise or forecast reading a named ts group gets the invert stage's current output of that kind
    assert stages.input_group(cube, "invert", "ts_coherence", so) == g2
    # and a re-run is a no-op that says so
    assert invert_cube(cube, weights="coherence", storage_options=so) == (g2, None)
    assert noise_cube(cube, class_size=256, storage_options=so) == (n2, True)


def test_root_metadata_constant_across_noop_runs(bucket, storage_options):
    from insarcloud.invert.dask_ops import invert_cube
    from insarcloud.qc.dask_ops import run_qc

    so = storage_options
    sim = simulated(n_epochs=6)
    src, cube = f"{bucket}/licsar", f"{bucket}/cubes/{FRAME}.zarr"
    write_source(sim, src, so)
    ingest(src, cube, so)
    run_qc(cube, storage_options=so)
    invert_cube(cube, weights="coherence", storage_options=so)
    size = root_meta_size(cube, so)
    pointers = stages.read_pointers(cube, so)
    for _ in range(10):
        ingest(src, cube, so)
        run_qc(cube, storage_options=so)
        invert_cube(cube, weights="coherence", storage_options=so)
    assert root_meta_size(cube, so) == size
    assert stages.read_pointers(cube, so) == pointers  # no-op runs rewrite nothing


def test_gc_keeps_referenced_and_foreign_groups(bucket, storage_options, s3_endpoint):
    from insarcloud.invert.dask_ops import invert_cube

    so = storage_options
    sim = simulated(n_epochs=6)
    src, cube = f"{bucket}/licsar", f"{bucket}/cubes/{FRAME}.zarr"
    write_source(sim, src, so)
    ingest(src, cube, so)
    old, _ = invert_cube(cube, weights="coherence", storage_options=so)
    new, _ = invert_cube(cube, weights="coherence", gamma=0.5, storage_options=so)
    assert old != new and stages.current_group(cube, "invert", so) == new
    # a user's own groups: one without a marker named like a stage output, one with a foreign marker
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_zarr(cube, group="ts_mine", mode="w", zarr_format=3,
                                                      consolidated=False, storage_options=so)
    xr.Dataset({"v": ("x", np.arange(3.0))}, attrs={"insarcloud": {"note": "not a stage"}}).to_zarr(
        cube, group="ts_notes", mode="w", zarr_format=3, consolidated=False, storage_options=so)
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    import os

    dry = subprocess.run([sys.executable, "-m", "insarcloud.cli", "gc", cube, "--dry-run"], capture_output=True,
                         text=True, env={**os.environ, **env}, check=True)
    assert f"would remove {old}" in dry.stdout
    assert f"kept {new}: current invert" in dry.stdout
    assert io.read_marker(cube, old, so) is not None  # a dry run removes nothing
    subprocess.run([sys.executable, "-m", "insarcloud.cli", "gc", cube], capture_output=True, text=True,
                   env={**os.environ, **env}, check=True)
    groups = io.list_groups(cube, so)
    assert old not in groups and stages.POINTER_GROUP not in groups  # list_groups: data groups only
    assert {new, "ts_mine", "ts_notes"} <= set(groups)
    assert stages.read_pointers(cube, so)["invert"]["group"] == new
    assert stages.open_stage(cube, "invert", so).sizes["date"] == 6
    assert io.open_cube(cube, so).sizes["pair"] == len(sim.pairs)  # the root is untouched


def test_fingerprint_diff_names_what_changed(bucket, storage_options):
    """The reason line compares identities: params, pairs, upstream fingerprints, file contents."""
    old = stages.stage_identity("quality", {"tile": 64}, pairs=["20200101_20200113"], upstream={"qc": "a1b2c3d4e5"},
                                files={"checkpoint": "ffff0000"})
    new = stages.stage_identity("quality", {"tile": 64}, pairs=["20200101_20200113", "20200113_20200125"],
                                upstream={"qc": "c3d4e5f6a7"}, files={"checkpoint": "ffff0000"})
    why = stages._diff(old, new, ["20200101_20200113"], ["20200101_20200113", "20200113_20200125"])
    assert why == "inputs changed (pairs +1: 20200113_20200125; qc fingerprint a1b2c3d4 -> c3d4e5f6)"
    assert stages.fingerprint(old) != stages.fingerprint(new)
    same = stages.stage_identity("quality", {"tile": 64}, pairs=["20200101_20200113"], upstream={"qc": "a1b2c3d4e5"},
                                 files={"checkpoint": "ffff0000"})
    assert stages.fingerprint(same) == stages.fingerprint(old)
