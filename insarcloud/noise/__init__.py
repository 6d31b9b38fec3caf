"""Noise and spatial covariance of InSAR time series by multivariate LS-VCE (Babaee et al. 2022).

Kernels (numpy/scipy only): cofactors, uni/multivariate LS-VCE, model choice, Sigma and its Gaussian
covariance, classes. :mod:`insarcloud.noise.dask_ops` maps them over a cube; ``command`` is the CLI.
"""

from insarcloud.noise.classes import segment_velocity, tile_side
from insarcloud.noise.cofactors import (
    CofactorSet,
    ar1_cofactor,
    build_cofactors,
    design_matrix,
    epochs_to_days,
    flicker_cofactor,
    powerlaw_cofactor,
    white_cofactor,
)
from insarcloud.noise.estimate import MODEL_NAMES, MODELS, SLOTS, ClassNoise, estimate_class
from insarcloud.noise.lsvce import LSVCEResult, WTest, multivariate_lsvce, univariate_lsvce, wtest_alpha
from insarcloud.noise.spatial import (
    correlations,
    fit_gaussian,
    gaussian_covariance,
    lonlat_to_local_m,
    make_pair_bins,
    predict_covariance,
)
from insarcloud.noise.synth import SimClass, simulate_class

__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "SLOTS",
    "ClassNoise",
    "CofactorSet",
    "LSVCEResult",
    "SimClass",
    "WTest",
    "ar1_cofactor",
    "build_cofactors",
    "correlations",
    "design_matrix",
    "epochs_to_days",
    "estimate_class",
    "fit_gaussian",
    "flicker_cofactor",
    "gaussian_covariance",
    "lonlat_to_local_m",
    "make_pair_bins",
    "multivariate_lsvce",
    "powerlaw_cofactor",
    "predict_covariance",
    "segment_velocity",
    "simulate_class",
    "tile_side",
    "univariate_lsvce",
    "white_cofactor",
    "wtest_alpha",
]
