"""The one shape every stage's entry point has (issue 18, docs/STAGES.md "Adding a stage").

Each stage has a module ``insarcloud/<package>/stage.py`` (``insarcloud/qc/quality_stage.py`` for quality, which
lives in the qc package; ``insarcloud/io/stage_ingest.py`` for ingest) holding

- ``NAME``: the stage name (the area config's ``stages`` entry and ``params`` key, the pointer key);
- ``Params``: its validated, immutable parameter model (a :class:`ParamsModel`): the single definition the area
  config's ``params.<stage>`` section, the stage's CLI options (``insarcloud.cliargs.add_model_options``) and the
  config template are generated from;
- ``run_stage(cube_url, params, ctx) -> StageResult``: runs the stage's existing functions on one frame cube.

A stage module is light to import (pydantic and :mod:`insarcloud.core` only: no numpy, dask, torch or ray at
import time) because the area config, and so the CLI's parser, imports every ``Params``; the work is imported
inside ``run_stage``. Like the rest of :mod:`insarcloud.core`, this module imports nothing of the project but
:mod:`insarcloud.errors`-level modules, so every stage, io and the pipelines may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

__all__ = ["ParamsModel", "StageContext", "StagePlan", "StageResult"]


class ParamsModel(BaseModel):
    """Base of every stage's ``Params`` and of the area config's models: unknown keys are errors, instances are
    immutable (validated once, never mutated) and defaults are validated too."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StagePlan(NamedTuple):
    """What a stage does next (:func:`insarcloud.io.stages.plan_stage` makes it).

    stage : the stage name (pointer key).
    group : the group to write, or the complete group found (``done``).
    done : a complete group with this fingerprint exists: nothing to compute.
    fingerprint : sha256 hex of ``identity``; the group marker's ``params_hash``.
    identity : what the fingerprint hashes; pass it as ``params=`` to ``write_stage_output``.
    reason : one line: why the stage recomputes (or that it is current).
    """

    stage: str
    group: str
    done: bool
    fingerprint: str
    identity: dict[str, Any]
    reason: str


class StageResult(NamedTuple):
    """What ``run_stage`` did to one frame cube.

    stage : the stage name.
    group : the group written or kept ("" for ingest, which writes the cube's root).
    plan : the stage's plan: ``plan.done`` (kept) or recomputed, ``plan.reason`` (one line), ``plan.fingerprint``.
    summary : small JSON-compatible counts and facts of the run (e.g. quality's ``inferred_pairs`` and
        ``copied_pairs``, ingest's ``appended``); never arrays.
    """

    stage: str
    group: str
    plan: StagePlan
    summary: dict[str, Any]

    @property
    def done(self) -> bool:
        """Nothing was computed: the stage's current output already had this fingerprint."""
        return self.plan.done

    def as_dict(self) -> dict[str, Any]:
        """JSON-compatible record (the area job's run summary): group, done, reason, fingerprint, summary."""
        return {"group": self.group, "done": self.plan.done, "reason": self.plan.reason,
                "fingerprint": self.plan.fingerprint, **self.summary}


@dataclass(frozen=True)
class StageContext:
    """Everything a stage needs besides its cube and its parameters.

    storage_options : fsspec options of the cube's store (and of ``source_url`` for ingest).
    client : the Dask ``distributed.Client`` the stage's graphs run on (None: the active/default one).
    ray : Ray is initialised (quality and forecast serve models with Ray actors).
    frame : the LiCSAR frame id of the cube (ingest reads it from ``source_url``; forecast fills ``{frame}``).
    source_url : root of the LiCSAR products (ingest, invert's GACOS).
    output_url : the job's results root (forecast fills ``{output_url}`` in its factors URL).
    ts_group : the time-series group name consumers of invert ask for (``ts_<weights>``; None: invert's current).
    upstream : results of the stages that already ran on this cube in this job (e.g. unwrap's group for invert).
    """

    storage_options: dict[str, Any] | None = None
    client: Any = None
    ray: bool = False
    frame: str | None = None
    source_url: str | None = None
    output_url: str | None = None
    ts_group: str | None = None
    upstream: Mapping[str, StageResult] = field(default_factory=dict)
