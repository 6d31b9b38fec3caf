"""Simulate one LiCSAR frame over a scene: ``simulate_frame`` -> ``SimulatedFrame`` (pure numpy).

Ground (DEM, land cover, deformation, snow) comes from the scene (``scene_seed``) in geographic
coordinates; the atmosphere from (scene, track, pass, date); noise, texture, network, speckle and
unwrapping errors from the frame's own ``seed`` (mixed with the frame id). So an ascending and a
descending frame over overlapping boxes share the ENU truth and differ in everything else.

Signs (CONTRACT.md): LOS displacement d (mm) is positive toward the satellite; interferometric phase
unw = -4 pi / lambda * (d(secondary) - d(primary)), lambda = 0.05546576 m.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from insarcloud.core.phase import wrap_angle as wrap_phase  # re-exported (__all__)
from insarcloud.errors import ConfigError

from .atmosphere import AtmosphereParams, acquisition_atmosphere
from .decorrelation import draw_phase_noise, pair_coherence, snow_cover, snow_patchiness
from .deformation import los_project, seasonal_up, velocity_enu, years_since
from .dem import dem_error_field, surface
from .fields import evaluate, power_law_waves
from .geometry import (
    HEADING_ASC_DEG,
    HEADING_DSC_DEG,
    PIXEL_DEG,
    WAVELENGTH_M,
    FrameGrid,
    Geometry,
    frame_grid,
    los_geometry,
    parse_frame_id,
)
from .mli import intensity
from .network import Network, make_network, pair_names
from .scene import DEFAULT_LAT, DEFAULT_LON, Scene, make_scene
from .stack_noise import stack_noise
from .unwrap_errors import unwrap_error_cycles

__all__ = ["DEFAULT_FRAME_ID", "Footprint", "SimulatedFrame", "mm_to_phase_rad", "simulate_frame", "wrap_phase"]

log = logging.getLogger(__name__)

DEFAULT_FRAME_ID = "012A_05850_131313"
Footprint = Literal["rectangle", "swath"]
NoiseModel = Literal["stack", "pairwise"]
LOS_SIGN_CONVENTION = (
    "LOS displacement positive toward the satellite (uplift on both passes); "
    "unw = -4*pi/wavelength_m * (d_secondary - d_primary)"
)


def mm_to_phase_rad(d_mm: np.ndarray) -> np.ndarray:
    """Interferometric phase (rad) of a LOS displacement (mm, + toward the satellite)."""
    return -4.0 * np.pi / WAVELENGTH_M * np.asarray(d_mm) / 1000.0


@dataclass(frozen=True)
class SimulatedFrame:
    """A simulated frame: products, truth and metadata (arrays are numpy; dims pair/date/y/x).

    Products (what LiCSAR would publish; NaN = no data here, 0 in the GeoTIFFs)
    -------------------------------------------------------------------------
    unw : (pair, y, x) float32 rad, unw_true + noise + 2 pi k (errors); NaN outside footprint / on water
    phase : (pair, y, x) float32 rad, wrapped (-pi, pi] = wrap(unw_true + noise) -> diff_pha
    coherence_est : (pair, y, x) float32, sample coherence of the draw -> cc (x 255)
    mli : (date, y, x) float32 intensity
    hgt, los_e, los_n, los_u, incidence_deg : (y, x) float32
    landmask : (y, x) uint8, 1 land, 0 water

    Truth
    -----
    coherence : (pair, y, x) float32 true coherence the noise was drawn from
    noise : (pair, y, x) float32 rad, drawn phase noise
    unw_true : (pair, y, x) float32 rad, deformation + atmosphere, no noise, no errors
    unw_cycles : (pair, y, x) int8, k of the unwrapping-error patches (unw_error = k != 0)
    velocity_east/north/up : (y, x) float32 mm/yr; velocity : (y, x) LOS mm/yr (secular only)
    displacement : (date, y, x) float32 LOS mm relative to the first epoch (secular + seasonal)
    seasonal : (date, y, x) float32 LOS mm (absolute calendar cycle)
    atmosphere : (date, y, x) float32 apparent LOS mm (minus the slant delay)
    snow : (date, y, x) bool; landcover (y, x) uint8; permafrost (y, x) bool; valid (y, x) bool footprint
    dem_error : (y, x) float32 m, true ground minus hgt (zeros unless dem_error_std_m > 0)
    """

    frame_id: str
    track: int
    direction: str
    grid: FrameGrid
    network: Network
    pairs: list[str]
    geometry: Geometry
    hgt: np.ndarray
    landmask: np.ndarray
    landcover: np.ndarray
    permafrost: np.ndarray
    valid: np.ndarray
    velocity_east: np.ndarray
    velocity_north: np.ndarray
    velocity_up: np.ndarray
    velocity: np.ndarray
    displacement: np.ndarray
    seasonal: np.ndarray
    atmosphere: np.ndarray
    snow: np.ndarray
    coherence: np.ndarray
    coherence_est: np.ndarray
    noise: np.ndarray
    unw_true: np.ndarray
    unw_cycles: np.ndarray
    unw: np.ndarray
    phase: np.ndarray
    mli: np.ndarray
    scene: Scene
    atmosphere_params: list[AtmosphereParams]
    params: dict[str, Any] = field(default_factory=dict)
    dem_error: np.ndarray | None = None

    # conveniences -----------------------------------------------------------------------------
    @property
    def lon(self) -> np.ndarray:
        return self.grid.lon

    @property
    def lat(self) -> np.ndarray:
        return self.grid.lat

    @property
    def dates(self) -> np.ndarray:
        return self.network.dates

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.grid.lat), len(self.grid.lon))

    @property
    def unw_error(self) -> np.ndarray:
        """(pair, y, x) bool: pixels whose unw carries an unwrapping error."""
        return self.unw_cycles != 0

    @property
    def los_e(self) -> np.ndarray:
        return self.geometry.los_e

    @property
    def los_n(self) -> np.ndarray:
        return self.geometry.los_n

    @property
    def los_u(self) -> np.ndarray:
        return self.geometry.los_u

    @property
    def heading_deg(self) -> float:
        return self.geometry.heading_deg


def _footprint(grid: FrameGrid, x_km: np.ndarray, y_km: np.ndarray, heading_deg: float,
               kind: Footprint) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Valid-data mask and polygon (lon, lat corners) of the frame.

    ``swath``: a parallelogram with horizontal top/bottom and sides along the flight track, as the
    burst footprint of a LiCSAR frame looks once geocoded; ``rectangle``: the whole box.
    """
    lon, lat = grid.lon, grid.lat
    half = PIXEL_DEG / 2
    w_deg, e_deg, n_deg, s_deg = lon[0] - half, lon[-1] + half, lat[0] + half, lat[-1] - half
    if kind == "rectangle":
        return np.ones((len(lat), len(lon)), bool), [(w_deg, n_deg), (e_deg, n_deg), (e_deg, s_deg),
                                                     (w_deg, s_deg)]
    if kind != "swath":
        raise ConfigError(f"footprint must be 'rectangle' or 'swath', got {kind!r}")
    tan = np.tan(np.deg2rad(heading_deg))  # track drifts x = y * tan(heading) east per km north
    hw = 0.5 * (x_km[-1] - x_km[0]) - 0.5 * abs(tan) * (y_km[0] - y_km[-1])
    if hw <= 0:
        raise ConfigError("frame too tall for its width to hold a swath footprint; use footprint='rectangle'")
    shift = y_km[:, None] * tan
    valid = np.abs(x_km[None, :] - shift) <= hw
    kx = float(x_km[1] - x_km[0]) / PIXEL_DEG
    ky = float(y_km[0] - y_km[1]) / PIXEL_DEG
    lon_c, lat_c = 0.5 * (w_deg + e_deg), 0.5 * (n_deg + s_deg)
    yn, ys = (n_deg - lat_c) * ky, (s_deg - lat_c) * ky
    poly = [(lon_c + (yn * tan - hw) / kx, n_deg), (lon_c + (yn * tan + hw) / kx, n_deg),
            (lon_c + (ys * tan + hw) / kx, s_deg), (lon_c + (ys * tan - hw) / kx, s_deg)]
    return valid, poly


