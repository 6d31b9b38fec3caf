"""The CLI sub-commands (``insarcloud qc`` / ``qc-dataset``) as real processes against a Dask scheduler."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from insarcloud import io

from .conftest import synthetic_cube


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "insarcloud.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_cli_qc_and_dataset(tmp_path, dask_client) -> None:  # type: ignore[no-untyped-def]
    addr = dask_client.scheduler.address
    _, ds = synthetic_cube(7, shape=(64, 64))
    url = str(tmp_path / "012A_05850_131313.zarr")
    io.write_new_cube(ds, url)
    r = _cli("qc", url, "--scheduler", addr, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["group"] == "qc" and len(out["ifgs"]) == ds.sizes["pair"]
    assert set(next(iter(out["ifgs"].values()))) >= {"coverage", "coh_avg", "step11_bad", "step12_bad", "ifg_label"}
    tiles = str(tmp_path / "tiles.zarr")
    r = _cli("qc-dataset", tiles, url, "--tile", "32", "--scheduler", addr, "--split", "012A_05850_131313=val")
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"val": 36' in r.stdout and "insarcloud review" in r.stdout
    # bad input: a clear one-line error and exit code 2, no traceback
    r = _cli("qc", str(tmp_path / "missing.zarr"), "--scheduler", addr)
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr
    r = _cli("qc-dataset", tiles, url, "--split", "nonsense")
    assert r.returncode == 2 and "FRAME=SPLIT" in r.stderr
