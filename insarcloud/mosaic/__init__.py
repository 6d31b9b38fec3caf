"""Multi-frame mosaic: frame offsets from overlaps, east/up decomposition, GNSS tie, the area cube."""

from insarcloud.mosaic.kernels import (
    Decomposition,
    Grid,
    OffsetSolution,
    area_grid,
    combine,
    decompose_east_up,
    frame_offsets,
    gnss_tie,
    place,
)

__all__ = [
    "Decomposition",
    "Grid",
    "OffsetSolution",
    "area_grid",
    "combine",
    "decompose_east_up",
    "frame_offsets",
    "gnss_tie",
    "place",
]
