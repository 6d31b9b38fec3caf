"""The ingest stage's parameters and entry point (the stage contract: :mod:`insarcloud.core.contract`).

:class:`IngestParams` is the one definition of the stage's options (the area config's ``params.ingest``,
``insarcloud ingest --chunk``, the config template); :func:`run_stage` runs
:func:`insarcloud.io.ingest.ingest_frame` for ``ctx.frame`` from ``ctx.source_url``.

Ingest writes the cube's root, not a group, and decides per product (new, unfinished or changed at the source:
docs/ingest.md) rather than by one fingerprint, so its plan is made here from what it did: ``done`` when no pair
was appended or replaced, the fingerprint that of the parameters and the cube's pair list after the run.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from insarcloud.cliargs import MAX_CHUNK, MIN_CHUNK
from insarcloud.core.contract import ParamsModel, StageContext, StagePlan, StageResult

__all__ = ["NAME", "IngestParams", "Params", "run_stage"]

NAME = "ingest"


class IngestParams(ParamsModel):
    """LiCSAR GeoTIFFs -> frame cube (``insarcloud.io.ingest.ingest_frame``)."""

    # The bounds are ingest's own (insarcloud.cliargs: why 16 and 16384); `insarcloud ingest --chunk` is this field.
    chunk_yx: int = Field(512, ge=MIN_CHUNK, le=MAX_CHUNK,
                          description=f"Spatial chunk size (pixels) of the cube, {MIN_CHUNK}..{MAX_CHUNK}.")


Params = IngestParams


def ingest_plan(params: IngestParams, pairs: list[str], appended: int, replaced: int, failed: int) -> StagePlan:
    """The plan of an ingest run that left ``pairs`` in the cube, appended ``appended`` and re-ingested
    ``replaced`` pairs, and could not ingest ``failed`` products."""
    from insarcloud.io.stages import fingerprint, stage_identity

    identity = stage_identity(NAME, params.model_dump(), pairs=sorted(pairs))
    done = not appended and not replaced
    what = (f"appended {appended} new pair(s)" if appended else "no new product") + (
        f", re-ingested {replaced} changed at the source" if replaced else "") + (
        f", {failed} product(s) failed" if failed else "")
    return StagePlan(NAME, "", done, fingerprint(identity), identity, what)


def run_stage(cube_url: str, params: IngestParams, ctx: StageContext) -> StageResult:
    """Ingest the new products of ``ctx.frame`` into the cube at ``cube_url``.

    Summary: ``appended`` (new pairs), ``replaced`` (re-ingested: their source changed), ``kept`` (already in the
    cube), ``failed`` (pair or file -> reason), ``missing`` (products absent at the source).

    Raises
    ------
    ConfigError
        Without ``ctx.source_url`` or ``ctx.frame``.
    InsarcloudError
        When no pair at all could be ingested (nothing in the cube to run the next stages on).
    """
    from insarcloud.errors import ConfigError, InsarcloudError
    from insarcloud.io.ingest import ingest_frame

    if not (ctx.source_url and ctx.frame):
        raise ConfigError(f"ingest into {cube_url} needs the LiCSAR source_url and the frame id")
    report = ingest_frame(ctx.source_url, ctx.frame, cube_url, storage_options=ctx.storage_options,
                          chunk=params.chunk_yx, client=ctx.client)
    if not report.completed and not report.skipped:
        raise InsarcloudError(f"{ctx.frame}: no pair could be ingested: {report.failed}")
    replaced = len(report.replaced)
    appended = len(report.completed) - replaced
    summary: dict[str, Any] = {"appended": appended, "replaced": replaced, "kept": len(report.skipped),
                               "failed": dict(report.failed), "missing": len(report.missing)}
    plan = ingest_plan(params, [*report.skipped, *report.completed], appended, replaced, len(report.failed))
    return StageResult(NAME, "", plan, summary)
