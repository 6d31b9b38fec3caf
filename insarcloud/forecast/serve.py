"""Train a forecaster on a cube's ``ts_*`` group and serve it over the whole cube with a Ray actor pool.

The thin engine layer of the stage. The driver samples training pixels, a Ray task trains the model (on a
GPU when the cluster has one), then a pool of Ray actors, each holding the trained weights, reads
displacement chunks of the ``ts`` group and the factors for the same pixels itself, runs the cyclic
forecast, and writes chunk-aligned regions of the ``forecast`` group (forecast_date, y, x). Only chunk
coordinates and a few numbers travel through Ray; arrays go through the bucket.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any, NamedTuple

import numpy as np

from insarcloud.engines import started_actors
from insarcloud.errors import CubeError, InputArrayError
from insarcloud.forecast.train_config import TrainConfig

log = logging.getLogger(__name__)

STAGE = "forecast"
# the trained weights (a torch state dict archive) as a uint8 array in a child group of the forecast group: a
# member Zarr knows (a loose object in the group would be listed as a broken member), invisible to
# ``xarray.open_zarr`` of the group, and removed with it by ``gc``; an update starts from them
MODEL_OBJECT = "model/state"


class ForecastSummary(NamedTuple):
    """What ``run_forecast`` did: group written, model, window, n_steps, training metrics (dict), test
    metrics over the cube (dict: rmse, mae over the held-out steps, one-step), pixels forecast, seconds."""

    group: str
    model: str
    window: int
    n_steps: int
    train: dict
    test: dict
    n_pixels: int
    seconds: float
    skipped: bool


def _state_bytes(model) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def train_from_arrays(deformation: np.ndarray, factors: np.ndarray, model_name: str, train_cfg: dict,
                      model_cfg: dict, window: int | None, n_test: int, seed: int, dates: np.ndarray | None = None,
                      target: str = "increments", factor_future: str = "predicted", rollout: int = 1,
                      init_state: bytes | None = None, init_epochs: int | None = None) -> dict[str, Any]:
    """Prepare, train and score on sampled pixels (runs inside a Ray task). Returns weights and metrics.

    ``target``, ``factor_future`` and ``rollout`` select the design (see :func:`run_forecast`); ``dates`` are
    needed by the harmonic residual and the factor climatology. ``init_state`` (a previous training's
    weights, :data:`MODEL_OBJECT`) starts the training from those weights for ``init_epochs`` epochs (the
    other budgets as given) when its shapes fit this model; otherwise training starts from scratch and
    ``warm_start`` in the result says why.
    """
    import torch

    from insarcloud.forecast.dataset import prepare
    from insarcloud.forecast.harmonic import factor_climatology, predict_harmonic
    from insarcloud.forecast.metrics import scores
    from insarcloud.forecast.models import ModelConfig, build_model
    from insarcloud.forecast.predict import cyclic_forecast, model_space, one_step_test
    from insarcloud.forecast.train import TrainConfig, train_model

    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # many small ops: one thread beats contended threads by far
    if dates is None and (target != "increments" or factor_future != "predicted"):
        raise InputArrayError(f"target {target!r} / factor_future {factor_future!r} need the dates")
    cfg = TrainConfig(**train_cfg)
    nt = deformation.shape[0]
    # the harmonic part (if any) is fitted without the held-out dates, so the test scores stay honest
    series, fit = model_space(dates, deformation, target, n_fit=nt - n_test)  # type: ignore[arg-type]
    base = predict_harmonic(fit, dates[-n_test:]) if fit is not None else np.float32(0)  # type: ignore[index]
    prep = prepare(series, factors, window=window, n_test=n_test, differenced=target == "increments",
                   rng=np.random.default_rng(seed), horizon=rollout)
    model = build_model(model_name, prep.window, ModelConfig(**model_cfg))
    warm = "no previous weights"
    if init_state is not None:
        try:
            model.load_state_dict(torch.load(io.BytesIO(init_state), map_location="cpu"))
            cfg = cfg.model_copy(update={"epochs": min(cfg.epochs, init_epochs or cfg.epochs)})
            warm = "started from the previous weights"
        except (RuntimeError, KeyError) as exc:  # another window length or model: shapes differ
            warm = f"previous weights do not fit ({str(exc).splitlines()[0][:120]}): trained from scratch"
    res = train_model(model, prep.x_train, prep.y_train, prep.x_val, prep.y_val, cfg)
    truth = deformation[-n_test:]
    ff = None
    if factor_future == "climatology":
        ff = factor_climatology(dates[:-n_test], factors[:, :-n_test], dates[-n_test:])  # type: ignore[index]
    one = scores(truth, one_step_test(res.model, prep, series) + base)
    cyc = scores(truth, cyclic_forecast(res.model, prep, series, -n_test, n_test, factor_future=ff).displacement
                 + base)
    return {
        "state": _state_bytes(res.model), "window": prep.window, "scaler_mean": prep.scaler.mean.tolist(),
        "scaler_std": prep.scaler.std.tolist(), "differenced": prep.differenced, "target": target,
        "factor_future": factor_future, "rollout": rollout, "epochs": res.epochs,
        "seconds": res.seconds, "device": res.device, "final_val_loss": float(min(res.history["val_loss"])),
        "warm_start": warm,
        "one_step": one._asdict(), "cyclic": cyc._asdict(), "n_train": len(prep.x_train),
        "n_val": len(prep.x_val),
    }


class BlockForecaster:
    """Holds a trained model; forecasts one chunk-aligned block of the cube per call (a Ray actor body)."""

    def __init__(self, url: str, ts_group: str, out_group: str, factors_url: str, model_name: str,
                 model_cfg: dict, trained: dict, n_steps: int, n_test: int,
                 storage_options: dict | None, step_days: int = 12) -> None:
        import torch

        from insarcloud.forecast.dataset import Scaler
        from insarcloud.forecast.models import ModelConfig, build_model
        from insarcloud.forecast.sources import open_factors

        self.dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.dev.type == "cpu":
            torch.set_num_threads(1)
        self.model = build_model(model_name, trained["window"], ModelConfig(**model_cfg))
        self.model.load_state_dict(torch.load(io.BytesIO(trained["state"]), map_location="cpu"))
        self.model.to(self.dev).eval()
        self.scaler = Scaler(np.asarray(trained["scaler_mean"]), np.asarray(trained["scaler_std"]))
        self.window = trained["window"]
        self.target, self.factor_future = trained["target"], trained["factor_future"]
        self.url, self.ts_group, self.out_group = url, ts_group, out_group
        self.so, self.n_steps, self.n_test, self.step_days = storage_options, n_steps, n_test, step_days
        self.factors = open_factors(factors_url, storage_options)

    def ready(self) -> bool:
        """Answers once the actor has started (its weights are loaded)."""
        return True

    def run(self, ys: tuple[int, int], xs: tuple[int, int]) -> tuple[int, float, float]:
        """Forecast pixels [ys[0]:ys[1], xs[0]:xs[1]]; returns (n_valid, sum sq test error, sum abs error)."""
        import xarray as xr

        from insarcloud.forecast.predict import forecast_pixels
        from insarcloud.forecast.sources import factors_on_grid
        from insarcloud.io import open_cube, write_stage_region

        t0 = time.perf_counter()
        ds = open_cube(self.url, self.so, group=self.ts_group)
        blk = ds["displacement"].isel(y=slice(*ys), x=slice(*xs))
        d = np.asarray(blk.values, np.float32)
        nt, ny, nx = d.shape
        flat = d.reshape(nt, -1)
        ok = np.isfinite(flat).all(0)
        fc = np.full((self.n_steps, ny * nx), np.nan, np.float32)
        rmse = np.full(ny * nx, np.nan, np.float32)
        mae = np.full(ny * nx, np.nan, np.float32)
        sse = sae = 0.0
        if ok.any():
            fac = factors_on_grid(self.factors, ds["date"].values, blk["y"].values, blk["x"].values)
            fac = fac.reshape(3, nt, -1)[:, :, ok]
            # all valid pixels of the block at once: one forward pass per cyclic step (batches of 4096)
            out = forecast_pixels(self.model, self.scaler, self.window, ds["date"].values, flat[:, ok], fac,
                                  self.n_steps, target=self.target, factor_future=self.factor_future,
                                  n_test=self.n_test, step_days=self.step_days)
            fc[:, ok] = out.displacement
            err = out.one_step - flat[-self.n_test :, ok]
            rmse[ok] = np.sqrt((err**2).mean(0))
            mae[ok] = np.abs(err).mean(0)
            sse, sae = float((err**2).sum()), float(np.abs(err).sum())
        part = xr.Dataset({
            "displacement": (("forecast_date", "y", "x"), fc.reshape(self.n_steps, ny, nx)),
            "test_rmse": (("y", "x"), rmse.reshape(ny, nx)),
            "test_mae": (("y", "x"), mae.reshape(ny, nx)),
        })
        write_stage_region(part, self.url, self.out_group, {"y": slice(*ys), "x": slice(*xs)}, self.so)
        log.debug("block y%s x%s: %d pixels in %.2f s", ys, xs, int(ok.sum()), time.perf_counter() - t0)
        return int(ok.sum()), sse, sae


def work_blocks(chunk_y: int, chunk_x: int, ny: int, nx: int, n_actors: int, max_block_pixels: int
                ) -> tuple[int, int]:
    """Block size (rows, cols) of the forecast work units: the ts chunk divided evenly k x k times, with the
    smallest k such that a block holds at most ``max_block_pixels`` pixels and the frame has at least
    ``2 * n_actors`` blocks (or the blocks are single pixels). When k divides the ts chunk each block reads
    from one ts chunk; otherwise a block may straddle two (reads only: writes follow the forecast chunks)."""
    cy, cx = min(chunk_y, ny), min(chunk_x, nx)
    k = 1
    while True:
        fy, fx = -(-cy // k), -(-cx // k)
        n_blocks = -(-ny // fy) * -(-nx // fx)
        if (fy * fx <= max_block_pixels and n_blocks >= 2 * n_actors) or (fy == 1 and fx == 1):
            return fy, fx
        k += 1


def _chunk_tuple(n: int, c: int) -> tuple[int, ...]:
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def _previous_weights(url: str, plan: Any, storage_options: dict | None) -> tuple[bytes | None, str, int | None]:
    """The current forecast's stored weights when it was trained with the options of ``plan`` (only the
    inputs changed: an update), else None; which group they come from or why there are none; its window."""
    from insarcloud.io import stages
    from insarcloud.io.cube import open_zarr_group, read_marker

    prev = stages.current_group(url, STAGE, storage_options)
    if prev is None or prev == plan.group:
        return None, "from scratch: no previous forecast", None
    if (read_marker(url, prev, storage_options) or {}).get("params") != plan.identity["params"]:
        return None, f"from scratch: {prev} was trained with other options", None
    state = read_weights(url, prev, storage_options)
    if state is None:
        return None, f"from scratch: {prev} has no stored weights", None
    window = open_zarr_group(url, prev, storage_options).attrs.get("window")
    return state, f"weights of {prev}", int(window) if window is not None else None


def _write_weights(url: str, group: str, state: bytes, storage_options: dict | None) -> None:
    from insarcloud.io.cube import open_zarr_group

    sub = open_zarr_group(url, group, storage_options, mode="r+").require_group(MODEL_OBJECT.split("/")[0])
    arr = sub.create_array(MODEL_OBJECT.split("/")[1], shape=(len(state),), dtype="uint8",
                           chunks=(max(1, len(state)),), overwrite=True)
    arr[:] = np.frombuffer(state, np.uint8)


def read_weights(url: str, group: str, storage_options: dict | None = None) -> bytes | None:
    """The trained weights stored with a forecast group (torch state dict archive bytes), or None."""
    from insarcloud.io.cube import open_zarr_group

    try:
        g = open_zarr_group(url, f"{group}/{MODEL_OBJECT.split('/')[0]}", storage_options)
        return np.asarray(g[MODEL_OBJECT.split("/")[1]][:]).tobytes()
    except (CubeError, KeyError, FileNotFoundError):
        return None


def _sample_training(ds, factors, n_pixels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pixels with a complete series, from a strided subset (bounded driver memory)."""
    from insarcloud.forecast.sources import factors_on_grid

    ny, nx = ds.sizes["y"], ds.sizes["x"]
    stride = max(1, int(np.sqrt(ny * nx / max(4 * n_pixels, 1))))
    sub = ds["displacement"].isel(y=slice(None, None, stride), x=slice(None, None, stride))
    d = np.asarray(sub.values, np.float32)
    nt = d.shape[0]
    flat = d.reshape(nt, -1)
    ok = np.flatnonzero(np.isfinite(flat).all(0))
    if ok.size < 10:
        raise CubeError(f"only {ok.size} pixels with a complete displacement series to train on")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(ok, size=min(n_pixels, ok.size), replace=False))
    fac = factors_on_grid(factors, ds["date"].values, sub["y"].values, sub["x"].values).reshape(3, nt, -1)
    return flat[:, pick], fac[:, :, pick]


