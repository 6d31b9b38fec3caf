"""One contract every stage implements (issue 18, insarcloud/core/contract.py, docs/STAGES.md "Adding a stage"):
``run_stage(cube_url, Params, StageContext) -> StageResult`` registered in the area job, and the area config's
``params.<stage>`` section is the stage's own Params model (one definition of each option)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest
from pydantic import ValidationError

from insarcloud import config
from insarcloud.core.contract import ParamsModel, StageContext, StagePlan, StageResult
from insarcloud.core.options import STAGE_ORDER
from insarcloud.pipelines import area_job


def _module(stage: str):  # type: ignore[no-untyped-def]
    return sys.modules[area_job.STAGES[stage].__module__]


def test_every_stage_but_the_mosaic_is_registered_with_its_own_entry_point():
    assert list(area_job.STAGES) == [s for s in STAGE_ORDER if s != "mosaic"]
    for stage, fn in area_job.STAGES.items():
        mod = _module(stage)
        assert mod.NAME == stage and fn is mod.run_stage, stage
        assert mod.__name__.rsplit(".", 1)[-1] in ("stage", "quality_stage", "stage_ingest"), mod.__name__
        sig = inspect.signature(fn)
        assert list(sig.parameters) == ["cube_url", "params", "ctx"], stage
        hints = typing.get_type_hints(fn, vars(mod))
        assert hints["params"] is mod.Params and hints["ctx"] is StageContext, stage
        assert hints["return"] is StageResult, stage


def test_config_sections_are_the_stages_own_params_models():
    fields = config.StageParams.model_fields
    for stage in area_job.STAGES:
        params = _module(stage).Params
        assert fields[stage].annotation is params, stage  # the same class, not a mirror
        assert issubclass(params, ParamsModel)
        assert type(getattr(config.StageParams(), stage)) is params
    from insarcloud.qc.config import QCParams

    assert QCParams is config.QcParams is _module("qc").Params  # the qc twin is one model
    assert config.QualityParams is _module("quality").Params and config.IngestParams is _module("ingest").Params


def test_stage_params_are_validated_and_immutable():
    for stage in area_job.STAGES:
        p = _module(stage).Params()
        with pytest.raises(ValidationError):
            p.__class__(no_such_option=1)
        name = next(iter(type(p).model_fields))
        with pytest.raises(ValidationError):
            setattr(p, name, getattr(p, name))
    with pytest.raises(ValidationError, match="overlap"):  # the one tile/overlap rule (core.options)
        config.QualityParams(tile=64, overlap=32)


def test_the_config_and_every_stage_module_import_without_numpy_torch_or_ray():
    mods = ", ".join(sorted({f.__module__ for f in area_job.STAGES.values()}))
    code = (f"import sys, insarcloud.config, {mods}; "
            "print(sorted(m for m in ('numpy', 'torch', 'ray', 'dask', 'xarray', 'zarr') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_result_record_and_decision_line():
    plan = StagePlan("quality", "quality_1a2b3c4d", False, "1a2b3c4d" * 8, {}, "inputs changed (pairs +2: a, b)")
    res = StageResult("quality", plan.group, plan, {"inferred_pairs": 5, "copied_pairs": 40})
    assert res.as_dict() == {"group": "quality_1a2b3c4d", "done": False, "reason": plan.reason,
                             "fingerprint": plan.fingerprint, "inferred_pairs": 5, "copied_pairs": 40}
    assert area_job._decision(res) == ("recomputed quality_1a2b3c4d: inputs changed (pairs +2: a, b) "
                                       "(5 pair(s) inferred, 40 copied)")
    kept = res._replace(plan=plan._replace(done=True, reason="current (fingerprint 1a2b3c4d)"))
    assert area_job._decision(kept) == "kept quality_1a2b3c4d: current (fingerprint 1a2b3c4d)"


FRAME = "012A_05443_131313"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_stage_entry_points_on_a_real_cube(bucket, storage_options, s3_endpoint):
    """ingest -> qc -> invert -> noise through their run_stage on the local S3 endpoint (Dask's local scheduler:
    the area job tests run the same entry points on real worker processes, with quality and forecast on Ray):
    each returns a StageResult whose plan names the group it wrote; a re-run keeps every output; new epochs
    recompute them, saying why."""
    from insarcloud.simulate import simulate_frame, write_licsar_frame

    so = storage_options
    sim = simulate_frame(frame_id=FRAME, shape=(16, 16), n_epochs=14, seed=2, scene_seed=7, lon0=90.0, lat0=31.5,
                         min_neighbours=3, max_neighbours=3, missing_epoch_fraction=0.0, missing_pair_fraction=0.0)
    write_licsar_frame(sim, f"{bucket}/licsar", so, epochs=11, only_missing=True)
    cfg = config.parse_config({
        "area": {"name": "contract", "bbox": [89.9, 31.4, 90.1, 31.6]}, "frames": [FRAME],
        "source_url": f"{bucket}/licsar", "output_url": f"{bucket}/out", "storage": {"endpoint_url": s3_endpoint},
        "stages": ["ingest", "qc", "invert", "noise"],
        "params": {"invert": {"weights": "closure"}, "noise": {"class_size": 64}}})
    order = cfg.ordered_stages()

    def run_all() -> dict[str, StageResult]:
        done: dict[str, StageResult] = {}
        for stage in order:
            ctx = area_job.stage_context(cfg, FRAME, upstream=done)
            res = area_job.run_frame_stage(cfg, FRAME, stage, ctx)
            assert isinstance(res, StageResult) and isinstance(res.plan, StagePlan) and res.stage == stage
            assert res.plan.stage == stage and len(res.plan.fingerprint) == 64 and res.plan.reason
            done[stage] = res
        return done

    first = run_all()
    n_pairs = first["ingest"].summary["appended"]
    assert n_pairs > 0 and not first["ingest"].done
    assert first["qc"].group.startswith("qc") and first["invert"].group.startswith("ts_closure")
    assert first["noise"].summary["ts_group"] == first["invert"].group
    assert not any(r.done for r in first.values())

    again = run_all()
    assert all(r.done for r in again.values()), {s: r.plan.reason for s, r in again.items()}
    assert again["ingest"].summary["appended"] == 0 and again["ingest"].summary["kept"] == n_pairs
    assert {s: r.group for s, r in again.items()} == {s: r.group for s, r in first.items()}
    assert again["qc"].plan.fingerprint == first["qc"].plan.fingerprint

    write_licsar_frame(sim, f"{bucket}/licsar", so, only_missing=True)  # LiCSAR adds 3 epochs
    update = run_all()
    assert update["ingest"].summary["appended"] > 0 and area_job._decision(update["ingest"]).startswith("appended ")
    for stage in ("qc", "invert", "noise"):
        r = update[stage]
        assert not r.done and "inputs changed" in r.plan.reason, (stage, r.plan.reason)
        assert r.plan.fingerprint != first[stage].plan.fingerprint
    assert update["qc"].summary.get("loops_new", 0) > 0, update["qc"].summary
