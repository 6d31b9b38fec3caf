"""Unwrapping method names, in a module without numpy/scipy so the CLI can offer them as choices cheaply."""

from __future__ import annotations

from typing import Literal

Method = Literal["ls", "wls", "pcua", "rpua", "chebyshev", "snaphu", "multiscale"]
METHODS: tuple[str, ...] = ("ls", "wls", "pcua", "rpua", "chebyshev", "snaphu", "multiscale")
