"""``insarcloud export CUBE --stage S --format geotiff [--out DIR]``: results as Cloud-Optimized GeoTIFFs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a stage's results as Cloud-Optimized GeoTIFFs (vel.tif, vel_std.tif, disp.tif)",
        description="Write a stage's results as Cloud-Optimized GeoTIFFs (EPSG:4326, float32, nodata NaN): "
        "invert -> vel.tif, vel_std.tif, disp.tif (one band per date); noise -> vel.tif, vel_std.tif; "
        "forecast -> disp_forecast.tif; mosaic (area cube) -> vel_A/D/east/up.tif with their _std and "
        "disp_east/up.tif.")
    p.add_argument("cube", help="frame cube URL (.../cubes/FRAME.zarr) or area cube URL (.../areas/NAME.zarr)")
    p.add_argument("--stage", required=True, choices=("invert", "noise", "forecast", "mosaic"),
                   help="which results: invert (the ts group), noise, forecast, mosaic (area cube)")
    p.add_argument("--group", default=None,
                   help="group to read (default: ts_<invert.weights default> for invert, noise, forecast; the "
                   "area cube's root for mosaic)")
    p.add_argument("--format", default="geotiff", choices=("geotiff",), help="output format (geotiff: COG)")
    p.add_argument("--out", default=None, help="output directory (default ./<cube name>_<group>/)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files of the same names")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from insarcloud.export.geotiff import export_cube, group_for_stage, is_area_cube
    from insarcloud.io.cube import open_zarr_group

    out = args.out
    if out is None:
        grp, _ = group_for_stage(args.stage, args.group, is_area_cube(open_zarr_group(args.cube)))
        out = f"{Path(args.cube.rstrip('/')).name.removesuffix('.zarr')}_{grp or 'area'}"
    files = export_cube(args.cube, args.stage, out, group=args.group, overwrite=args.overwrite)
    for f in files:
        print(f"{f.path}  {f.bands} band(s)  {f.units}")
    return 0
