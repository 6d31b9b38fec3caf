"""Network analysis and quality-weighted SBAS / NSBAS inversion (issue 6).

Kernels are numpy/scipy; :mod:`insarcloud.invert.dask_ops` maps them over cube chunks.
"""

from insarcloud._lazy import attach

# Public names by submodule, imported on first use (insarcloud/_lazy.py: keeps the CLI's start light)
__getattr__, __dir__, __all__ = attach(__name__, {
    "closure": ["closure_weights", "loop_triplets"],
    "network": ["Network", "NetworkReport", "analyse_network", "build_network"],
    "reference": ["ReferencePoint", "choose_reference"],
    "sbas": ["DEFAULT_GAMMA", "InversionResult", "invert_pixels"],
    "weights": ["WeightMode", "coherence_weights", "quality_weights", "variable_weights"],
})
