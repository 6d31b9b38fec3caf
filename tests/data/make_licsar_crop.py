"""Make the test crop of the real COMET-LiCSAR frame 106A_09048_000909 (run once; output is committed).

    python tests/data/make_licsar_crop.py ../shared/data/licsar/106A_09048_000909 tests/data/licsar/106

Keeps LiCSAR's layout, dtypes, compression, predictor, strip layout and tags; crops a coastal window
(land and sea) so that the no-data handling is exercised. Text metadata files are copied unchanged.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import rasterio
from rasterio.windows import Window

ROW0, COL0, ROWS, COLS = 1152, 832, 320, 384


def crop(src: Path, dst: Path) -> None:
    with rasterio.open(src) as ds:
        window = Window(COL0, ROW0, COLS, ROWS)
        data = ds.read(1, window=window)
        profile = ds.profile.copy()
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        tags = ds.tags()
        profile.update(width=COLS, height=ROWS, transform=ds.window_transform(window))
        if not profile.get("tiled"):
            profile.pop("blockxsize", None)
            profile["blockysize"] = ds.block_shapes[0][0]
        if "PREDICTOR" in structure:
            profile["predictor"] = int(structure["PREDICTOR"])
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data, 1)
        out.update_tags(**tags)


def main(src_frame: str, dst_root: str) -> None:
    src = Path(src_frame)
    dst = Path(dst_root) / src.name
    for path in sorted(src.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(src)
        if path.suffix == ".tif":
            crop(path, dst / rel)
        elif path.suffix == ".png":
            continue  # pictures of LiCSAR's unwrapped phase; not read by the project
        else:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dst / rel)
    (dst.parent.parent / "README.md").write_text(
        "# Test crop of a real COMET-LiCSAR frame\n\n"
        f"`106/{src.name}`: a {ROWS} x {COLS} pixel crop (rows {ROW0}.., cols {COL0}..) of the public\n"
        "COMET-LiCSAR products of frame 106A_09048_000909 (Galapagos, Jan-Feb 2024), made by\n"
        "`tests/data/make_licsar_crop.py`. Contains modified Copernicus Sentinel data, processed by\n"
        "COMET-LiCSAR; LiCSAR products are published under CC BY 4.0. As in the original, the frame has\n"
        "no `unw.tif` and no `E/N/U/hgt` files: ingest must report them missing and go on.\n"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
