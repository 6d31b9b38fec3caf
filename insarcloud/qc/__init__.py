"""Interferogram quality control.

Part 1 (this package's numpy kernels and Dask layer; no torch import here): closed triplets and loop
closure of unwrapped and wrapped phase (LiCSBAS step 12), coverage and mean coherence (step 11), windowed
circular phase std and mean coherence, multi-stage rule labels, the labelled tile dataset, the manual
review page, and the ``qc`` group writer. Part 2 (``model``, ``train``, ``serve``) is imported explicitly.
"""

from insarcloud.qc.closure import (
    IfgLoopVerdict,
    LoopStats,
    PixelLoopCounts,
    ifg_loop_verdicts,
    loop_stats,
    pixel_loop_counts,
    raw_closure,
    wrapped_closure,
)
from insarcloud.qc.config import QCParams, RuleParams
from insarcloud.qc.dataset import apply_verdicts, build_dataset, load_verdicts, open_dataset, save_verdict
from insarcloud.qc.labels import (
    BAD,
    GOOD,
    NODATA,
    UNCERTAIN,
    LabelScore,
    PixelLabels,
    RuleThresholds,
    ifg_labels,
    pixel_labels,
    score_labels,
    tile_label,
)
from insarcloud.qc.network import Triplets, find_triplets, require_triplets
from insarcloud.qc.products import FrameQC, frame_qc
from insarcloud.qc.stats import IfgStats, WindowStats, step11, window_stats

__all__ = [
    "BAD",
    "GOOD",
    "NODATA",
    "UNCERTAIN",
    "FrameQC",
    "IfgLoopVerdict",
    "IfgStats",
    "LabelScore",
    "LoopStats",
    "PixelLabels",
    "PixelLoopCounts",
    "QCParams",
    "RuleParams",
    "RuleThresholds",
    "Triplets",
    "WindowStats",
    "apply_verdicts",
    "build_dataset",
    "find_triplets",
    "frame_qc",
    "ifg_labels",
    "ifg_loop_verdicts",
    "load_verdicts",
    "loop_stats",
    "open_dataset",
    "pixel_labels",
    "pixel_loop_counts",
    "raw_closure",
    "require_triplets",
    "save_verdict",
    "score_labels",
    "step11",
    "tile_label",
    "window_stats",
    "wrapped_closure",
]
