"""Deformation forecasting with environmental factors (Huo et al. 2024, GLER-BiGRUnet).

Kernels (numpy/torch): ``resample`` (eq. 2 interpolation, monthly filling, regridding), ``dataset``
(scaling, differencing, windows, FFT rule, 7:3 split), ``models`` (GLER-BiGRUnet and the Table IV
baselines), ``train`` (MOA-LogCosh, MOA-R^2, Nadam + reduce-on-plateau), ``predict`` (cyclic prediction),
``harmonic`` (trend + annual + semi-annual baseline), ``metrics``. I/O: ``sources`` (factor stacks);
engine: ``serve`` (Ray actor pool over a cube). Torch and Ray are imported by the modules that need them.
"""

from insarcloud._lazy import attach

# Public names by submodule, imported on first use (insarcloud/_lazy.py: keeps the CLI's start light)
__getattr__, __dir__, __all__ = attach(__name__, {
    "dataset": ["Prepared", "Scaler", "fft_window", "prepare"],
    "harmonic": ["fit_harmonic", "predict_harmonic"],
    "metrics": ["Scores", "scores"],
    "resample": ["interp_time", "monthly_fill", "regrid_bilinear"],
})
