"""pystac Items for LiCSAR interferograms, and stackstac reading them to the same numbers as ingest."""

from __future__ import annotations

import numpy as np
import rasterio

from insarcloud.io.licsar import discover_frame
from insarcloud.io.stac import pair_items, stack

FRAME = "106A_09048_000909"


def test_items_and_stackstac_match_rasterio(licsar_frame_dir):
    products = discover_frame(str(licsar_frame_dir), FRAME)
    items = pair_items(products)
    assert len(items) == 6
    item = items[0]
    assert item.properties["proj:code"] == "EPSG:4326" or item.properties.get("proj:epsg") == 4326
    assert item.properties["proj:shape"] == [320, 384]
    assert set(item.assets) == {"diff_pha", "cc"}
    assert item.properties["start_datetime"].startswith("2024-01-06")

    arr = stack(items, "diff_pha").compute()
    assert arr.shape == (6, 320, 384)
    path = licsar_frame_dir / "interferograms" / "20240106_20240118" / "20240106_20240118.geo.diff_pha.tif"
    with rasterio.open(path) as ds:
        raw = ds.read(1)
    expected = np.where(raw == 0, np.nan, raw)
    np.testing.assert_array_equal(arr.values[0], expected)
