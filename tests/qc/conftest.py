"""Small cubes for the QC tests: synthetic (with truth) and the real LiCSAR crop (four closed triplets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from insarcloud import io
from insarcloud.qc import synthetic

LICSAR = Path(__file__).parents[1] / "data" / "licsar"
REAL_FRAME = "106A_09048_000909"


def synthetic_cube(seed: int = 0, shape: tuple[int, int] = (100, 90), unw: bool = True, pairs: list[str] | None = None):
    s = synthetic.make_stack(np.random.default_rng(seed), shape=shape)
    lat = 1.0 - np.arange(shape[0]) * 0.001
    lon = 10.0 + np.arange(shape[1]) * 0.001
    keep = list(range(len(s.pairs))) if pairs is None else [s.pairs.index(p) for p in pairs]
    ds = io.make_frame_dataset(
        frame="012A_05850_131313", pairs=[s.pairs[i] for i in keep], lat=lat, lon=lon,
        phase=s.phase[keep], coh=s.coh[keep], unw=s.unw[keep] if unw else None,
    )
    return s, ds


@pytest.fixture()
def real_cube_url(bucket: str, storage_options: dict) -> str:
    """The real LiCSAR crop ingested into a cube on the local S3 endpoint (no unw, no E/N/U/hgt)."""
    from insarcloud.io.ingest import ingest_frame

    url = f"{bucket}/cubes/{REAL_FRAME}.zarr"
    ingest_frame(str(LICSAR), REAL_FRAME, url, storage_options=storage_options)
    return url
