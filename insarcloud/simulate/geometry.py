"""Sentinel-1 viewing geometry and the frame grid (pure numpy).

LOS unit vectors point from the ground to the satellite (LiCSAR's E/N/U files). For a right-looking
SAR flying along azimuth ``heading`` (deg clockwise from north) the satellite sits on the left of the
flight direction, so with incidence theta

    E = -sin(theta) cos(heading),   N = sin(theta) sin(heading),   U = cos(theta).

Ascending heading ~ -12 deg: E < 0 (looks east), N < 0; descending ~ -168 deg: E > 0, N < 0.
Incidence grows across range from ~30 deg (near) to ~46 deg (far) for Sentinel-1 IW. It is computed
from spherical geometry: orbit height 693 km, ground range g from the nadir track (Earth radius R):

    tan(theta) = sin(g/R) / (cos(g/R) - R/(R+H)).
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

import numpy as np

from insarcloud.errors import ConfigError

__all__ = [
    "EARTH_RADIUS_KM", "FRAME_ID_RE", "HEADING_ASC_DEG", "HEADING_DSC_DEG", "ORBIT_HEIGHT_KM", "PIXEL_DEG",
    "WAVELENGTH_M", "FrameGrid", "Geometry", "frame_grid", "ground_range_for_incidence", "incidence_from_ground_range",
    "los_geometry", "los_unit_vectors", "parse_frame_id",
]

WAVELENGTH_M = 0.05546576  # must equal insarcloud.io.WAVELENGTH_M (checked by tests; kernels do not import io)
PIXEL_DEG = 0.001
EARTH_RADIUS_KM = 6371.0
ORBIT_HEIGHT_KM = 693.0
HEADING_ASC_DEG = -12.0
HEADING_DSC_DEG = -168.0
FRAME_ID_RE = re.compile(r"^(\d{3})([AD])_(\d{5})_(\d{6})$")

PassDirection = Literal["A", "D"]


def parse_frame_id(frame_id: str) -> tuple[int, PassDirection]:
    """Return (track, pass direction) of a LiCSAR frame id ``\\d{3}[AD]_\\d{5}_\\d{6}``.

    Raises
    ------
    ValueError naming the id when it does not match.
    """
    m = FRAME_ID_RE.match(frame_id)
    if m is None:
        raise ConfigError(f"frame id {frame_id!r} does not match LiCSAR's NNN[AD]_NNNNN_NNNNNN")
    return int(m.group(1)), m.group(2)  # type: ignore[return-value]


class FrameGrid(NamedTuple):
    """Pixel grid of a frame: north-up EPSG:4326 at PIXEL_DEG.

    Fields
    ------
    lon : ndarray (x,), float64, pixel-centre longitudes, exact multiples of PIXEL_DEG
    lat : ndarray (y,), float64, pixel-centre latitudes, descending
    i0, j0 : int
        Global indices: lon = (j0 + j) * PIXEL_DEG, lat = (i0 - i) * PIXEL_DEG, so frames of one
        scene share pixel centres exactly.
    transform : tuple of 6 floats
        GDAL-order affine (a, b, c, d, e, f) for rasterio.Affine: top-left corner, PIXEL_DEG steps.
    """

    lon: np.ndarray
    lat: np.ndarray
    i0: int
    j0: int
    transform: tuple[float, float, float, float, float, float]


def frame_grid(lon_center: float, lat_center: float, shape: tuple[int, int]) -> FrameGrid:
    """Grid of ``shape`` (rows, cols) centred (to the nearest pixel) on (lon_center, lat_center)."""
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 2 or cols < 2:
        raise ConfigError(f"frame shape must be at least 2x2, got {shape}")
    i0 = int(round(lat_center / PIXEL_DEG)) + rows // 2
    j0 = int(round(lon_center / PIXEL_DEG)) - cols // 2
    lat = (i0 - np.arange(rows)) * PIXEL_DEG
    lon = (j0 + np.arange(cols)) * PIXEL_DEG
    transform = (PIXEL_DEG, 0.0, (j0 - 0.5) * PIXEL_DEG, 0.0, -PIXEL_DEG, (i0 + 0.5) * PIXEL_DEG)
    return FrameGrid(lon, lat, i0, j0, transform)


def incidence_from_ground_range(g_km: np.ndarray, orbit_height_km: float = ORBIT_HEIGHT_KM) -> np.ndarray:
    """Incidence angle (deg) at ground range ``g_km`` from the nadir track (spherical Earth)."""
    phi = np.asarray(g_km, dtype=np.float64) / EARTH_RADIUS_KM
    q = EARTH_RADIUS_KM / (EARTH_RADIUS_KM + orbit_height_km)
    return np.rad2deg(np.arctan2(np.sin(phi), np.cos(phi) - q))


def ground_range_for_incidence(theta_deg: float, orbit_height_km: float = ORBIT_HEIGHT_KM) -> float:
    """Inverse of ``incidence_from_ground_range`` (monotonic: bisection to 1 mm)."""
    lo, hi = 0.0, 1500.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if incidence_from_ground_range(mid, orbit_height_km) < theta_deg:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def slant_range_km(g_km: np.ndarray, orbit_height_km: float = ORBIT_HEIGHT_KM) -> np.ndarray:
    """Slant range (km) from the satellite to ground range ``g_km``."""
    r = EARTH_RADIUS_KM
    rs = r + orbit_height_km
    phi = np.asarray(g_km, dtype=np.float64) / r
    return np.sqrt(r**2 + rs**2 - 2 * r * rs * np.cos(phi))


def los_unit_vectors(heading_deg: float, incidence_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground-to-satellite unit vector (E, N, U) for ``heading_deg`` and incidence (deg, any shape)."""
    th = np.deg2rad(np.asarray(incidence_deg, dtype=np.float64))
    h = np.deg2rad(heading_deg)
    return -np.sin(th) * np.cos(h), np.sin(th) * np.sin(h) * np.ones_like(th), np.cos(th)


