"""Unwrapping method names, in a module without numpy/scipy so the CLI can offer them as choices cheaply."""

from __future__ import annotations

from insarcloud.core.options import UNWRAP_METHODS as METHODS  # noqa: F401 (re-exported)
from insarcloud.core.options import UnwrapMethod as Method  # noqa: F401 (re-exported)
