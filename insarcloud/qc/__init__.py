"""Interferogram quality control.

Part 1 (this package's numpy kernels and Dask layer; no torch import here): closed triplets and loop
closure of unwrapped and wrapped phase (LiCSBAS step 12), coverage and mean coherence (step 11), windowed
circular phase std and mean coherence, multi-stage rule labels, the labelled tile dataset, the manual
review page, and the ``qc`` group writer. Part 2 (``model``, ``train``, ``serve``) is imported explicitly.
"""

from insarcloud._lazy import attach

# Public names by submodule, imported on first use (insarcloud/_lazy.py: keeps the CLI's start light)
__getattr__, __dir__, __all__ = attach(__name__, {
    "closure": [
        "IfgLoopVerdict", "LoopStats", "PixelLoopCounts", "ifg_loop_verdicts", "loop_stats", "pixel_loop_counts",
        "raw_closure", "wrapped_closure",
    ],
    "config": ["QCParams", "RuleParams"],
    "dataset": ["apply_verdicts", "build_dataset", "load_verdicts", "open_dataset", "save_verdict"],
    "labels": [
        "BAD", "GOOD", "NODATA", "UNCERTAIN", "LabelScore", "PixelLabels", "RuleThresholds", "ifg_labels",
        "pixel_labels", "score_labels", "tile_label",
    ],
    "network": ["Triplets", "find_triplets", "require_triplets"],
    "products": ["FrameQC", "frame_qc"],
    "stats": ["IfgStats", "WindowStats", "step11", "window_stats"],
})