def run_forecast(url: str, factors_url: str, *, model: str = "gler", ts_group: str | None = None,
                 out_group: str = "forecast", storage_options: dict | None = None, train_pixels: int = 2000,
                 n_steps: int = 72, step_days: int = 12, n_test: int = 10, window: int | None = None,
                 train_cfg: dict | None = None, model_cfg: dict | None = None, n_actors: int = 2,
                 seed: int = 0, max_block_pixels: int = 16384, target: str = "increments",
                 factor_future: str = "predicted", rollout: int = 1,
                 warm_start_epochs: int | None = None) -> ForecastSummary:
    """Train ``model`` on a cube's ``ts_group`` and write the ``forecast`` group with a Ray actor pool.

    Ray must be initialised (``insarcloud.engines.init_ray``). Output group (``out_group``, or a new name
    when a complete one with other parameters exists): ``displacement`` (forecast_date, y, x) float32 mm LOS
    (+ toward the satellite), ``test_rmse``/``test_mae`` (y, x) mm of one-step predictions on the last
    ``n_test`` observed dates; attrs hold the training metrics.

    Design options (defaults = the paper): ``target`` "increments" (12-day increments, integrated back) or
    "harmonic_residual" (the network forecasts the residual about a per-pixel trend + annual + semi-annual
    fit that is added back); ``factor_future`` "predicted" (the model's factor predictions are fed back in
    the cyclic loop) or "climatology" (the factors' per-pixel annual + semi-annual climatology is);
    ``rollout`` K > 1 trains on K free-running steps (see ``insarcloud.forecast.train.rollout``).

    ``warm_start_epochs`` N: when the stage recomputes because its inputs changed (new epochs) and the current
    forecast was trained with the same options, training starts from that forecast's stored weights
    (:data:`MODEL_OBJECT`) for at most N epochs instead of ``train_cfg``'s from random weights (docs/forecast.md,
    "Updates"); the group's ``training.warm_start`` attribute says what was done. None: always from scratch.

    Work units: the ts chunks split into blocks of at most ``max_block_pixels`` pixels and into at least two
    blocks per actor (a 96 x 96 frame in one 512 chunk would otherwise leave all but one actor idle); the
    forecast group is chunked on those blocks, so every actor writes whole chunks.
    """
    import dask.array as da
    import ray
    import xarray as xr
    from ray.util import ActorPool

    from insarcloud.forecast.models import MODEL_NAMES
    from insarcloud.forecast.predict import FACTOR_FUTURES, FORECAST_TARGETS
    from insarcloud.forecast.sources import open_factors
    from insarcloud.io import create_stage_template, mark_stage_complete, open_cube, stages
    from insarcloud.io.cube import open_zarr_group

    if model not in MODEL_NAMES:
        raise InputArrayError(f"unknown model {model!r}; choose from {MODEL_NAMES}")
    if target not in FORECAST_TARGETS or factor_future not in FACTOR_FUTURES or rollout < 1:
        raise InputArrayError(f"target {target!r} (one of {FORECAST_TARGETS}), factor_future {factor_future!r} "
                              f"(one of {FACTOR_FUTURES}), rollout {rollout} (>= 1)")
    t0 = time.perf_counter()
    # Fingerprint the complete, validated training options: the CLI passes batch size, lr and None for the
    # unset budgets while the area job leaves them out, and the same settings must hash the same. The
    # torch seed follows ``seed`` unless given (the CLI's --seed used to reach the sampling only).
    train_cfg = TrainConfig(**{"seed": seed, **(train_cfg or {})}).model_dump()
    model_cfg = dict(model_cfg or {})
    # ts_group None: the invert stage's current output; a name: its current output of that kind (docs/STAGES.md)
    ts_group = stages.input_group(url, "invert", ts_group, storage_options)
    params = {"model": model, "factors": factors_url, "train_pixels": train_pixels,
              "n_steps": n_steps, "step_days": step_days, "n_test": n_test, "window": window,
              "train": train_cfg, "model_cfg": model_cfg, "seed": seed}
    if (target, factor_future, rollout) != ("increments", "predicted", 1):  # paper defaults keep old hashes
        params.update(target=target, factor_future=factor_future, rollout=rollout)
    plan = stages.plan_stage(url, STAGE, out_group, params,
                             upstream={"invert": stages.group_fingerprint(url, ts_group, storage_options)},
                             storage_options=storage_options)
    if plan.done:
        stages.finish_stage(url, plan, storage_options, base=out_group)
        return ForecastSummary(plan.group, model, window or 0, n_steps, {}, {}, 0, 0.0, True)
    ds = open_cube(url, storage_options, group=ts_group)
    if "displacement" not in ds:
        raise CubeError(f"group {ts_group!r} of {url} has no 'displacement' variable")
    factors = open_factors(factors_url, storage_options)
    d_train, f_train = _sample_training(ds, factors, train_pixels, seed)
    log.info("training %s on %d pixels x %d dates", model, d_train.shape[1], d_train.shape[0])
    init_state, warm_from, prev_window = ((None, "off", None) if warm_start_epochs is None
                                          else _previous_weights(url, plan, storage_options))
    if init_state is not None and window is None:
        # the automatic window follows the series' length: keep the previous one, so its weights fit
        window = prev_window
    gpu = ray.cluster_resources().get("GPU", 0) >= 1
    train_task = ray.remote(num_gpus=1 if gpu else 0, num_cpus=1)(train_from_arrays)
    trained = ray.get(train_task.remote(d_train, f_train, model, train_cfg, model_cfg, window, n_test, seed,
                                        ds["date"].values, target, factor_future, rollout,
                                        init_state, warm_start_epochs))
    trained["warm_start"] = f"{trained['warm_start']} ({warm_from})" if init_state is not None else warm_from
    log.info("trained in %.1f s on %s: one-step test RMSE %.3f mm", trained["seconds"], trained["device"],
             trained["one_step"]["rmse"])

    last = ds["date"].values[-1].astype("datetime64[D]")
    fdates = (last + np.arange(1, n_steps + 1) * np.timedelta64(step_days, "D")).astype("datetime64[ns]")
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    ts_cy = ds["displacement"].chunks[1][0] if ds["displacement"].chunks else ny
    ts_cx = ds["displacement"].chunks[2][0] if ds["displacement"].chunks else nx
    n_act = max(1, n_actors if not gpu else 1)
    fy, fx = work_blocks(ts_cy, ts_cx, ny, nx, n_act, max_block_pixels)
    cy, cx = _chunk_tuple(ny, fy), _chunk_tuple(nx, fx)
    log.info("forecast blocks of %d x %d pixels (ts chunks %d x %d), %d blocks for %d actors", fy, fx, ts_cy,
             ts_cx, len(cy) * len(cx), n_act)
    zeros3 = da.full((n_steps, ny, nx), np.nan, dtype=np.float32, chunks=(n_steps, cy, cx))
    zeros2 = da.full((ny, nx), np.nan, dtype=np.float32, chunks=(cy, cx))
    meta = {k: v for k, v in trained.items() if k != "state"}
    tmpl = xr.Dataset(
        {
            "displacement": (("forecast_date", "y", "x"), zeros3, {
                "units": "mm", "long_name": f"forecast LOS displacement ({model})",
                "description": "cyclic one-step forecast continuing the ts displacement; + toward satellite"}),
            "test_rmse": (("y", "x"), zeros2, {"units": "mm", "long_name": "one-step RMSE on the last "
                                               f"{n_test} observed dates"}),
            "test_mae": (("y", "x"), zeros2, {"units": "mm", "long_name": "one-step MAE on the last "
                                              f"{n_test} observed dates"}),
        },
        coords={"forecast_date": fdates, "y": ds["y"].values, "x": ds["x"].values},
        attrs={"model": model, "ts_group": ts_group, "factors": factors_url, "window": trained["window"],
               "los_sign_convention": "positive toward the satellite", "training": meta},
    )
    for c in ("lat", "lon"):
        if c in ds.coords:
            tmpl = tmpl.assign_coords({c: (ds[c].dims, ds[c].values, ds[c].attrs)})
    create_stage_template(tmpl, url, plan.group, stage=STAGE, params=plan.identity, storage_options=storage_options)
    _write_weights(url, plan.group, trained["state"], storage_options)

    actor_cls = ray.remote(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1)(BlockForecaster)
    actors = [actor_cls.remote(url, ts_group, plan.group, factors_url, model, model_cfg, trained, n_steps,
                               n_test, storage_options, step_days) for _ in range(n_act)]
    ybounds = np.cumsum((0,) + tuple(cy))
    xbounds = np.cumsum((0,) + tuple(cx))
    blocks = [((int(ybounds[i]), int(ybounds[i + 1])), (int(xbounds[j]), int(xbounds[j + 1])))
              for i in range(len(cy)) for j in range(len(cx))]
    actors = started_actors(actors, "ready", label="forecast")  # the others could deadlock parallel frames
    pool = ActorPool(actors)
    n_pix, sse, sae = 0, 0.0, 0.0
    from insarcloud.progress import Reporter  # lines on stderr (kubectl logs), a bar on a terminal

    frame = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zarr")
    with Reporter(f"forecast {frame}", len(blocks), "blocks") as bar:
        for k, (n, s, a) in enumerate(pool.map_unordered(lambda act, b: act.run.remote(*b), blocks), start=1):
            n_pix, sse, sae = n_pix + n, sse + s, sae + a
            log.info("forecast blocks %d/%d", k, len(blocks))
            bar.update(1)
    for act in actors:
        ray.kill(act)
    n_err = max(n_pix * n_test, 1)
    test = {"rmse": float(np.sqrt(sse / n_err)), "mae": float(sae / n_err), "n_pixels": n_pix}
    g = open_zarr_group(url, plan.group, storage_options, mode="r+")
    g.attrs["test_metrics"] = test
    mark_stage_complete(url, plan.group, storage_options, stage=STAGE, params=plan.identity)
    stages.finish_stage(url, plan, storage_options, base=out_group)
    return ForecastSummary(plan.group, model, trained["window"], n_steps, meta, test, n_pix,
                           time.perf_counter() - t0, False)
