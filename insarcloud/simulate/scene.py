"""The ground truth of a simulated region: one ``Scene`` per ``scene_seed`` (pure numpy).

A scene holds everything that belongs to the ground and not to an acquisition: the fractal
topography, land cover, the permafrost, the strike-slip fault, the subsidence bowl and a lake. All
of it is expressed in geographic coordinates, so every frame simulated over any box of the same
scene (ascending or descending, overlapping or not) sees the same ground. Default location: the
central-southern Tibetan Plateau (90.0 E, 31.5 N; Beng Co / Nam Co region).

Feature positions are drawn from the scene seed *relative to the scene centre*, within ~10 km of it,
so a default 256 x 256 frame (~25 x 28 km) centred on the scene shows the fault, the bowl and the lake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fields import Projection, Waves, evaluate, power_law_waves

__all__ = ["DEFAULT_LAT", "DEFAULT_LON", "Fault", "Lake", "MogiSource", "Scene", "make_scene"]

DEFAULT_LON = 90.0
DEFAULT_LAT = 31.5

# tags that separate the random streams derived from one seed
_TAG_SCENE = 1


@dataclass(frozen=True)
class Fault:
    """Interseismic strike-slip fault (screw dislocation in an elastic half-space, Savage & Burford 1973).

    Fields: lon, lat (a point of the trace, deg), strike_deg (clockwise from north), slip_rate_mm_yr
    (> 0 right-lateral), locking_depth_km.
    """

    lon: float
    lat: float
    strike_deg: float
    slip_rate_mm_yr: float
    locking_depth_km: float


@dataclass(frozen=True)
class MogiSource:
    """Subsidence bowl: a deflating point source (Mogi 1958) at depth_km below (lon, lat).

    ``max_rate_mm_yr`` is the vertical rate above the source (negative = subsidence).
    """

    lon: float
    lat: float
    depth_km: float
    max_rate_mm_yr: float


@dataclass(frozen=True)
class Lake:
    """An elliptical lake (water: landmask 0, no coherence) at ``level_m``; semi-axes in km."""

    lon: float
    lat: float
    a_km: float
    b_km: float
    azimuth_deg: float
    level_m: float


@dataclass(frozen=True)
class Scene:
    """Ground truth of a region, reproducible from ``seed``.

    Fields
    ------
    seed : int
    projection : Projection
        Fixed equirectangular km projection centred on the scene.
    dem_waves : Waves
        Unit-variance fractal field behind the DEM (beta ~ 3.6).
    dem_mean_m, dem_half_range_m : float
        DEM = mean + half_range * tanh(0.6 z): strictly inside [4000, 5500] m by default.
    moisture_waves : Waves
        Unit-variance soil-moisture / vegetation field behind the land cover and permafrost ice content.
    fault, bowl, lake : Fault, MogiSource, Lake
    permafrost_min_elev_m : float
        Permafrost where elevation (+- a 120 m random perturbation) exceeds this.
    glacier_min_elev_m : float
        Perennial ice above this elevation (incoherent).
    """

    seed: int
    projection: Projection
    dem_waves: Waves
    moisture_waves: Waves
    fault: Fault
    bowl: MogiSource
    lake: Lake
    dem_mean_m: float = 4750.0
    dem_half_range_m: float = 740.0
    permafrost_min_elev_m: float = 4650.0
    glacier_min_elev_m: float = 5430.0
    permafrost_trend_mm_yr: float = -4.0
    seasonal_amplitude_mm: float = 12.0
    params: dict = field(default_factory=dict, compare=False)


def _offset(lon: float, lat: float, east_km: float, north_km: float, proj: Projection) -> tuple[float, float]:
    """Move (lon, lat) by (east_km, north_km) in the scene projection."""
    kx = proj.x_km(proj.lon_ref + 1.0) - proj.x_km(proj.lon_ref)
    ky = proj.y_km(proj.lat_ref + 1.0) - proj.y_km(proj.lat_ref)
    return lon + east_km / float(kx), lat + north_km / float(ky)


def make_scene(
    scene_seed: int = 0,
    *,
    lon_c: float = DEFAULT_LON,
    lat_c: float = DEFAULT_LAT,
    fault_rate_mm_yr: float | None = None,
    bowl_rate_mm_yr: float | None = None,
) -> Scene:
    """Build the scene of ``scene_seed`` centred on (lon_c, lat_c).

    Parameters
    ----------
    scene_seed : int
        Seed of everything on the ground; two frames of one scene share it.
    lon_c, lat_c : float, degrees
        Scene centre (projection origin; features lie within ~10 km of it).
    fault_rate_mm_yr, bowl_rate_mm_yr : float, optional
        Override the drawn fault slip rate (right-lateral > 0) and bowl peak vertical rate (< 0 subsides).

    Returns
    -------
    Scene
    """
    rng = np.random.default_rng([int(scene_seed), _TAG_SCENE])
    proj = Projection(float(lon_c), float(lat_c))
    dem_waves = power_law_waves(rng, beta=3.3, wavelength_min_km=0.15, wavelength_max_km=50.0, per_octave=16)
    moisture_waves = power_law_waves(rng, beta=3.0, wavelength_min_km=0.4, wavelength_max_km=60.0, per_octave=12)

    # Fault: WNW-ESE right-lateral, like the Beng Co and Karakoram-Jiali faults (5-10 mm/yr, D ~ 15 km)
    strike = float(rng.uniform(100.0, 120.0))
    perp = float(rng.uniform(-4.0, 4.0))  # km off the centre, perpendicular to strike
    s = np.deg2rad(strike)
    f_lon, f_lat = _offset(lon_c, lat_c, perp * np.cos(s), -perp * np.sin(s), proj)
    rate = float(rng.uniform(5.0, 9.0)) if fault_rate_mm_yr is None else float(fault_rate_mm_yr)
    fault = Fault(f_lon, f_lat, strike, rate, float(rng.uniform(12.0, 18.0)))

    # Subsidence bowl 5-8 km from the centre (groundwater / thermokarst drainage), 15-35 mm/yr
    az = float(rng.uniform(0.0, 2 * np.pi))
    r = float(rng.uniform(5.0, 8.0))
    b_lon, b_lat = _offset(lon_c, lat_c, r * np.sin(az), r * np.cos(az), proj)
    brate = -float(rng.uniform(15.0, 35.0)) if bowl_rate_mm_yr is None else float(bowl_rate_mm_yr)
    bowl = MogiSource(b_lon, b_lat, float(rng.uniform(1.2, 2.2)), brate)

    # Lake on the other side of the centre
    az2 = az + np.pi + rng.uniform(-0.8, 0.8)
    r2 = float(rng.uniform(6.0, 9.0))
    l_lon, l_lat = _offset(lon_c, lat_c, r2 * np.sin(az2), r2 * np.cos(az2), proj)
    a_km, b_km, lake_az = float(rng.uniform(1.8, 3.0)), float(rng.uniform(1.0, 1.8)), float(rng.uniform(0, 180))
    # the lake fills a depression: its level is 5 m below the lowest DEM point on its shore
    ang = np.linspace(0, 2 * np.pi, 73)[:-1]
    la = np.deg2rad(lake_az)
    u, v = a_km * np.cos(ang), b_km * np.sin(ang)
    sx = proj.x_km(l_lon) + u * np.sin(la) + v * np.cos(la)
    sy = proj.y_km(l_lat) + u * np.cos(la) - v * np.sin(la)
    z_shore = np.array([evaluate(dem_waves, np.array([a]), np.array([b]), np.float64)[0, 0]
                        for a, b in zip(sx, sy, strict=True)])
    level = float(4750.0 + 740.0 * np.tanh(0.6 * z_shore.min()) - 5.0)
    lake = Lake(l_lon, l_lat, a_km, b_km, lake_az, level)
    params = {
        "scene_seed": int(scene_seed), "lon_c": float(lon_c), "lat_c": float(lat_c),
        "fault": fault.__dict__, "bowl": bowl.__dict__, "lake": lake.__dict__,
    }
    return Scene(int(scene_seed), proj, dem_waves, moisture_waves, fault, bowl, lake, params=params)
