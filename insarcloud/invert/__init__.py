"""Network analysis and quality-weighted SBAS / NSBAS inversion (issue 6).

Kernels are numpy/scipy; :mod:`insarcloud.invert.dask_ops` maps them over cube chunks.
"""

from insarcloud.invert.closure import closure_weights, loop_triplets
from insarcloud.invert.network import Network, NetworkReport, analyse_network, build_network
from insarcloud.invert.reference import ReferencePoint, choose_reference
from insarcloud.invert.sbas import DEFAULT_GAMMA, InversionResult, invert_pixels
from insarcloud.invert.weights import WeightMode, coherence_weights, quality_weights, variable_weights

__all__ = [
    "DEFAULT_GAMMA",
    "InversionResult",
    "Network",
    "NetworkReport",
    "ReferencePoint",
    "WeightMode",
    "analyse_network",
    "build_network",
    "choose_reference",
    "closure_weights",
    "coherence_weights",
    "invert_pixels",
    "loop_triplets",
    "quality_weights",
    "variable_weights",
]
