"""Quicklook PNGs of the stages' outputs (matplotlib, Agg), written beside each group; not a stage.

``figures`` builds matplotlib figures from small arrays (the kernels); ``quicklooks`` reads what a group
needs (chunk-wise Dask reductions) and writes ``{group}/quicklooks/*.png``, listed in ``attrs["quicklooks"]``;
``command`` is ``insarcloud plot``. Stages call ``stage_quicklooks`` after their output is complete.
"""

from insarcloud._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "figures": ["LABEL_STYLE", "Panel", "coherence_matrix_figure", "maps_figure", "network_figure", "png_bytes"],
    "quicklooks": ["default_group", "stage_quicklooks", "write_quicklooks"],
})
