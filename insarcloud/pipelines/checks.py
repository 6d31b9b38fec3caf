"""Up-front checks: everything knowable before a cluster starts, each failure naming its fix.

The area job runs ``check_area`` after the storage pre-flight and before any engine starts; the demo checks
its ``--epochs`` against the forecast window while parsing its arguments. All problems are reported at once
(one ConfigError), as the config's own validation does.
"""

from __future__ import annotations

import logging
from typing import Any

from insarcloud.core.pairs import epochs
from insarcloud.errors import ConfigError

log = logging.getLogger("insarcloud.area_job")

# forecast/dataset.py fft_window's search range and default, and run_forecast's held-out test steps
FFT_WINDOW_LO, FFT_WINDOW_HI, FFT_WINDOW_DEFAULT = 10, 24, 15
FORECAST_TEST_STEPS = 10


def worst_case_window(n_epochs: int) -> int:
    """The longest input window ``fft_window`` can pick for a series of ``n_epochs`` dates.

    It picks among the FFT periods ``round(n / k)`` in [10, 24] (or 15 when the series is shorter than 20 or
    none falls in the range); which one depends on the data, so the check takes the longest.
    """
    if n_epochs < 2 * FFT_WINDOW_LO:
        return FFT_WINDOW_DEFAULT
    periods = {round(n_epochs / k) for k in range(1, n_epochs // 2 + 1)}
    inside = [p for p in periods if FFT_WINDOW_LO <= p <= FFT_WINDOW_HI]
    return max(inside) if inside else FFT_WINDOW_DEFAULT


def forecast_fits(n_epochs: int, target: str = "increments", window: int | None = None,
                  n_test: int = FORECAST_TEST_STEPS) -> bool:
    """True when a stack of ``n_epochs`` dates leaves room for the window, the test steps and 3 training windows.

    forecast/dataset.py ``prepare`` needs ``steps - n_test > window + 2``, with steps = dates - 1 for the
    ``increments`` target (it differences the series) and dates otherwise.
    """
    steps = n_epochs - 1 if target == "increments" else n_epochs
    w = window if window is not None else worst_case_window(n_epochs)
    return steps - n_test > w + 2


def min_forecast_epochs(target: str = "increments", window: int | None = None,
                        n_test: int = FORECAST_TEST_STEPS) -> int:
    """The shortest stack the forecast stage accepts for any data (the worst-case window)."""
    n = 2
    while not forecast_fits(n, target, window, n_test):
        n += 1
    return n


def forecast_epochs_problem(n_epochs: int, where: str, target: str = "increments", window: int | None = None,
                            fix: str = "") -> str | None:
    """A sentence naming the problem and the fix, or None when the stack is long enough."""
    if forecast_fits(n_epochs, target, window):
        return None
    need = min_forecast_epochs(target, window)
    w = window or worst_case_window(n_epochs)
    return (f"{where} has {n_epochs} epochs, too few for the forecast stage (target {target!r}): it holds out "
            f"{FORECAST_TEST_STEPS} test steps and its input window can be {w} steps at this length, which leaves "
            f"fewer than 3 training windows; {need} epochs or more always fit: "
            f"{fix or 'give it a longer stack or leave forecast out of stages'}")


def _epochs(cfg: Any, frame: str) -> int | None:
    """Epochs of a frame: from its cube when ingested, else from the source listing (no pixel is read)."""
    from insarcloud.errors import CubeError
    from insarcloud.io import open_cube

    try:
        return int(open_cube(cfg.cube_url(frame), cfg.output_storage_options()).sizes["date"])
    except (CubeError, KeyError, OSError):
        pass
    try:
        from insarcloud.io.licsar import discover_frame

        products = discover_frame(cfg.source_url, frame, cfg.source_storage_options())
    except Exception as exc:  # noqa: BLE001 - ingest reports an unreadable source with its own message
        log.debug("could not list %s for the up-front checks: %s", frame, exc)
        return None
    return len(epochs(products.pairs))


def _complete(cfg: Any, frame: str, group: str) -> bool:
    from insarcloud.io import read_marker

    return bool((read_marker(cfg.cube_url(frame), group, cfg.output_storage_options()) or {}).get("complete"))


def stage_input_problems(cfg: Any, frames: list[str]) -> list[str]:
    """Inputs the chosen stages read that neither an earlier chosen stage makes nor the cubes already hold."""
    stages = set(cfg.stages)
    ts_group = f"ts_{cfg.params.invert.weights}"
    needs: list[tuple[str, str, str]] = []  # (group, who needs it, fix)
    if "invert" in stages and cfg.params.invert.weights in ("quality", "quality_closure") and "quality" not in stages:
        needs.append(("quality", f"invert with weights {cfg.params.invert.weights!r}",
                      "add 'quality' to stages, or set params.invert.weights to none, coherence or closure"))
    if "invert" not in stages:
        for s in ("noise", "forecast", "mosaic"):
            if s in stages:
                needs.append((ts_group, s, "add 'invert' to stages (or set params.invert.weights to the weights "
                              "of an existing ts_* group)"))
                break
    # (the mosaic's precision_group is optional: it falls back to the ts group where a frame lacks it)
    problems = []
    for group, who, fix in needs:
        lacking = [f for f in frames if not _complete(cfg, f, group)]
        if lacking:
            problems.append(f"{who} reads the {group!r} group, which no chosen stage makes and "
                            f"{len(lacking)} frame cube(s) lack ({', '.join(lacking[:5])}): {fix}")
    return problems


def check_area(cfg: Any, frames: list[str]) -> None:
    """Everything knowable before the engines start; one ConfigError listing every problem and its fix."""
    problems = stage_input_problems(cfg, frames)
    if "forecast" in cfg.stages:
        p = cfg.params.forecast
        for frame in frames:
            n = _epochs(cfg, frame)
            if n is None:
                continue
            msg = forecast_epochs_problem(n, f"frame {frame}", p.target,
                                          fix="add acquisitions, or leave 'forecast' out of stages")
            if msg:
                problems.append(msg)
    if problems:
        raise ConfigError("the job cannot finish as configured (checked before starting):\n  - "
                          + "\n  - ".join(problems))
