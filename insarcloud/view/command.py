"""``insarcloud view CUBE_OR_AREA_URL``: a local web viewer of a frame's or an area's time series."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "view", help="local web viewer: velocity map, click a pixel for its time series",
        description="Serve a local page (127.0.0.1) showing the velocity map of a frame cube's ts group or an area "
        "cube; click a pixel to plot its LOS (area: A/D LOS, up, east) displacement series with precision bars, "
        "the fitted rate, the forecast and the quality of its pairs. Reads only the Zarr chunks it shows.")
    p.add_argument("url", help="frame cube (.../cubes/FRAME.zarr) or area cube (.../areas/NAME.zarr)")
    p.add_argument("--group", default=None,
                   help="ts group of a frame cube (default: ts_<the area job's default invert.weights>)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one, printed)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=run_view)


def run_view(args: argparse.Namespace) -> int:
    from insarcloud.view.server import serve

    return serve(args.url, args.group, args.host, args.port, open_browser=args.open)
