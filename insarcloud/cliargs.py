"""Argument checks shared by the stage commands and the area config: argparse ``type=`` functions and the
rules that tie two options together.

The ``type=`` functions run while argparse parses, so a bad number ends the command with argparse's usage
message and exit status 2 (``argument --chunk: must be a positive integer, got '0'``) before any cluster,
actor or storage connection exists. Cross-option rules (:func:`check_tile_overlap`) are plain functions that
raise :class:`~insarcloud.errors.ConfigError`; the commands call them first thing (the CLI turns that error
into one line and exit status 2) and the pydantic models of :mod:`insarcloud.config` call the same functions,
so a rule is written once.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from insarcloud.errors import ConfigError

__all__ = [
    "check_bbox",
    "check_tile_overlap",
    "float_range",
    "int_range",
    "nonnegative_float",
    "nonnegative_int",
    "odd_int",
    "port",
    "positive_float",
    "positive_int",
    "probability",
    "tile_overlap_error",
]


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts, chunks, tiles, epochs)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (overlaps, seeds, optional crops where 0 means "off")."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """A ``type=`` function for an integer in ``[lo, hi]``."""

    def check(text: str) -> int:
        value = _int(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer from {lo} to {hi}, got {text!r}")
        return value

    check.__name__ = f"int_{lo}_{hi}"
    return check


def odd_int(lo: int, hi: int) -> Callable[[str], int]:
    """A ``type=`` function for an odd integer in ``[lo, hi]`` (centred windows)."""
    bounded = int_range(lo, hi)

    def check(text: str) -> int:
        value = bounded(text)
        if value % 2 == 0:
            raise argparse.ArgumentTypeError(f"must be an odd integer (a centred window), got {text!r}")
        return value

    check.__name__ = f"odd_{lo}_{hi}"
    return check


def float_range(lo: float, hi: float) -> Callable[[str], float]:
    """A ``type=`` function for a finite number in ``[lo, hi]`` (latitudes, longitudes)."""

    def check(text: str) -> float:
        value = _float(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a number from {lo:g} to {hi:g}, got {text!r}")
        return value

    check.__name__ = f"float_{lo:g}_{hi:g}"
    return check


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    return int_range(0, 65535)(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (thresholds, learning rates, time budgets)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (regularisation weights, standard deviations)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (fractions, significance levels, coherence floors)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def tile_overlap_error(tile: int | None, overlap: int) -> str | None:
    """Why ``overlap`` does not fit ``tile``, or None: the one tile/overlap rule of the project.

    ``overlap`` is the border a tile shares with each neighbour: the quality model's sin^2 blend taper
    (:func:`insarcloud.qc.model.blend_weights`) or the unwrapper's halo (:mod:`insarcloud.unwrap.tiling`).
    It must be >= 0 and less than half the tile, so the two borders of a tile never meet (the blend's
    partition of unity and the halo's core both need a tile interior). ``tile=None`` (the stage picks it
    from the cube's chunks) checks the sign only; the stage checks the chunk itself.
    """
    if overlap < 0:
        return f"overlap {overlap} must be >= 0"
    if tile is not None and overlap * 2 >= tile:
        return f"overlap {overlap} must be less than half the tile {tile}"
    return None


def check_tile_overlap(tile: int | None, overlap: int, what: str = "") -> None:
    """:func:`tile_overlap_error` as a :class:`ConfigError` (``what`` prefixes the message, e.g. ``--overlap``)."""
    why = tile_overlap_error(tile, overlap)
    if why:
        raise ConfigError(f"{what}: {why}" if what else why)


def check_bbox(bbox: tuple[float, float, float, float], what: str = "--bbox") -> None:
    """``[west, south, east, north]`` in degrees with west < east and south < north (no antimeridian crossing)."""
    w, s, e, n = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise ConfigError(f"{what}: {list(bbox)} has a value that is not a finite number")
    if not (-180.0 <= w < e <= 180.0 and -90.0 <= s < n <= 90.0):
        raise ConfigError(f"{what}: {list(bbox)} is not W S E N with -180 <= W < E <= 180 and -90 <= S < N <= 90")


# Spatial chunk sizes a cube accepts (ingest's --chunk): below 16 pixels a chunk costs more in requests than it
# holds; above 16384 one chunk of one pair is over 1 GiB of float32. Here, not in io.ingest, so that building
# the CLI parser does not import numpy/xarray.
MIN_CHUNK, MAX_CHUNK = 16, 16384
