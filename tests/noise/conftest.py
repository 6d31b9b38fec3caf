"""Noise tests share the machine with many others: pin BLAS to one thread (oversubscription made a 100 x 100
Cholesky 50x slower in practice)."""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
