"""Object-store access, LiCSAR product layout, STAC items, the frame cube and its ingest.

The only package that talks to storage. The public names below are the contract other stages use
(see notes/CONTRACT.md).
"""

from insarcloud.io.cube import (
    CHUNK,
    LOS_SIGN_CONVENTION,
    WAVELENGTH_M,
    OutputPlan,
    create_stage_template,
    list_groups,
    make_frame_dataset,
    mark_stage_complete,
    mm_to_phase,
    open_cube,
    pair_name,
    params_hash,
    parse_pair,
    phase_to_mm,
    read_marker,
    resolve_output,
    write_new_cube,
    write_stage_output,
    write_stage_region,
)
from insarcloud.io.storage import get_fs, join, storage_options_for, with_retries

__all__ = [
    "CHUNK",
    "LOS_SIGN_CONVENTION",
    "WAVELENGTH_M",
    "OutputPlan",
    "create_stage_template",
    "get_fs",
    "join",
    "list_groups",
    "make_frame_dataset",
    "mark_stage_complete",
    "mm_to_phase",
    "open_cube",
    "pair_name",
    "params_hash",
    "parse_pair",
    "phase_to_mm",
    "read_marker",
    "resolve_output",
    "storage_options_for",
    "with_retries",
    "write_new_cube",
    "write_stage_output",
    "write_stage_region",
]
