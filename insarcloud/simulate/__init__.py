"""Realistic LiCSAR frame simulator for the Tibetan Plateau, with ground truth.

``simulate_frame`` builds the products and truth in memory (pure numpy), ``write_licsar_frame``
writes LiCSAR's product tree to any fsspec URL, ``write_truth`` / ``truth_dataset`` the truth Zarr.
"""

from insarcloud.simulate.area import FrameSpec, SceneTruth, area_grid, plan_area_frames, scene_truth, simulate_area
from insarcloud.simulate.frame import DEFAULT_FRAME_ID, SimulatedFrame, simulate_frame, wrap_phase
from insarcloud.simulate.scene import Scene, make_scene
from insarcloud.simulate.truth import truth_dataset, write_truth
from insarcloud.simulate.writer import frame_url, write_licsar_frame

__all__ = [
    "DEFAULT_FRAME_ID",
    "FrameSpec",
    "SceneTruth",
    "area_grid",
    "plan_area_frames",
    "scene_truth",
    "simulate_area",
    "Scene",
    "SimulatedFrame",
    "frame_url",
    "make_scene",
    "simulate_frame",
    "truth_dataset",
    "wrap_phase",
    "write_licsar_frame",
    "write_truth",
]