class Geometry(NamedTuple):
    """Viewing geometry of a frame.

    Fields
    ------
    los_e, los_n, los_u : ndarray (y, x), float32, unit vector ground -> satellite
    incidence_deg : ndarray (y, x), float32, ellipsoid incidence angle
    ground_range_km : ndarray (y, x), float32, distance from the nadir track
    slant_range_km : ndarray (y, x), float32
    heading_deg : float
    """

    los_e: np.ndarray
    los_n: np.ndarray
    los_u: np.ndarray
    incidence_deg: np.ndarray
    ground_range_km: np.ndarray
    slant_range_km: np.ndarray
    heading_deg: float


def los_geometry(
    x_km: np.ndarray, y_km: np.ndarray, *, heading_deg: float, center_incidence_deg: float = 38.5,
    orbit_height_km: float = ORBIT_HEIGHT_KM,
) -> Geometry:
    """Per-pixel LOS geometry of a frame.

    Parameters
    ----------
    x_km : ndarray (x,), float64, km east of the frame centre
    y_km : ndarray (y,), float64, km north of the frame centre
    heading_deg : float
        Flight azimuth, clockwise from north (~ -12 ascending, ~ -168 descending).
    center_incidence_deg : float
        Incidence at the frame centre (Sentinel-1 IW spans ~30-46 deg over ~250 km of ground range).

    Returns
    -------
    Geometry
    """
    h = np.deg2rad(heading_deg)
    # cross-track distance, positive to the right of the flight direction (away from nadir)
    c = x_km[None, :] * np.cos(h) - y_km[:, None] * np.sin(h)
    g = ground_range_for_incidence(center_incidence_deg, orbit_height_km) + c
    inc = incidence_from_ground_range(g, orbit_height_km)
    e, n, u = los_unit_vectors(heading_deg, inc)
    f32 = np.float32
    return Geometry(e.astype(f32), n.astype(f32), u.astype(f32), inc.astype(f32), g.astype(f32),
                    slant_range_km(g, orbit_height_km).astype(f32), float(heading_deg))
