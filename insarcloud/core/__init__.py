"""Domain facts every stage shares (issue 18), one definition each:

- :mod:`insarcloud.core.pairs`: pair names <-> dates, validation, epochs, closed triplets of a network;
- :mod:`insarcloud.core.phase`: phase wrapping conventions;
- :mod:`insarcloud.core.options`: option literals, default group names, the tile/overlap rule.

Not a stage: any stage (and io, pipelines, config, the CLI) may import it; it imports nothing of the project
but :mod:`insarcloud.errors`, and no dask, zarr, fsspec or torch. Import the submodules: this package imports
none of them, so that ``insarcloud.core.options`` stays free of numpy for the CLI's parser.
"""
