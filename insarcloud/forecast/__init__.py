"""Deformation forecasting with environmental factors (Huo et al. 2024, GLER-BiGRUnet).

Kernels (numpy/torch): ``resample`` (eq. 2 interpolation, monthly filling, regridding), ``dataset``
(scaling, differencing, windows, FFT rule, 7:3 split), ``models`` (GLER-BiGRUnet and the Table IV
baselines), ``train`` (MOA-LogCosh, MOA-R^2, Nadam + reduce-on-plateau), ``predict`` (cyclic prediction),
``harmonic`` (trend + annual + semi-annual baseline), ``metrics``. I/O: ``sources`` (factor stacks);
engine: ``serve`` (Ray actor pool over a cube). Torch and Ray are imported by the modules that need them.
"""

from insarcloud.forecast.dataset import Prepared, Scaler, fft_window, prepare
from insarcloud.forecast.harmonic import fit_harmonic, predict_harmonic
from insarcloud.forecast.metrics import Scores, scores
from insarcloud.forecast.resample import interp_time, monthly_fill, regrid_bilinear

__all__ = [
    "Prepared",
    "Scaler",
    "Scores",
    "fft_window",
    "fit_harmonic",
    "interp_time",
    "monthly_fill",
    "predict_harmonic",
    "prepare",
    "regrid_bilinear",
    "scores",
]
