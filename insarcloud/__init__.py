"""insarcloud: plateau-scale time-series InSAR from COMET-LiCSAR products on object storage.

Stages (one sub-package each, none imports another): ``io`` (storage, LiCSAR layout, cubes, ingest),
``simulate``, ``qc``, ``unwrap``, ``invert``, ``noise``, ``forecast``. ``pipelines`` (the area job and the
demo; not a stage) and ``cli`` chain them.
"""

__version__ = "0.1.0"
