"""Noise and spatial covariance of InSAR time series by multivariate LS-VCE (Babaee et al. 2022).

Kernels (numpy/scipy only): cofactors, uni/multivariate LS-VCE, model choice, Sigma and its Gaussian
covariance, classes. :mod:`insarcloud.noise.dask_ops` maps them over a cube; ``command`` is the CLI.
"""

from insarcloud._lazy import attach

# Public names by submodule, imported on first use (insarcloud/_lazy.py: keeps the CLI's start light)
__getattr__, __dir__, __all__ = attach(__name__, {
    "classes": ["segment_velocity", "tile_side"],
    "cofactors": [
        "CofactorSet", "ar1_cofactor", "ar1_cofactor_dlogalpha", "build_cofactors", "design_matrix", "epochs_to_days",
        "flicker_cofactor", "powerlaw_cofactor", "white_cofactor",
    ],
    "estimate": ["MODEL_NAMES", "MODELS", "SLOTS", "ClassNoise", "estimate_class"],
    "lsvce": [
        "LSVCEResult", "NuisancePrecision", "WTest", "multivariate_lsvce", "nuisance_precision", "univariate_lsvce",
        "wtest_alpha",
    ],
    "select": ["Choice", "chibar_pvalue", "choose_model"],
    "spatial": [
        "correlations", "fit_gaussian", "gaussian_covariance", "lonlat_to_local_m", "make_pair_bins",
        "predict_covariance", "scale_variance",
    ],
    "synth": ["SimClass", "simulate_class"],
})