def simulate_frame(
    frame_id: str = DEFAULT_FRAME_ID,
    shape: tuple[int, int] = (256, 256),
    n_epochs: int = 30,
    seed: int = 0,
    scene_seed: int = 0,
    lon0: float | None = None,
    lat0: float | None = None,
    start_date: str = "2019-01-05",
    *,
    scene: Scene | None = None,
    scene_lon: float = DEFAULT_LON,
    scene_lat: float = DEFAULT_LAT,
    heading_deg: float | None = None,
    center_incidence_deg: float = 38.5,
    looks: float = 12.0,
    min_neighbours: int = 3,
    max_neighbours: int = 5,
    missing_epoch_fraction: float = 0.08,
    missing_pair_fraction: float = 0.04,
    unw_error_pair_fraction: float = 0.2,
    unw_error_coh_threshold: float = 0.3,
    turbulence_scale: float = 1.0,
    stratified_scale: float = 1.0,
    dem_error_std_m: float = 0.0,
    noise: bool = True,
    noise_model: NoiseModel = "stack",
    phase_filter_sigma_px: float = 0.0,
    mask_water_in_unw: bool = True,
    footprint: Footprint = "rectangle",
    missing_unw_fraction: float = 0.0,
) -> SimulatedFrame:
    """Simulate a LiCSAR frame with ground truth.

    Parameters
    ----------
    frame_id : str
        LiCSAR id ``NNN[AD]_NNNNN_NNNNNN``; the track and pass direction are read from it.
    shape : (rows, cols)
        Pixels of 0.001 deg (~111 m N-S, ~95 m E-W at 31.5 N).
    n_epochs : int
        Acquired epochs (12-day slots with some missing).
    seed : int
        Frame seed: network, noise, texture, speckle, unwrapping errors.
    scene_seed : int
        Scene seed: DEM, land cover, deformation, snow; atmosphere together with track and date.
    lon0, lat0 : float, degrees, optional
        Frame centre; default the scene centre. Pixel centres are multiples of 0.001 deg.
    start_date : str
        First acquisition (YYYY-MM-DD).
    scene : Scene, optional
        A prebuilt scene (overrides scene_seed / scene_lon / scene_lat).
    scene_lon, scene_lat : float
        Scene centre (the fault, bowl and lake lie within ~10 km of it).
    heading_deg : float, optional
        Default -12 (A) or -168 (D).
    center_incidence_deg : float
        Incidence at the frame centre.
    looks : float
        Equivalent number of looks of the phase noise and the coherence estimate.
    min_neighbours, max_neighbours : int
        Each epoch is paired with its next 3-5 epochs.
    missing_epoch_fraction, missing_pair_fraction : float
        Gaps of the calendar and of the network.
    unw_error_pair_fraction, unw_error_coh_threshold : float
        Share of pairs with unwrapping-error patches, and the coherence below which they form.
    turbulence_scale, stratified_scale : float
        Multipliers of the atmosphere (0 switches a part off).
    dem_error_std_m : float
        Standard deviation of the error of the DEM LiCSAR used (hgt.tif) w.r.t. the true ground (m;
        Copernicus DEM on the plateau: a few m). When > 0, unw_true also holds the topographic residual
        -4 pi / lambda * (-B_perp dz / (R sin theta)) of each pair, and ``dem_error`` the field. Default 0.
    noise : bool
        False: no phase noise (coherence_est = coherence).
    noise_model : "stack" | "pairwise"
        "stack" (default): draw L looks of every epoch's SLC and form the pairs from them, so pairs
        sharing an epoch share its noise and triplet closures are small, as in real stacks
        (``stack_noise``). "pairwise": an independent exact L-look draw per pair (complex Wishart), with
        baseline decorrelation and a per-pair coherence texture; closures are as noisy as three pairs.
    phase_filter_sigma_px : float
        > 0: smooth each noisy interferogram exp(i(unw_true + noise)) with a Gaussian of this sigma (px)
        before taking its phase, a stand-in for LiCSAR's Goldstein filter: the noise becomes spatially
        correlated and smaller; ``noise`` is then the filtered phase minus unw_true (wrapped). Default 0.
    mask_water_in_unw : bool
        Water pixels are no data in unw (LiCSAR masks them before unwrapping); cc and diff_pha keep them.
    footprint : "rectangle" | "swath"
        Valid-data area of the products inside the box.
    missing_unw_fraction : float
        Share of pairs published without an unw.tif (LiCSAR has such pairs); their names are in
        ``params["pairs_without_unw"]`` and ``write_licsar_frame`` skips their unw.tif.

    Returns
    -------
    SimulatedFrame
    """
    track, direction = parse_frame_id(frame_id)
    for name, frac in (("missing_epoch_fraction", missing_epoch_fraction),
                       ("missing_pair_fraction", missing_pair_fraction),
                       ("unw_error_pair_fraction", unw_error_pair_fraction),
                       ("missing_unw_fraction", missing_unw_fraction)):
        if not 0.0 <= frac <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {frac}")
    if n_epochs < 2:
        raise ConfigError(f"n_epochs must be >= 2, got {n_epochs}")
    if looks < 2:
        raise ConfigError(f"looks must be >= 2, got {looks}")
    if scene is None:
        scene = make_scene(scene_seed, lon_c=scene_lon, lat_c=scene_lat)
    lon0 = scene.projection.lon_ref if lon0 is None else float(lon0)
    lat0 = scene.projection.lat_ref if lat0 is None else float(lat0)
    heading = (HEADING_ASC_DEG if direction == "A" else HEADING_DSC_DEG) if heading_deg is None else heading_deg
    grid = frame_grid(lon0, lat0, shape)
    proj = scene.projection
    x_km, y_km = proj.x_km(grid.lon), proj.y_km(grid.lat)
    ss = np.random.SeedSequence([int(seed), zlib.crc32(frame_id.encode())])
    rng_net, rng_tex, rng_noise, rng_err, rng_mli, rng_miss = (np.random.default_rng(s) for s in ss.spawn(6))

    surf = surface(scene, grid.lon, grid.lat)
    # geometry is relative to the frame centre (each frame has its own swath position)
    geom = los_geometry(x_km - proj.x_km(lon0), y_km - proj.y_km(lat0), heading_deg=heading,
                        center_incidence_deg=center_incidence_deg)
    valid, poly = _footprint(grid, x_km - proj.x_km(lon0), y_km - proj.y_km(lat0), heading, footprint)
    net = make_network(start_date, n_epochs, rng_net, min_neighbours=min_neighbours,
                       max_neighbours=max_neighbours, missing_epoch_fraction=missing_epoch_fraction,
                       missing_pair_fraction=missing_pair_fraction)
    dates = net.dates
    names = pair_names(dates, net.primary, net.secondary)
    nd, npair, ny, nx = len(dates), len(names), grid.lat.size, grid.lon.size
    log.info("simulating %s: %dx%d px, %d epochs, %d pairs", frame_id, ny, nx, nd, npair)

    vel = velocity_enu(scene, surf, x_km, y_km)
    vlos = los_project(vel.east, vel.north, vel.up, geom.los_e, geom.los_n, geom.los_u).astype(np.float32)
    seas = seasonal_up(scene, surf, dates) * geom.los_u[None]  # vertical cycle seen in LOS
    t = years_since(dates, dates[0])
    disp = (vlos[None] * t[:, None, None].astype(np.float32) + seas - seas[0:1]).astype(np.float32)

    atm = np.empty((nd, ny, nx), np.float32)
    snow = np.empty((nd, ny, nx), bool)
    mli = np.empty((nd, ny, nx), np.float32)
    aparams = []
    patches = snow_patchiness(scene, x_km, y_km)
    for k, d in enumerate(dates):
        atm[k], ap = acquisition_atmosphere(scene, track, direction, d, x_km, y_km, surf.hgt, geom.incidence_deg,
                                            turbulence_scale=turbulence_scale, stratified_scale=stratified_scale)
        aparams.append(ap)
        snow[k] = snow_cover(scene, d, surf.hgt, x_km, y_km, patches)
        mli[k] = intensity(surf.landcover, surf.dhdx, surf.dhdy, geom.los_e, geom.los_n, geom.los_u, snow[k], d,
                           looks, rng_mli)

    total = disp.astype(np.float64) + atm  # LOS mm seen by each acquisition (relative)
    if dem_error_std_m > 0:
        # scene-wide (geographic) DEM error; range change B_perp dz / (R sin th) = LOS displacement -that
        dz = dem_error_field(scene, x_km, y_km) * dem_error_std_m
        topo_per_m = -(dz / (geom.slant_range_km.astype(np.float64) * 1e3
                             * np.sin(np.deg2rad(geom.incidence_deg.astype(np.float64))))) * 1e3  # mm per m bperp
        total = total + net.bperp.astype(np.float64)[:, None, None] * topo_per_m[None]
    else:
        dz = np.zeros((ny, nx), np.float32)
    coh = np.empty((npair, ny, nx), np.float32)
    coh_est = np.empty_like(coh)
    noise_ph = np.zeros_like(coh)
    unw_true = np.empty_like(coh)
    cycles = np.zeros((npair, ny, nx), np.int8)
    err_valid = valid & (surf.landmask == 1) if mask_water_in_unw else valid
    # coherence texture: a persistent field (the same ground decorrelates alike in every pair) plus a
    # per-pair rotation of two more fields (cos a F1 + sin a F2 is again a unit field): 3 evaluations
    tex = [evaluate(power_law_waves(rng_tex, beta=3.0, wavelength_min_km=0.3, wavelength_max_km=20.0,
                                    per_octave=6), x_km, y_km) for _ in range(3)]
    if noise_model == "stack":
        sn = stack_noise(surf.landcover, snow, dates, net.primary, net.secondary, int(round(looks)), rng_noise,
                         texture=np.exp(0.1 * tex[0]))
        coh = sn.coherence
        coh_est = sn.coherence_est if noise else coh.copy()
        noise_ph = sn.phase if noise else np.zeros_like(coh)
    elif noise_model == "pairwise":
        coh = np.empty((npair, ny, nx), np.float32)
        coh_est = np.empty_like(coh)
        noise_ph = np.zeros_like(coh)
        for p, (i, j) in enumerate(zip(net.primary, net.secondary, strict=True)):
            a = rng_tex.uniform(0.0, 2 * np.pi)
            texture = np.exp(0.1 * tex[0] + 0.12 * (np.cos(a) * tex[1] + np.sin(a) * tex[2]))
            coh[p] = pair_coherence(surf.landcover, dates[i], dates[j], snow[i], snow[j],
                                    float(net.bperp[j] - net.bperp[i]), texture)
            if noise:
                nd_ = draw_phase_noise(coh[p], looks, rng_noise)
                noise_ph[p], coh_est[p] = nd_.phase, nd_.coherence
            else:
                coh_est[p] = coh[p]
    else:
        raise ConfigError(f"noise_model must be 'stack' or 'pairwise', got {noise_model!r}")
    unw_true = np.empty((npair, ny, nx), np.float32)
    cycles = np.zeros((npair, ny, nx), np.int8)
    err_valid = valid & (surf.landmask == 1) if mask_water_in_unw else valid
    for p, (i, j) in enumerate(zip(net.primary, net.secondary, strict=True)):
        unw_true[p] = mm_to_phase_rad(total[j] - total[i])
        if noise and phase_filter_sigma_px > 0:
            z = np.exp(1j * (unw_true[p].astype(np.float64) + noise_ph[p]))
            zf = ndimage.gaussian_filter(z.real, phase_filter_sigma_px) + 1j * ndimage.gaussian_filter(
                z.imag, phase_filter_sigma_px)
            noise_ph[p] = wrap_phase(np.angle(zf) - unw_true[p])
        cycles[p] = unwrap_error_cycles(coh[p], rng_err, pair_fraction=unw_error_pair_fraction,
                                        coh_threshold=unw_error_coh_threshold, valid=err_valid)
    signal = unw_true.astype(np.float64) + noise_ph
    phase = wrap_phase(signal).astype(np.float32)
    unw = (signal + 2 * np.pi * cycles).astype(np.float32)
    unw[:, ~valid] = np.nan
    if mask_water_in_unw:
        unw[:, surf.landmask == 0] = np.nan
    phase[:, ~valid] = np.nan
    coh_est[:, ~valid] = np.nan

    params: dict[str, Any] = {
        "frame_id": frame_id, "track": track, "pass_direction": direction, "shape": [ny, nx],
        "n_epochs": nd, "n_pairs": npair, "seed": int(seed), "scene_seed": int(scene.seed),
        "lon0": lon0, "lat0": lat0, "start_date": str(np.datetime64(start_date, "D")),
        "heading_deg": float(heading), "center_incidence_deg": float(center_incidence_deg),
        "looks": float(looks), "min_neighbours": min_neighbours, "max_neighbours": max_neighbours,
        "missing_epoch_fraction": missing_epoch_fraction, "missing_pair_fraction": missing_pair_fraction,
        "unw_error_pair_fraction": unw_error_pair_fraction, "unw_error_coh_threshold": unw_error_coh_threshold,
        "turbulence_scale": turbulence_scale, "stratified_scale": stratified_scale, "noise": bool(noise),
        "noise_model": noise_model, "phase_filter_sigma_px": float(phase_filter_sigma_px),
        "dem_error_std_m": float(dem_error_std_m),
        "mask_water_in_unw": bool(mask_water_in_unw), "footprint": footprint, "wavelength_m": WAVELENGTH_M,
        "pixel_deg": PIXEL_DEG, "los_sign_convention": LOS_SIGN_CONVENTION,
        "missing_dates": [str(d) for d in net.missing_dates],
        "missing_pairs": pair_names(dates, np.array([a for a, _ in net.missing_pairs], int),
                                    np.array([b for _, b in net.missing_pairs], int)),
        "pairs_without_unw": [n for n in names if rng_miss.random() < missing_unw_fraction],
        "missing_unw_fraction": missing_unw_fraction,
        "master": str(dates[net.master]), "footprint_polygon": [list(map(float, c)) for c in poly],
        "scene": scene.params,
    }
    return SimulatedFrame(
        frame_id=frame_id, track=track, direction=direction, grid=grid, network=net, pairs=names,
        geometry=geom, hgt=surf.hgt, landmask=surf.landmask, landcover=surf.landcover,
        permafrost=surf.permafrost, valid=valid, velocity_east=vel.east, velocity_north=vel.north,
        velocity_up=vel.up, velocity=vlos, displacement=disp, seasonal=seas.astype(np.float32), atmosphere=atm,
        snow=snow, coherence=coh, coherence_est=coh_est, noise=noise_ph, unw_true=unw_true, unw_cycles=cycles,
        unw=unw, phase=phase, mli=mli, scene=scene, atmosphere_params=aparams, params=params,
        dem_error=np.asarray(dz, np.float32),
    )
