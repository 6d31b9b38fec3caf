"""Default thresholds of the qc rule labels, in a module without numpy: the area config's ``QcParams`` (and so
the CLI's parser) takes its defaults from here. How they combine: :mod:`insarcloud.qc.labels`."""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["RuleThresholds"]


class RuleThresholds(NamedTuple):
    """Thresholds of the rule labels (see :mod:`insarcloud.qc.labels` for how they combine)."""

    loop_pixel_thre: float = math.pi
    coh_bad: float = 0.2
    coh_good: float = 0.35
    std_bad: float = 1.3
    std_good: float = 0.8
    wrapped_good: float = 1.0
    ifg_bad_frac: float = 0.5
    ifg_good_frac: float = 0.6
    ifg_max_bad_frac: float = 0.1
    tile_bad_frac: float = 0.5
    tile_good_frac: float = 0.8
    tile_max_bad_frac: float = 0.05
