"""Phase unwrapping: LS (DCT / weighted PCG), PCUA, RPUA, the seed's Chebyshev-filtered iterative LS,
SNAPHU, multiscale (coarse SNAPHU/LS + region bridging + full-resolution refinement), tiled unwrapping
with integer-cycle tile offsets, and the cube wrapper (``dask_ops``).

Kernels are pure numpy/scipy on one (y, x) array; NaN = no data everywhere.
"""

from insarcloud._lazy import attach

# Public names by submodule, imported on first use (insarcloud/_lazy.py: keeps the CLI's start light)
__getattr__, __dir__, __all__ = attach(__name__, {
    "_common": ["METHODS", "Method", "UnwrapResult"],
    "api": ["unwrap", "unwrap_ls", "unwrap_result"],
    "chebyshev": ["unwrap_chebyshev"],
    "iterative": ["unwrap_pcua", "unwrap_rpua"],
    "ls": ["wrap"],
    "multiscale": ["unwrap_multiscale"],
})
