"""The qc stage's entry point (the stage contract: :mod:`insarcloud.core.contract`).

``run_stage(cube_url, QcParams, ctx)`` runs :func:`insarcloud.qc.dask_ops.run_qc` (loop closure, statistics,
rule labels; incremental after new pairs) and reports its plan and what the update computed.
"""

from __future__ import annotations

import json
from typing import Any

from insarcloud.core.contract import StageContext, StageResult
from insarcloud.qc.config import QcParams

__all__ = ["NAME", "Params", "run_stage"]

NAME = "qc"
Params = QcParams

# the counts of the group's ``qc_update`` attribute (insarcloud.qc.incremental.UpdateStats) the summary carries
_COUNTS = {"n_pairs": "pairs", "n_pairs_new": "pairs_new", "n_pairs_affected": "pairs_affected",
           "n_loops": "loops", "n_loops_new": "loops_new", "n_loops_revisited": "loops_revisited"}


def _update_summary(url: str, group: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    from insarcloud.io.cube import open_zarr_group

    try:
        upd = json.loads(open_zarr_group(url, group, storage_options).attrs.get("qc_update") or "{}")
    except (ValueError, TypeError):
        return {}
    out: dict[str, Any] = {"mode": upd["mode"]} if "mode" in upd else {}
    out.update({short: upd[long] for long, short in _COUNTS.items() if long in upd})
    return out


def run_stage(cube_url: str, params: QcParams, ctx: StageContext) -> StageResult:
    """qc of the cube at ``cube_url``; summary: ``mode`` (full or update) and pair/loop counts of a recompute."""
    from insarcloud.io.stages import run_planned, stage_result
    from insarcloud.qc.dask_ops import run_qc

    group, plan = run_planned(cube_url, NAME, lambda: run_qc(cube_url, params, ctx.storage_options))
    summary = {} if plan.done else _update_summary(cube_url, group, ctx.storage_options)
    return stage_result(NAME, plan, summary, group)
