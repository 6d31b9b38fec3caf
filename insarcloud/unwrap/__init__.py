"""Phase unwrapping: LS (DCT / weighted PCG), PCUA, RPUA, the seed's Chebyshev-filtered iterative LS,
SNAPHU, tiled unwrapping with integer-cycle tile offsets, and the cube wrapper (``dask_ops``).

Kernels are pure numpy/scipy on one (y, x) array; NaN = no data everywhere.
"""

from insarcloud.unwrap._common import METHODS, Method, UnwrapResult
from insarcloud.unwrap.api import unwrap, unwrap_ls, unwrap_result
from insarcloud.unwrap.chebyshev import unwrap_chebyshev
from insarcloud.unwrap.iterative import unwrap_pcua, unwrap_rpua
from insarcloud.unwrap.ls import wrap

__all__ = [
    "METHODS",
    "Method",
    "UnwrapResult",
    "unwrap",
    "unwrap_chebyshev",
    "unwrap_ls",
    "unwrap_pcua",
    "unwrap_result",
    "unwrap_rpua",
    "wrap",
]
