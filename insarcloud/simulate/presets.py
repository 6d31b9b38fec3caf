"""Named scenes: a demo scene whose signal a real time-series analysis recovers (pure numpy).

The simulator's defaults (``simulate_frame``: 30 epochs, 3-5 neighbours; ``make_scene``: the drawn bowl) stay
what the kernels' tests rely on. This module names a preset on top of them, built only from the simulator's
existing components (``make_scene`` + ``simulate_frame`` options):

``tibet_basin`` (``make demo``): scene seed 7 (central-southern Tibetan Plateau, 90.04 E 31.56 N) with its
subsidence bowl set to a groundwater / thermokarst-drainage basin of ``-35 mm/yr`` at its centre from a
``2.5 km`` deep source (half-rate radius ~1.9 km: ~20 pixels, plainly visible in a 64-96 px frame); the
scene's right-lateral fault creep, permafrost thaw trend and seasonal frost heave, its atmosphere
(turbulence + stratified, monsoon-weighted), snow and decorrelation are the simulator's defaults. Stacks of
``122`` epochs of 12-day acquisitions (with the default 8 % missing epochs: ~4.3 years, as a real LiCSAR
frame of 2019-2023 has) and a LiCSAR-like network (each epoch to its 3-4 next neighbours).

Why these figures (docs/demo.md): a velocity of a few mm/yr under 3-19 mm of atmosphere per epoch needs
several years of data (the error of a fitted rate falls as ~T^-1.5); a 1.2-year stack cannot beat a map of
zeros, a 4-year stack with a 35 mm/yr basin beats it by ~3x.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .frame import SimulatedFrame, simulate_frame
from .scene import Scene, make_scene

__all__ = ["PRESETS", "ScenePreset", "preset_scene", "simulate_preset_frame"]


@dataclasses.dataclass(frozen=True)
class ScenePreset:
    """A named scene and the frame options that go with it.

    Fields: name; scene_seed; lon_c, lat_c (scene centre, deg); bowl_rate_mm_yr (peak vertical rate of the
    subsidence basin, < 0 subsides; None keeps the drawn one); bowl_depth_km (Mogi source depth, None keeps
    the drawn one); n_epochs (acquired epochs per frame); start_date; frame_options (further keyword
    arguments of ``simulate_frame``).
    """

    name: str
    scene_seed: int
    lon_c: float
    lat_c: float
    bowl_rate_mm_yr: float | None
    bowl_depth_km: float | None
    n_epochs: int
    start_date: str
    frame_options: dict[str, Any]


PRESETS: dict[str, ScenePreset] = {
    "tibet_basin": ScenePreset(
        name="tibet_basin", scene_seed=7, lon_c=90.0, lat_c=31.5, bowl_rate_mm_yr=-35.0, bowl_depth_km=2.5,
        n_epochs=122, start_date="2019-01-05",
        # LiCSAR's automatic network pairs each epoch with its next 3-4 acquisitions
        frame_options={"min_neighbours": 3, "max_neighbours": 4}),
}


def _preset(name: str) -> ScenePreset:
    from insarcloud.errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"unknown scene preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def preset_scene(name: str = "tibet_basin") -> Scene:
    """The ``Scene`` of preset ``name``: ``make_scene(scene_seed)`` with the preset's basin.

    The basin is replaced after the draw (not through ``make_scene(bowl_rate_mm_yr=...)``, which skips a
    random draw and so moves the lake): everything else is exactly the seed's scene.
    """
    p = _preset(name)
    scene = make_scene(p.scene_seed, lon_c=p.lon_c, lat_c=p.lat_c)
    changes = {k: float(v) for k, v in (("max_rate_mm_yr", p.bowl_rate_mm_yr), ("depth_km", p.bowl_depth_km))
               if v is not None}
    bowl = dataclasses.replace(scene.bowl, **changes)
    return dataclasses.replace(scene, bowl=bowl, params={**scene.params, "bowl": bowl.__dict__, "preset": p.name})


def simulate_preset_frame(frame_id: str, name: str = "tibet_basin", *, shape: tuple[int, int] = (96, 96),
                          n_epochs: int | None = None, seed: int = 0, lon0: float | None = None,
                          lat0: float | None = None, scene: Scene | None = None, **options: Any) -> SimulatedFrame:
    """``simulate_frame`` over preset ``name``'s scene with its epochs, start date and network.

    ``n_epochs`` (default: the preset's) and any ``simulate_frame`` keyword in ``options`` override the
    preset; pass ``scene`` (from :func:`preset_scene`) to share one scene object between frames.
    """
    p = _preset(name)
    kw = {**p.frame_options, **options}
    return simulate_frame(frame_id=frame_id, shape=shape, n_epochs=n_epochs or p.n_epochs, seed=seed,
                          lon0=lon0, lat0=lat0, start_date=p.start_date, scene=scene or preset_scene(name), **kw)
