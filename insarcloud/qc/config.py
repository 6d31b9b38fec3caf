"""QC parameters: the qc stage's one model lives in :mod:`insarcloud.config` (``QcParams``, issue 18); these
names stay for the stage's callers. Validated, never mutated, YAML round-trippable; kernels never see them
(:mod:`insarcloud.qc.dask_ops` unpacks them into typed arguments).
"""

from __future__ import annotations

from insarcloud.config import QcParams as QCParams
from insarcloud.config import RuleParams

__all__ = ["QCParams", "RuleParams"]
