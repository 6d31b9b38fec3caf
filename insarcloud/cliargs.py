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
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from insarcloud.core.options import tile_overlap_error  # the rule's one definition
from insarcloud.errors import ConfigError

__all__ = [
    "add_model_options",
    "bounded",
    "check_bbox",
    "check_tile_overlap",
    "float_range",
    "int_range",
    "nonnegative_float",
    "nonnegative_int",
    "odd_int",
    "params_from_args",
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


# --------------------------------------------------------------------------------------------------
# Stage options generated from the stage's pydantic Params model (insarcloud.config): one definition of each
# option's type, default, description and bounds for the CLI, the area config and its template.


Flags = Mapping[str, "str | tuple[str, str]"]


def _flag_dest(name: str, spec: str | tuple[str, str]) -> tuple[str, str]:
    return (spec, name) if isinstance(spec, str) else spec


def bounded(kind: type, lo: float | None, lo_open: bool, hi: float | None, hi_open: bool) -> Callable[[str], Any]:
    """A ``type=`` function for an int or a finite float within optional, open or closed bounds."""
    word = "an integer" if kind is int else "a number"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")

    def check(text: str) -> Any:
        value = _int(text) if kind is int else _float(text)
        if (lo is not None and (value <= lo if lo_open else value < lo)) or (
                hi is not None and (value >= hi if hi_open else value > hi)):
            raise argparse.ArgumentTypeError(f"must be {word} {' and '.join(parts)}, got {text!r}")
        return value

    check.__name__ = "integer" if kind is int else "number"
    return check


def add_model_options(parser: argparse.ArgumentParser, model: Any, flags: Flags, *, bounds_at_parse: bool = False,
                      unset_defaults: bool = False) -> None:
    """One argparse option per field of ``model`` named in ``flags`` (field name -> flag such as
    ``"--class-size"``, or ``(flag, dest)`` where a command's namespace has kept an older name).

    The option's ``dest`` is the field name, its default the field's default, its help the field's description
    with the default; a ``Literal`` field becomes ``choices``, a ``bool`` field defaulting to False a switch,
    an int or float field a number (a non-number or a non-finite number is refused while parsing). Bounds are
    checked by :func:`params_from_args`, which builds the model, so the CLI and the area config refuse the
    same values with the same rule; ``bounds_at_parse`` checks them while parsing too (argparse's exit 2
    naming the option). ``unset_defaults``: every default is None (a value given overrides a base, e.g. a
    YAML file: :func:`params_from_args` ``base``).
    """
    for name, spec in flags.items():
        flag, dest = _flag_dest(name, spec)
        field = model.model_fields[name]
        kind = _strip_optional(field.annotation)
        default = field.get_default(call_default_factory=True)
        desc = (field.description or "").rstrip(".")
        kw: dict[str, Any] = {"dest": dest, "default": None if unset_defaults else default}
        if kind is bool and default is False:
            kw["action"] = "store_true"
        elif typing.get_origin(kind) is typing.Literal:
            kw["choices"] = typing.get_args(kind)
        elif kind in (int, float):
            kw["type"] = bounded(kind, *_field_bounds(field)) if bounds_at_parse else (_int if kind is int else _float)
        else:
            kw["type"] = kind
        shown = "unset" if default is None else default
        parser.add_argument(flag, help=f"{desc} (default {shown})".replace("%", "%%"), **kw)


def params_from_args(model: Any, args: argparse.Namespace, flags: Flags, *,
                     base: Mapping[str, Any] | None = None) -> Any:
    """The ``model`` instance of the options :func:`add_model_options` added (over ``base``, where options left
    at None keep the base's value); a value out of its field's bounds or refused by a validator is a
    :class:`ConfigError` naming the flag (``--class-size must be >= 4``)."""
    from pydantic import ValidationError

    values = dict(base or {})
    for name, spec in flags.items():
        value = getattr(args, _flag_dest(name, spec)[1])
        if base is None or value is not None:
            values[name] = value
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError("; ".join(_flag_error(model, flags, e) for e in exc.errors(include_url=False))) from None


def _field_bounds(field: Any) -> tuple[float | None, bool, float | None, bool]:
    """(lower, lower_open, upper, upper_open) of a pydantic field's annotated_types metadata."""
    lo = hi = None
    lo_open = hi_open = False
    for m in getattr(field, "metadata", ()):
        for attr, is_lo, is_open in (("ge", True, False), ("gt", True, True), ("le", False, False),
                                     ("lt", False, True)):
            v = getattr(m, attr, None)
            if v is not None:
                if is_lo:
                    lo, lo_open = v, is_open
                else:
                    hi, hi_open = v, is_open
    return lo, lo_open, hi, hi_open


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _flag_error(model: Any, flags: Flags, err: Mapping[str, Any]) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    name = str(err["loc"][0]) if err["loc"] else ""
    if name not in model.model_fields:  # a rule across fields (a model validator): its message says it all
        return msg
    flag = _flag_dest(name, flags[name])[0] if name in flags else name
    lo, lo_open, hi, hi_open = _field_bounds(model.model_fields[name])
    kind = err["type"]
    if kind in ("greater_than", "greater_than_equal") and lo is not None:
        return f"{flag} must be {'>' if lo_open else '>='} {lo:g}"
    if kind in ("less_than", "less_than_equal") and hi is not None:
        if lo is not None:
            return f"{flag} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        return f"{flag} must be {'<' if hi_open else '<='} {hi:g}"
    return f"{flag}: {msg}"
