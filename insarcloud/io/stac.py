"""STAC descriptions of LiCSAR interferograms (pystac Items with the projection extension).

Each interferogram becomes one Item (``start_datetime``/``end_datetime`` = primary/secondary, assets
``unw``, ``cc``, ``diff_pha``), so a frame can be catalogued, searched, and stacked lazily with stackstac
(:func:`stack`). Ingest itself reads with rasterio in Dask tasks (see ingest.py for why); ``stack`` is the
road for users who already work with STAC tooling, and the tests check both give the same numbers.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import pystac
from pystac.extensions.projection import ProjectionExtension

from insarcloud.core.pairs import split_pair
from insarcloud.io.licsar import FrameProducts, Header, read_header

MEDIA_COG = pystac.MediaType.GEOTIFF


def _bbox(h: Header) -> list[float]:
    a, _, c, _, e, f = h.transform[:6]
    ny, nx = h.shape
    return [c, f + e * ny, c + a * nx, f]


def pair_items(products: FrameProducts, storage_options: dict[str, Any] | None = None) -> list[pystac.Item]:
    """One pystac Item per interferogram of ``products`` (headers read for the projection extension)."""
    items = []
    for pair, refs in sorted(products.pairs.items()):
        if not refs:
            continue
        first = refs.get("diff_pha") or next(iter(refs.values()))
        h = read_header(first.url, storage_options)
        prim, sec = (_dt.datetime.strptime(d, "%Y%m%d").replace(tzinfo=_dt.UTC) for d in split_pair(pair))
        west, south, east, north = _bbox(h)
        item = pystac.Item(
            id=f"{products.frame}_{pair}",
            geometry={"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                          [west, north], [west, south]]]},
            bbox=[west, south, east, north],
            datetime=None,
            start_datetime=prim,
            end_datetime=sec,
            properties={"licsar:frame": products.frame, "licsar:pair": pair},
        )
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        proj.epsg = 4326
        proj.shape = list(h.shape)
        proj.transform = list(h.transform[:6])
        for kind, ref in refs.items():
            item.add_asset(kind, pystac.Asset(href=ref.url, media_type=MEDIA_COG, roles=["data"],
                                              extra_fields={"file:size": ref.size, "licsar:etag": ref.etag}))
        items.append(item)
    return items


def stack(items: list[pystac.Item], asset: str = "diff_pha", chunksize: int = 512) -> Any:
    """Lazy (pair, y, x) stack of one asset through stackstac, on the items' own grid (no resampling).

    Returns the raw values (LiCSAR's 0 = no data is turned into NaN); GDAL reads the hrefs, so ``s3://``
    hrefs need GDAL's AWS variables (``AWS_S3_ENDPOINT``...) rather than fsspec options.
    """
    import stackstac

    first = ProjectionExtension.ext(items[0])
    a, _, c, _, e, f = first.transform[:6]
    ny, nx = first.shape
    arr = stackstac.stack(
        [i.to_dict() for i in items], assets=[asset], epsg=4326, resolution=(abs(a), abs(e)),
        bounds=(c, f + e * ny, c + a * nx, f), snap_bounds=False, chunksize=chunksize, dtype="float32",
        fill_value=np.float32("nan"), rescale=False,
    ).isel(band=0)
    return arr.where(arr != 0)
