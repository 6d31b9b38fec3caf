"""Whole-frame consistency: products vs truth, signs, errors, and two overlapping frames of one scene."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud.io import mm_to_phase, phase_to_mm
from insarcloud.simulate import SimulatedFrame, make_scene, simulate_frame, wrap_phase
from insarcloud.simulate.deformation import PEAK_HEAVE_DOY

SHAPE = (72, 96)


@pytest.fixture(scope="module")
def asc() -> SimulatedFrame:
    return simulate_frame("012A_05850_131313", shape=SHAPE, n_epochs=16, seed=1, scene_seed=7,
                          unw_error_pair_fraction=0.5, footprint="swath")


@pytest.fixture(scope="module")
def dsc() -> SimulatedFrame:
    # shifted 30 px east and 20 px south of the ascending frame, other dates, other seed
    return simulate_frame("121D_05850_131313", shape=SHAPE, n_epochs=12, seed=2, scene_seed=7,
                          lon0=90.030, lat0=31.480, start_date="2019-01-11")


def _circ_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (a.astype(np.float64) - b))))


def test_shapes_dtypes_and_dates(asc: SimulatedFrame) -> None:
    npair, nd = len(asc.pairs), len(asc.dates)
    assert asc.unw.shape == asc.phase.shape == asc.coherence.shape == asc.unw_true.shape == (npair, *SHAPE)
    assert asc.displacement.shape == asc.atmosphere.shape == (nd, *SHAPE)
    assert asc.unw.dtype == np.float32 and asc.unw_cycles.dtype == np.int8
    assert np.all(np.diff(asc.lat) < 0) and np.all(np.diff(asc.lon) > 0)
    assert all(p[:8] < p[9:] for p in asc.pairs)
    assert np.all(asc.displacement[0] == 0)


def test_wrapped_phase_is_wrap_of_truth_plus_noise(asc: SimulatedFrame) -> None:
    v = asc.valid
    ref = wrap_phase(asc.unw_true.astype(np.float64) + asc.noise)
    assert np.max(_circ_diff(asc.phase[:, v], ref[:, v])) < 1e-5
    pi32 = np.float32(np.pi)  # float32 rounding of a value next to +-pi may land on +-pi32
    assert np.nanmax(asc.phase) <= pi32 and np.nanmin(asc.phase) >= -pi32
    # unw is congruent with the wrapped phase everywhere it has data (errors are whole cycles)
    u = np.isfinite(asc.unw)
    assert np.max(_circ_diff(asc.unw[u], asc.phase[u])) < 1e-4
    assert np.all(np.isnan(asc.phase[:, ~v])) and np.all(np.isnan(asc.unw[:, ~v]))


def test_unwrap_errors_are_whole_cycles_inside_mask(asc: SimulatedFrame) -> None:
    u = np.isfinite(asc.unw)
    diff = asc.unw.astype(np.float64) - (asc.unw_true.astype(np.float64) + asc.noise)
    k = diff / (2 * np.pi)
    np.testing.assert_allclose(k[u], np.round(k[u]), atol=2e-4)
    np.testing.assert_array_equal(np.round(k[u]).astype(int), asc.unw_cycles[u])
    err = asc.unw_error
    assert err.any(axis=(1, 2)).sum() >= 2
    assert np.all(np.abs(k[u & ~err]) < 2e-4)  # exactly no offset outside the mask
    assert set(np.unique(asc.unw_cycles)) <= {-2, -1, 0, 1, 2}
    # in low-coherence ground only, inside the footprint, on land
    assert np.mean(asc.coherence[err]) < 0.3
    assert np.all(asc.valid[None].repeat(len(asc.pairs), 0)[err])
    assert np.all((asc.landmask == 1)[None].repeat(len(asc.pairs), 0)[err])


def test_unw_true_sign_and_composition(asc: SimulatedFrame) -> None:
    """unw = -4 pi / lambda * (d2 - d1): toward-satellite motion gives negative phase (CONTRACT)."""
    i, j = asc.network.primary, asc.network.secondary
    total = asc.displacement.astype(np.float64) + asc.atmosphere
    d = total[j] - total[i]
    np.testing.assert_allclose(asc.unw_true, mm_to_phase(d), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(phase_to_mm(asc.unw_true), d, rtol=1e-4, atol=1e-4)
    assert mm_to_phase(np.array(1.0)) < 0


def test_los_velocity_is_projection_of_enu(asc: SimulatedFrame) -> None:
    v = asc.velocity_east * asc.los_e + asc.velocity_north * asc.los_n + asc.velocity_up * asc.los_u
    np.testing.assert_allclose(asc.velocity, v, atol=1e-5)
    # displacement at the last date = velocity * t + seasonal change
    t = (asc.dates[-1] - asc.dates[0]).astype(int) / 365.25
    np.testing.assert_allclose(asc.displacement[-1], asc.velocity * t + asc.seasonal[-1] - asc.seasonal[0],
                               atol=1e-3)
    # the fault and the bowl are near: the east velocity varies by mm/yr across this small frame
    assert np.ptp(asc.velocity_east) > 1.0 and np.ptp(asc.velocity_up) > 1.0


def test_seasonal_cycle_and_permafrost() -> None:
    """Heave peaks at the end of March (+ lag), settlement six months later; amplitude tied to ground ice."""
    sim = simulate_frame(shape=(24, 24), n_epochs=31, seed=0, scene_seed=7, missing_epoch_fraction=0.0)
    s = sim.seasonal
    amp = (s.max(0) - s.min(0)) / 2
    assert np.all(amp[~sim.permafrost] == 0)
    assert sim.permafrost.mean() > 0.1
    iy, ix = np.unravel_index(np.argmax(amp), amp.shape)
    doy = np.array([(d - d.astype("datetime64[Y]").astype("datetime64[D]")).astype(int) for d in sim.dates])
    peak = doy[np.argmax(s[:, iy, ix])]
    assert PEAK_HEAVE_DOY - 10 <= peak <= PEAK_HEAVE_DOY + 45
    assert 2.0 < amp.max() < 15.0


def test_coherence_drops_with_snow(asc: SimulatedFrame) -> None:
    i, j = asc.network.primary, asc.network.secondary
    snow_any = asc.snow[i] | asc.snow[j]
    land = (asc.landcover == 1) | (asc.landcover == 2)
    c = asc.coherence
    assert c.min() >= 0 and c.max() <= 0.97
    with_snow = c[snow_any & land[None]]
    without = c[~snow_any & land[None]]
    assert with_snow.size > 100 and without.size > 100
    assert with_snow.mean() < 0.5 * without.mean()


def test_overlapping_frames_share_ground_truth(asc: SimulatedFrame, dsc: SimulatedFrame) -> None:
    cols = np.intersect1d(asc.lon, dsc.lon)
    rows = np.intersect1d(asc.lat, dsc.lat)
    assert cols.size > 20 and rows.size > 20
    ia = np.ix_(np.isin(asc.lat, rows), np.isin(asc.lon, cols))
    ib = np.ix_(np.isin(dsc.lat, rows), np.isin(dsc.lon, cols))
    for name in ("velocity_east", "velocity_north", "velocity_up", "hgt"):
        np.testing.assert_allclose(getattr(asc, name)[ia], getattr(dsc, name)[ib], atol=1e-3, err_msg=name)
    np.testing.assert_array_equal(asc.landcover[ia], dsc.landcover[ib])
    # each pass projects the same ground into its own LOS
    assert np.all(asc.los_e < 0) and np.all(dsc.los_e > 0)
    assert not np.allclose(asc.velocity[ia], dsc.velocity[ib], atol=0.5)
    # and has its own atmosphere
    assert not np.allclose(asc.atmosphere[1][ia], dsc.atmosphere[1][ib], atol=1.0)


def test_same_track_same_date_shares_atmosphere() -> None:
    a = simulate_frame("012A_05850_131313", shape=(40, 50), n_epochs=3, seed=1, scene_seed=3)
    b = simulate_frame("012A_05851_131313", shape=(40, 50), n_epochs=3, seed=9, scene_seed=3, lat0=31.52)
    rows = np.intersect1d(a.lat, b.lat)
    ia, ib = np.isin(a.lat, rows), np.isin(b.lat, rows)
    # the same zenith delay; the slant factor 1/cos(incidence) differs by < 0.1 % because each frame's
    # incidence is set at its own centre
    np.testing.assert_allclose(a.atmosphere[:, ia], b.atmosphere[:, ib], rtol=2e-3, atol=1e-3)
    assert not np.allclose(a.noise, b.noise)


def test_deterministic_and_scene_object() -> None:
    kw = dict(shape=(32, 40), n_epochs=6, seed=4, scene_seed=2)
    a, b = simulate_frame(**kw), simulate_frame(**kw)
    np.testing.assert_array_equal(a.unw, b.unw)
    np.testing.assert_array_equal(a.coherence_est, b.coherence_est)
    c = simulate_frame(shape=(32, 40), n_epochs=6, seed=4, scene=make_scene(2))
    np.testing.assert_array_equal(a.unw, c.unw)


def test_bad_frame_id_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="NNN"):
        simulate_frame("12A_x", shape=(16, 16), n_epochs=3)


def test_area_plan_and_scene_truth() -> None:
    from insarcloud.simulate import area_grid, plan_area_frames, scene_truth, simulate_area

    specs = plan_area_frames(n_ascending=2, n_descending=1, shape=(40, 60), lon_c=90.0, lat_c=31.5)
    assert [s.frame_id[3] for s in specs] == ["A", "A", "D"]
    assert len({s.frame_id for s in specs}) == 3 and len({s.seed for s in specs}) == 3
    frames = simulate_area(specs, scene_seed=4, n_epochs=3)
    lon_min = min(f.lon[0] for f in frames)
    lon_max = max(f.lon[-1] for f in frames)
    lat_min = min(f.lat[-1] for f in frames)
    lat_max = max(f.lat[0] for f in frames)
    lon, lat = area_grid((lon_min, lat_min, lon_max, lat_max))
    assert lon[0] == frames[0].lon[0] and lat[0] == lat_max
    truth = scene_truth(frames[0].scene, lon, lat)
    for f in frames:
        ix, iy = np.searchsorted(lon, f.lon), np.searchsorted(-lat, -f.lat)
        np.testing.assert_array_equal(lon[ix], f.lon)
        np.testing.assert_allclose(truth.velocity_up[np.ix_(iy, ix)], f.velocity_up, atol=1e-3)
        np.testing.assert_allclose(truth.velocity_east[np.ix_(iy, ix)], f.velocity_east, atol=1e-3)
    # the descending frame overlaps both ascending frames
    d = frames[2]
    for a in frames[:2]:
        assert np.intersect1d(a.lon, d.lon).size > 5 and np.intersect1d(a.lat, d.lat).size > 5


def test_dem_error_phase_is_proportional_to_bperp() -> None:
    kw = dict(shape=(24, 30), n_epochs=6, seed=2, scene_seed=5, turbulence_scale=0.0, stratified_scale=0.0)
    a = simulate_frame(**kw)
    b = simulate_frame(**kw, dem_error_std_m=5.0)
    assert np.all(a.dem_error == 0) and 2.0 < b.dem_error.std() < 8.0
    extra = phase_to_mm(b.unw_true.astype(np.float64) - a.unw_true)  # mm, per pair
    net = b.network
    dbp = (net.bperp[net.secondary] - net.bperp[net.primary]).astype(np.float64)
    g = b.geometry
    expected = -dbp[:, None, None] * b.dem_error[None] / (g.slant_range_km * 1e3 * np.sin(np.deg2rad(g.incidence_deg)))
    np.testing.assert_allclose(extra, expected * 1e3, atol=2e-3)


def test_unw_closure_small_except_errors(asc: SimulatedFrame) -> None:
    """Stack noise: closures of error-free, coherent triplets are near 0; an error shows as 2 pi k."""
    idx = {(int(i), int(j)): p for p, (i, j) in enumerate(zip(asc.network.primary, asc.network.secondary,
                                                                strict=True))}
    tri = [(idx[(i, j)], idx[(j, k)], idx[(i, k)]) for (i, j) in idx for (j2, k) in idx if j2 == j and (i, k) in idx]
    assert len(tri) > 10
    clean, jumps = [], []
    for a, b, c in tri:
        clo = asc.unw[a].astype(np.float64) + asc.unw[b] - asc.unw[c]
        kk = asc.unw_cycles[a].astype(int) + asc.unw_cycles[b] - asc.unw_cycles[c]
        good = np.isfinite(clo) & (np.minimum(np.minimum(asc.coherence[a], asc.coherence[b]), asc.coherence[c]) > 0.6)
        clean.append(np.abs(clo[good & (kk == 0)]))
        err = np.isfinite(clo) & (kk != 0)
        jumps.append(np.round(clo[err] / (2 * np.pi)).astype(int) == kk[err])
    clean = np.concatenate(clean)
    assert clean.size > 1000 and np.median(clean) < 0.3
    hit = np.concatenate(jumps)
    # errors sit in low coherence (closure noise ~1 rad), yet the closure's whole cycles recover k
    assert hit.size > 100 and hit.mean() > 0.8


def test_pairwise_noise_model_still_available() -> None:
    sim = simulate_frame(shape=(24, 30), n_epochs=6, seed=1, noise_model="pairwise")
    v = sim.valid
    ref = wrap_phase(sim.unw_true.astype(np.float64) + sim.noise)
    assert np.max(_circ_diff(sim.phase[:, v], ref[:, v])) < 1e-5
    with pytest.raises(ValueError, match="noise_model"):
        simulate_frame(shape=(16, 16), n_epochs=3, noise_model="bogus")  # type: ignore[arg-type]


def test_phase_filter_correlates_and_reduces_noise() -> None:
    kw = dict(shape=(48, 56), n_epochs=5, seed=3, scene_seed=2)
    raw = simulate_frame(**kw)
    filt = simulate_frame(**kw, phase_filter_sigma_px=1.0)
    mid = (raw.coherence > 0.3) & (raw.coherence < 0.6)

    both = mid[:, :, :-1] & mid[:, :, 1:]

    def lag1(n: np.ndarray) -> float:  # correlation of horizontally adjacent noise values
        return float(np.corrcoef(n[:, :, :-1][both], n[:, :, 1:][both])[0, 1])

    assert np.std(filt.noise[mid]) < 0.7 * np.std(raw.noise[mid])
    assert abs(lag1(raw.noise)) < 0.1 and lag1(filt.noise) > 0.3
    # identities still hold
    ref = wrap_phase(filt.unw_true.astype(np.float64) + filt.noise)
    assert np.max(_circ_diff(filt.phase, ref)) < 1e-5
