"""Several overlapping frames over one scene, and the scene's truth on any grid (pure numpy).

The area job (issue 10) simulates two or three overlapping frames, ascending and descending, and
checks its mosaic against the ground truth over the whole area. ``plan_area_frames`` lays frames out,
``simulate_area`` simulates them over one shared scene, ``scene_truth`` evaluates the ENU velocities
(and DEM, land cover) of the scene on any lon/lat grid -- e.g. the mosaic's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from insarcloud.errors import ConfigError

from .deformation import velocity_enu
from .dem import surface
from .frame import SimulatedFrame, simulate_frame
from .geometry import PIXEL_DEG
from .scene import DEFAULT_LAT, DEFAULT_LON, Scene, make_scene

__all__ = ["FrameSpec", "SceneTruth", "area_grid", "plan_area_frames", "scene_truth", "simulate_area"]

# plausible Sentinel-1 relative orbits over central Tibet (names only; geometry comes from the pass)
_ASC_TRACKS = (12, 114, 41, 143)
_DSC_TRACKS = (121, 150, 48, 77)
_ASC_START = "2019-01-05"
_DSC_START = "2019-01-11"


class FrameSpec(NamedTuple):
    """Where and how to simulate one frame of an area (keyword arguments of ``simulate_frame``)."""

    frame_id: str
    lon0: float
    lat0: float
    shape: tuple[int, int]
    seed: int
    start_date: str


def _frame_id(track: int, direction: str, lat0: float) -> str:
    # LiCSAR: track, colatitude of the frame centre x 100, bursts per sub-swath
    return f"{track:03d}{direction}_{int(round((90.0 - lat0) * 100)):05d}_131313"


def plan_area_frames(
    *, n_ascending: int = 1, n_descending: int = 1, shape: tuple[int, int] = (256, 256), overlap: float = 0.35,
    lon_c: float = DEFAULT_LON, lat_c: float = DEFAULT_LAT, seed: int = 0,
) -> list[FrameSpec]:
    """Lay out overlapping frames around (lon_c, lat_c).

    Ascending frames sit side by side east-west overlapping by ``overlap`` of their width; descending
    frames likewise, shifted a quarter frame east and 15 % south, so every descending frame overlaps an
    ascending one (where east/up decomposition is possible).

    Returns
    -------
    list of FrameSpec (ascending first), each with its own seed (``seed`` + index).
    """
    if not 0.0 < overlap < 1.0:
        raise ConfigError(f"overlap must be in (0, 1), got {overlap}")
    if n_ascending + n_descending < 1 or n_ascending > len(_ASC_TRACKS) or n_descending > len(_DSC_TRACKS):
        raise ConfigError(f"need 1..4 frames per pass, got {n_ascending} ascending, {n_descending} descending")
    rows, cols = shape
    w, h = cols * PIXEL_DEG, rows * PIXEL_DEG
    step = w * (1.0 - overlap)
    specs: list[FrameSpec] = []
    for k in range(n_ascending):
        lon0 = round(lon_c + (k - (n_ascending - 1) / 2) * step, 3)
        specs.append(FrameSpec(_frame_id(_ASC_TRACKS[k], "A", lat_c), lon0, round(lat_c, 3), (rows, cols),
                               seed + len(specs), _ASC_START))
    for k in range(n_descending):
        lon0 = round(lon_c + (k - (n_descending - 1) / 2) * step + 0.25 * w, 3)
        lat0 = round(lat_c - 0.15 * h, 3)
        specs.append(FrameSpec(_frame_id(_DSC_TRACKS[k], "D", lat0), lon0, lat0, (rows, cols),
                               seed + len(specs), _DSC_START))
    return specs


def simulate_area(specs: list[FrameSpec], *, scene_seed: int = 0, scene: Scene | None = None,
                  n_epochs: int = 30, **physics: Any) -> list[SimulatedFrame]:
    """Simulate every frame of ``specs`` over one scene (``physics`` goes to ``simulate_frame``)."""
    if scene is None:
        lon_c = float(np.mean([s.lon0 for s in specs]))
        lat_c = float(np.mean([s.lat0 for s in specs]))
        scene = make_scene(scene_seed, lon_c=round(lon_c, 3), lat_c=round(lat_c, 3))
    return [simulate_frame(s.frame_id, shape=s.shape, n_epochs=n_epochs, seed=s.seed, lon0=s.lon0, lat0=s.lat0,
                           start_date=s.start_date, scene=scene, **physics) for s in specs]


def area_grid(bbox: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (lon (x,), lat (y,) descending) of the 0.001-deg grid covering ``bbox``.

    ``bbox`` = (lon_min, lat_min, lon_max, lat_max), degrees; centres are multiples of 0.001 deg, the same
    values every simulated frame uses.
    """
    lon_min, lat_min, lon_max, lat_max = bbox
    if not (lon_min < lon_max and lat_min < lat_max):
        raise ConfigError(f"bbox must be (lon_min, lat_min, lon_max, lat_max), got {bbox}")
    j0, j1 = int(np.ceil(lon_min / PIXEL_DEG - 1e-9)), int(np.floor(lon_max / PIXEL_DEG + 1e-9))
    i0, i1 = int(np.floor(lat_max / PIXEL_DEG + 1e-9)), int(np.ceil(lat_min / PIXEL_DEG - 1e-9))
    return np.arange(j0, j1 + 1) * PIXEL_DEG, np.arange(i0, i1 - 1, -1) * PIXEL_DEG


class SceneTruth(NamedTuple):
    """Ground truth of a scene on a grid; each ndarray (y, x).

    Fields: velocity_east, velocity_north, velocity_up (float32 mm/yr, secular), hgt (float32 m),
    landcover (uint8), landmask (uint8), permafrost (bool).
    """

    velocity_east: np.ndarray
    velocity_north: np.ndarray
    velocity_up: np.ndarray
    hgt: np.ndarray
    landcover: np.ndarray
    landmask: np.ndarray
    permafrost: np.ndarray


def scene_truth(scene: Scene, lon: np.ndarray, lat: np.ndarray) -> SceneTruth:
    """ENU velocity, DEM and land cover of ``scene`` at pixel centres ``lon`` (x,), ``lat`` (y,) (degrees)."""
    surf = surface(scene, np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    p = scene.projection
    v = velocity_enu(scene, surf, p.x_km(lon), p.y_km(lat))
    return SceneTruth(v.east, v.north, v.up, surf.hgt, surf.landcover, surf.landmask, surf.permafrost)
