"""Quality after an appended epoch: only the pairs whose inputs changed are inferred (issue 18), the rest copied
from the previous group, and the result equals a from-scratch run; the window job shape (issue 20) reads each
closure chunk once per call and gives the values the one-pair jobs give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insarcloud import io
from insarcloud.io import stages
from insarcloud.qc.serve_plan import calls, pairs_per_call, pairs_to_infer, plan_jobs

CHANNELS = ("cos_phase", "sin_phase", "coh", "unw_grad", "closure")


def _checkpoint(url: str, so: dict) -> None:
    from insarcloud.qc.model import ModelConfig, build_model
    from insarcloud.qc.train import save_checkpoint

    torch.manual_seed(0)
    m = build_model(ModelConfig(channels=CHANNELS, num_stages=2, decoder_width=8))
    save_checkpoint(url, {"model_config": m.config.model_dump_json(), "state_dict": m.state_dict()}, so)


def _e(i: int, j: int) -> str:
    """Pair name of epochs i < j of the synthetic stack (12-day steps from 2024-01-06)."""
    d = np.datetime64("2024-01-06") + np.array([i, j]) * np.timedelta64(12, "D")
    return "_".join(str(x).replace("-", "") for x in d)


def test_pairs_to_infer_new_pairs_and_old_pairs_in_new_loops():
    old = [_e(i, j) for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))]
    new = old + [_e(1, 4), _e(2, 4), _e(3, 4)]
    # new loops (1,2,4), (1,3,4), (2,3,4): they hold old pairs 1-2, 1-3, 2-3; pairs of epoch 0 keep their loops
    want = {_e(1, 2), _e(1, 3), _e(2, 3), _e(1, 4), _e(2, 4), _e(3, 4)}
    assert set(pairs_to_infer(old, new, uses_closure=True)) == want
    assert set(pairs_to_infer(old, new, uses_closure=False)) == {_e(1, 4), _e(2, 4), _e(3, 4)}
    # a removed pair changes the loops of the pairs it closed: (0,1,2) and (1,2,3) lose 1-2's partners
    assert set(pairs_to_infer(old, [p for p in old if p != _e(1, 2)], uses_closure=True)) == {
        _e(0, 1), _e(0, 2), _e(1, 3), _e(2, 3)}


def test_window_calls_read_each_window_once_within_the_bound():
    jobs = plan_jobs([f"p{i}" for i in range(10)], (100, 70), (48, 32))
    one = calls(jobs, 10)
    assert len(one) == 9 and all(len({(j.y, j.x) for j in c}) == 1 and len(c) == 10 for c in one)
    # a window's closure (pairs x 10,000 px x 2 B) over a 1 MB bound (half for the closure): 26 pairs per call
    assert pairs_per_call(676, 10_000, 2, mem_mb=1) == 26
    split = calls(jobs, 4)
    assert sorted(len(c) for c in split) == [2] * 9 + [4] * 18
    assert sorted(j.key for c in split for j in c) == sorted(j.key for j in jobs)


def _loop_partners(pairs: list[str], new: set[str]) -> set[str]:
    """Brute force: every pair sharing a closed loop (ij, jk, ik) with a pair of ``new``."""
    have = {tuple(p.split("_")) for p in pairs}
    out = set()
    for i, k in have:
        for j in {b for a, b in have if a == i}:
            loop = {f"{i}_{j}", f"{j}_{k}", f"{i}_{k}"}
            if (j, k) in have and loop & new:
                out |= loop
    return out


@pytest.mark.slow
@pytest.mark.timeout(1500)  # three qc and three quality runs: ~390 s at load average ~25
def test_update_infers_changed_pairs_only_and_equals_scratch(ray_local, bucket, storage_options):
    from insarcloud.qc.dask_ops import run_qc
    from insarcloud.qc.serve import ServeParams, run_quality

    from ..io.test_stages import FIRST, FRAME, ingest, simulated, write_source

    so = storage_options
    sim = simulated()
    src, cube, fresh = f"{bucket}/licsar", f"{bucket}/cubes/{FRAME}.zarr", f"{bucket}/fresh/{FRAME}.zarr"
    old_pairs = write_source(sim, src, so, FIRST)  # LiCSAR before its last acquisitions
    ingest(src, cube, so)
    ck = f"{bucket}/models/q.pt"
    _checkpoint(ck, so)
    params = ServeParams(checkpoint=ck, tile=32, overlap=8, batch_size=4, threads=1, bf16=False)
    run_qc(cube, storage_options=so)
    first = run_quality(cube, params, storage_options=so, n_actors=1, progress=False)
    assert (first.inferred_pairs, first.copied_pairs) == (len(old_pairs), 0)
    assert first.reuse == "full recompute: no previous quality group"

    pairs = write_source(sim, src, so)  # LiCSAR added the later acquisitions
    ingest(src, cube, so)
    run_qc(cube, storage_options=so)
    second = run_quality(cube, params, storage_options=so, n_actors=2, progress=False)
    new = set(pairs) - set(old_pairs)
    changed = (_loop_partners(pairs, new) - new) & set(old_pairs)
    kept = sorted(set(old_pairs) - changed)
    assert new and changed and kept  # the case is not degenerate: some old pairs change, some do not
    assert (second.inferred_pairs, second.copied_pairs) == (len(new) + len(changed), len(kept)), second.reuse
    assert second.group != first.group

    ingest(src, fresh, so)  # from scratch on every epoch
    run_qc(fresh, storage_options=so)
    scratch = run_quality(fresh, params, storage_options=so, n_actors=1, progress=False)
    assert scratch.inferred_pairs == len(pairs)
    a, b = stages.open_stage(cube, "quality", so), stages.open_stage(fresh, "quality", so)
    assert sorted(map(str, a["pair"].values)) == sorted(pairs)
    np.testing.assert_allclose(a["quality"].values, b.sel(pair=a["pair"].values)["quality"].values, atol=1e-6,
                               rtol=0)
    old = io.open_cube(cube, so, group=first.group)
    # the copied pairs are the first run's values; the old pairs in a new loop are not (they would be stale)
    np.testing.assert_array_equal(a.sel(pair=kept)["quality"].values, old.sel(pair=kept)["quality"].values)
    changed_l = sorted(changed)
    assert not np.allclose(old.sel(pair=changed_l)["quality"].values, a.sel(pair=changed_l)["quality"].values,
                           atol=1e-6)

    # anything but the pairs and the qc group's pairs changed: a full recompute, said why (the plan alone)
    from insarcloud.qc.serve_plan import reuse_plan

    marker = io.read_marker(cube, second.group, so)
    ident = {"params": marker["params"], "inputs": marker["inputs"]}
    shape = (a.sizes["y"], a.sizes["x"])
    assert len(reuse_plan(cube, second.group, ident, pairs, shape, so).source) == len(pairs)  # nothing changed
    other = {**ident, "params": {**ident["params"], "overlap": 4}}
    assert reuse_plan(cube, second.group, other, pairs, shape, so) == (
        None, {}, f"full recompute: parameters changed since {second.group}")
    model = {**ident, "inputs": {**ident["inputs"], "files": {"checkpoint": "0" * 64}}}
    assert reuse_plan(cube, second.group, model, pairs, shape, so).reason.startswith("full recompute: model")
    assert reuse_plan(cube, None, ident, pairs, shape, so).reason == "full recompute: no previous quality group"
