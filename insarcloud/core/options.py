"""Option literals and defaults shared by the stages, the area config and the CLI (one place, STYLE.md).

Pure Python (no numpy): the CLI's parser imports this module.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "DEFAULT_INVERT_WEIGHTS",
    "DEFAULT_TS_GROUP",
    "FORECAST_GROUP",
    "NOISE_GROUP",
    "QC_GROUP",
    "QUALITY_GROUP",
    "STAGE_ORDER",
    "INVERSION_WEIGHTS",
    "InversionWeights",
    "NoiseAlphaMethod",
    "NoiseClasses",
    "NoiseFlicker",
    "NoiseFunctional",
    "NoiseSelection",
    "NoiseSigmaModel",
    "StageName",
    "UNWRAP_METHODS",
    "UnwrapMethod",
    "tile_overlap_error",
    "ts_group",
]

StageName = Literal["ingest", "qc", "quality", "unwrap", "invert", "noise", "forecast", "mosaic"]
#: The order the pipeline runs stages in, whatever order the config lists them.
STAGE_ORDER: tuple[StageName, ...] = ("ingest", "qc", "quality", "unwrap", "invert", "noise", "forecast", "mosaic")

UnwrapMethod = Literal["ls", "wls", "pcua", "rpua", "chebyshev", "snaphu", "multiscale"]
UNWRAP_METHODS: tuple[UnwrapMethod, ...] = ("ls", "wls", "pcua", "rpua", "chebyshev", "snaphu", "multiscale")
InversionWeights = Literal["none", "coherence", "quality", "closure", "quality_closure"]
INVERSION_WEIGHTS: tuple[InversionWeights, ...] = ("none", "coherence", "quality", "closure", "quality_closure")
NoiseClasses = Literal["tiles", "segments"]
NoiseSigmaModel = Literal["gaussian", "full", "diagonal"]
NoiseFlicker = Literal["flicker", "flicker_powerlaw"]
NoiseAlphaMethod = Literal["likelihood", "wtest"]
NoiseFunctional = Literal["seasonal", "linear"]
NoiseSelection = Literal["lrt", "aic"]

#: The inversion's default weights, for the CLI, the Python API and the area config alike. quality_closure
#: (session 5, notes/invert.md): on 5 simulated 100-epoch frames it cut the velocity RMSE against unweighted
#: by 29.5%, against 6.7% for the quality map alone and 27.4% for loop closure alone.
DEFAULT_INVERT_WEIGHTS: InversionWeights = "quality_closure"


def ts_group(weights: str) -> str:
    """The group the inversion writes for ``weights`` (``ts_<weights>``)."""
    return f"ts_{weights}"


#: The ts group the inversion writes by default, and so the one noise, forecast and mosaic read by default.
DEFAULT_TS_GROUP = ts_group(DEFAULT_INVERT_WEIGHTS)
QC_GROUP = "qc"
QUALITY_GROUP = "quality"
NOISE_GROUP = "noise"
FORECAST_GROUP = "forecast"


def tile_overlap_error(tile: int | None, overlap: int) -> str | None:
    """Why ``overlap`` does not fit ``tile``, or None: the one tile/overlap rule of the project.

    ``overlap`` is the border a tile shares with each neighbour: the quality model's sin^2 blend taper
    (:func:`insarcloud.qc.model.blend_weights`, tiles every ``tile - overlap`` pixels) or the unwrapper's halo
    (:mod:`insarcloud.unwrap.tiling`). It must be >= 0 and less than half the tile, so the two borders of a
    tile never meet: beyond half, a tile's two tapers overwrite each other (the blend is no longer a partition
    of unity) and every pixel lies in three or more tiles per axis (more than 4x the model evaluations of
    ``overlap = 0`` for no better blending). ``tile=None`` (the stage picks it from the cube's chunks) checks
    the sign only; the stage checks the chunk itself.
    """
    if overlap < 0:
        return f"overlap {overlap} must be >= 0"
    if tile is not None and overlap * 2 >= tile:
        return f"overlap {overlap} must be less than half the tile {tile}"
    return None
