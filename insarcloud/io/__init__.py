"""Object-store access, LiCSAR product layout, STAC items, the frame cube and its ingest.

The only package that talks to storage. The public names below are the contract other stages use
(see notes/CONTRACT.md).
"""

from insarcloud._lazy import attach

# Public names by submodule, imported on first use (insarcloud/_lazy.py: keeps the CLI's start light)
__getattr__, __dir__, __all__ = attach(__name__, {
    "cube": [
        "CHUNK", "LOS_SIGN_CONVENTION", "WAVELENGTH_M", "OutputPlan", "create_stage_template", "list_groups",
        "make_frame_dataset", "mark_stage_complete", "mm_to_phase", "open_cube", "pair_name", "params_hash",
        "parse_pair", "phase_to_mm", "read_marker", "resolve_output", "write_new_cube", "write_stage_output",
        "write_stage_region",
    ],
    "stages": ["StagePlan", "current_group", "finish_stage", "input_group", "open_stage", "plan_stage",
               "read_pointer", "set_current"],
    "storage": ["get_fs", "join", "storage_options_for", "with_retries"],
})
