"""Project errors. Each subclasses a built-in so callers can catch broadly; messages name the
file, pair, key or shape at fault. Stages append their own classes at the end of this file."""

from __future__ import annotations


class InsarcloudError(Exception):
    """Base class of every insarcloud error."""


class ConfigError(InsarcloudError, ValueError):
    """A configuration key, type or value is wrong (the message names the key)."""


class StorageError(InsarcloudError, OSError):
    """An object store or URL cannot be reached, listed, read or written."""


class ProductError(InsarcloudError, ValueError):
    """A LiCSAR product (one GeoTIFF or metadata file) is corrupt, truncated or inconsistent."""


class MissingProductError(ProductError, FileNotFoundError):
    """A product that should be there is not (names the file or the frame)."""


class GridMismatchError(ProductError):
    """A product's CRS, transform or shape differs from its frame's grid."""


class CubeError(InsarcloudError, ValueError):
    """A frame cube is missing, malformed, or does not hold what a stage needs."""


class StageOutputError(CubeError):
    """A stage output cannot be written (misaligned region, existing incompatible output, ...)."""


class InputArrayError(InsarcloudError, ValueError):
    """An array given to a kernel has the wrong shape, dtype, or no valid data."""


class NetworkError(InsarcloudError, ValueError):
    """An interferogram network cannot support the requested operation (no triplets, split, ...)."""


class ConvergenceError(InsarcloudError, RuntimeError):
    """An iterative estimator did not converge."""


class StorageUnavailableError(StorageError):
    """An object store stayed unreachable (connection, timeout, throttling, 5xx) through the whole retry
    budget: the endpoint is at fault, not the file (the message names the endpoint, tries and seconds)."""


class CubeOwnershipError(CubeError):
    """A cube URL holds something ingest did not make (source files, other cubes, another frame's cube):
    it is refused, never cleared (the message names the URL and what was found)."""


class ProductValueError(ProductError):
    """A product's values cannot be what its kind holds (integer or x100-scaled phase, coherence beyond
    0..1): the message names the file, its dtype and the range found."""


class LeaseHeldError(InsarcloudError, RuntimeError):
    """Another writer holds the lease of a cube, stage group or area cube (names the owner and the expiry)."""


class LeaseLostError(InsarcloudError, RuntimeError):
    """A writer's lease was taken over while it held it (it paused past the TTL); its writes are suspect."""


class PairNameError(CubeError, NetworkError):
    """A pair name is not ``YYYYMMDD_YYYYMMDD`` with two real dates, primary first (names the pair).

    Both a cube error and a network error: the one pair-name check (:mod:`insarcloud.core.pairs`) serves the
    cube readers and the network code, whose callers catch either."""
