"""Noise and spatial covariance of InSAR time series by multivariate LS-VCE (Babaee et al. 2022).

Kernels (numpy/scipy only): cofactors, uni/multivariate LS-VCE, model choice, Sigma and its Gaussian
covariance, classes. :mod:`insarcloud.noise.dask_ops` maps them over a cube; ``command`` is the CLI.
"""

from insarcloud.noise.classes import segment_velocity, tile_side
from insarcloud.noise.cofactors import (
    CofactorSet,
    ar1_cofactor,
    ar1_cofactor_dlogalpha,
    build_cofactors,
    design_matrix,
    epochs_to_days,
    flicker_cofactor,
    powerlaw_cofactor,
    white_cofactor,
)
from insarcloud.noise.estimate import MODEL_NAMES, MODELS, SLOTS, ClassNoise, estimate_class
from insarcloud.noise.lsvce import (
    LSVCEResult,
    NuisancePrecision,
    WTest,
    multivariate_lsvce,
    nuisance_precision,
    univariate_lsvce,
    wtest_alpha,
)
from insarcloud.noise.select import Choice, chibar_pvalue, choose_model
from insarcloud.noise.spatial import (
    correlations,
    fit_gaussian,
    gaussian_covariance,
    lonlat_to_local_m,
    make_pair_bins,
    predict_covariance,
    scale_variance,
)
from insarcloud.noise.synth import SimClass, simulate_class

__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "SLOTS",
    "Choice",
    "ClassNoise",
    "CofactorSet",
    "LSVCEResult",
    "NuisancePrecision",
    "SimClass",
    "WTest",
    "ar1_cofactor",
    "ar1_cofactor_dlogalpha",
    "build_cofactors",
    "chibar_pvalue",
    "choose_model",
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
    "nuisance_precision",
    "powerlaw_cofactor",
    "predict_covariance",
    "scale_variance",
    "segment_velocity",
    "simulate_class",
    "tile_side",
    "univariate_lsvce",
    "white_cofactor",
    "wtest_alpha",
]
