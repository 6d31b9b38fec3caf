"""An update's forecast training starts from the previous forecast's stored weights (docs/forecast.md,
"Updates"): the weights are used (a warm start learns more in one epoch than random weights do), weights of
another shape are refused with a reason, and the stage wiring on the real S3 endpoint and a local Ray."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from insarcloud.simulate.factors import simulate_region, write_factor_stack

MODEL_CFG = {"width": 8, "heads": 2, "rnn_layers": 1}


def _train(r, factors, n_dates, epochs, init_state=None, init_epochs=None, model_cfg=MODEL_CFG):
    from insarcloud.forecast.serve import train_from_arrays
    from insarcloud.forecast.sources import factors_on_grid

    f = factors_on_grid(factors, r.dates, r.y, r.x)[:, :n_dates]  # (3, t, y, x)
    d = r.ts.displacement[:n_dates].reshape(n_dates, -1)
    fac = f.reshape(3, n_dates, -1)
    return train_from_arrays(d, fac, "mhca_gru", {"epochs": epochs, "batch_size": 128, "lr": 3e-3, "seed": 0},
                             model_cfg, None, 10, 0, r.dates[:n_dates], init_state=init_state,
                             init_epochs=init_epochs)


def test_warm_start_uses_the_previous_weights_and_refuses_other_shapes(tmp_path):
    from insarcloud.forecast.sources import open_factors

    r = simulate_region(6, 6, n_dates=90, rng=np.random.default_rng(3))
    write_factor_stack(r.factors, str(tmp_path / "f.zarr"), "zarr", None)
    fac = open_factors(str(tmp_path / "f.zarr"), None)
    first = _train(r, fac, 80, epochs=8)
    assert first["warm_start"] == "no previous weights"
    # the stack grew by 10 epochs: one epoch from the previous weights vs one epoch from random weights
    scratch = _train(r, fac, 90, epochs=1)
    warm = _train(r, fac, 90, epochs=8, init_state=first["state"], init_epochs=1)
    assert warm["warm_start"] == "started from the previous weights"
    assert warm["epochs"] == 1  # init_epochs caps the given epochs
    assert warm["final_val_loss"] < scratch["final_val_loss"]
    # a wider network has other shapes: trained from scratch, and said so
    other = _train(r, fac, 90, epochs=1, init_state=first["state"], init_epochs=1,
                   model_cfg={**MODEL_CFG, "width": 16})
    assert other["warm_start"].startswith("previous weights do not fit")


def _write(url, so, r, n_dates, first):
    from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output

    if first:
        pairs = [f"{np.datetime_as_string(r.dates[i], 'D').replace('-', '')}_"
                 f"{np.datetime_as_string(r.dates[i + 1], 'D').replace('-', '')}" for i in range(3)]
        z = np.zeros((3, len(r.y), len(r.x)), np.float32)
        write_new_cube(make_frame_dataset(frame="099D_00001_000001", pairs=pairs, lat=r.y, lon=r.x, phase=z,
                                          coh=z + 1), url, so)
    ts = xr.Dataset({"displacement": (("date", "y", "x"), r.ts.displacement[:n_dates], {"units": "mm"})},
                    coords={"date": r.dates[:n_dates], "y": r.y, "x": r.x})
    # a new stack is a new input identity: the forecast recomputes
    write_stage_output(ts, url, "ts_quality", stage="invert", params={"weights": "quality", "dates": n_dates},
                       storage_options=so, encoding={"displacement": {"chunks": (n_dates, 8, 8)}})


@pytest.mark.slow
def test_update_warm_starts_from_the_current_forecast(ray_local, bucket, storage_options):
    from insarcloud.forecast.serve import read_weights, run_forecast
    from insarcloud.io import open_cube

    r = simulate_region(8, 8, n_dates=90, rng=np.random.default_rng(5))
    url = f"{bucket}/cubes/099D_00001_000001.zarr"
    furl = f"{bucket}/factors/region.zarr"
    write_factor_stack(r.factors, furl, "zarr", storage_options)
    kw = dict(model="mhca_gru", ts_group="ts_quality", storage_options=storage_options, train_pixels=40, n_steps=6,
              n_actors=1, train_cfg={"epochs": 3, "batch_size": 256, "lr": 3e-3}, model_cfg=MODEL_CFG,
              warm_start_epochs=1)
    _write(url, storage_options, r, 80, first=True)
    s1 = run_forecast(url, furl, **kw)
    fc1 = open_cube(url, storage_options, group=s1.group)
    assert fc1.attrs["training"]["warm_start"] == "from scratch: no previous forecast"
    assert read_weights(url, s1.group, storage_options)[:2] == b"PK"  # a torch zip archive
    assert "model" not in fc1.data_vars and fc1["displacement"].shape == (6, 8, 8)
    _write(url, storage_options, r, 90, first=False)
    s2 = run_forecast(url, furl, **kw)
    assert s2.group != s1.group and not s2.skipped
    fc2 = open_cube(url, storage_options, group=s2.group)
    t2 = fc2.attrs["training"]
    assert fc2.attrs["window"] == fc1.attrs["window"]  # the automatic window would follow the longer series
    assert t2["warm_start"] == f"started from the previous weights (weights of {s1.group})"
    assert t2["epochs"] == 1
    # other training options: the previous weights are not used
    kw3 = {**kw, "train_cfg": {**kw["train_cfg"], "lr": 1e-3}}
    s3 = run_forecast(url, furl, **kw3)
    t3 = open_cube(url, storage_options, group=s3.group).attrs["training"]
    assert t3["warm_start"] == f"from scratch: {s2.group} was trained with other options"
    assert t3["epochs"] == 3
