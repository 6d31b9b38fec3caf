"""insarcloud.simulate.presets: the demo's named scene, built from the simulator's components."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud.errors import ConfigError
from insarcloud.simulate import make_scene
from insarcloud.simulate.presets import PRESETS, preset_scene, simulate_preset_frame


def test_tibet_basin_scene_is_scene_7_with_a_deeper_stronger_basin():
    base, scene = make_scene(7), preset_scene("tibet_basin")
    assert scene.bowl.max_rate_mm_yr == -35.0 and scene.bowl.depth_km == 2.5
    assert (scene.bowl.lon, scene.bowl.lat) == (base.bowl.lon, base.bowl.lat)  # same place as scene 7's
    assert scene.fault == base.fault and scene.lake == base.lake  # the rest of the ground is scene 7's
    assert scene.params["bowl"]["depth_km"] == 2.5 and scene.params["preset"] == "tibet_basin"
    # the simulator's default scene is untouched
    assert make_scene(7).bowl.max_rate_mm_yr == base.bowl.max_rate_mm_yr != -35.0
    with pytest.raises(ConfigError, match="unknown scene preset"):
        preset_scene("nowhere")


def test_preset_frame_has_years_of_data_a_licsar_network_and_a_visible_basin():
    p = PRESETS["tibet_basin"]
    sim = simulate_preset_frame("012A_05443_131313", shape=(24, 24), seed=1, lon0=90.04, lat0=31.562,
                                noise=False)
    span = (sim.dates[-1] - sim.dates[0]) / np.timedelta64(1, "D") / 365.25
    assert len(sim.dates) == p.n_epochs and 4.0 < span < 4.8
    per_epoch = np.bincount(sim.network.primary, minlength=len(sim.dates))
    assert per_epoch.max() <= 4 and np.median(per_epoch[:-5]) >= 3
    # above the 2.5 km deep source: ~35 mm/yr down, seen in LOS through cos(incidence)
    up = sim.velocity_up
    assert up.min() == pytest.approx(-35.0 + 4.0 * -1.0, abs=4.0)  # basin + at most the permafrost trend
    assert np.ptp(sim.velocity) > 10.0
