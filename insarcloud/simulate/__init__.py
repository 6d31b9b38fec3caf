"""Realistic LiCSAR frame simulator for the Tibetan Plateau, with ground truth.

``simulate_frame`` builds the products and truth in memory (pure numpy), ``write_licsar_frame``
writes LiCSAR's product tree to any fsspec URL, ``write_truth`` / ``truth_dataset`` the truth Zarr.
"""

from insarcloud._lazy import attach

# Public names by submodule, imported on first use (insarcloud/_lazy.py: keeps the CLI's start light)
__getattr__, __dir__, __all__ = attach(__name__, {
    "area": ["FrameSpec", "SceneTruth", "area_grid", "plan_area_frames", "scene_truth", "simulate_area"],
    "frame": ["DEFAULT_FRAME_ID", "SimulatedFrame", "simulate_frame", "wrap_phase"],
    "scene": ["Scene", "make_scene"],
    "truth": ["truth_dataset", "write_truth"],
    "writer": ["frame_url", "write_licsar_frame"],
})
