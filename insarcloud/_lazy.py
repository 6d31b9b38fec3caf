"""Lazy package exports (the scientific-python SPEC 1 pattern, as in ``lazy_loader.attach``).

A stage package's ``__init__`` lists its public names by submodule; a name is imported on first access.
``import insarcloud.forecast.command`` then runs ``insarcloud/forecast/__init__.py`` without importing
torch, so the CLI's parser builds in a fraction of a second (``insarcloud --help``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def attach(package: str, submod_attrs: Mapping[str, Sequence[str]]
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` exporting ``submod_attrs[submodule]`` names."""
    owner = {name: sub for sub, names in submod_attrs.items() for name in names}
    public = sorted(owner)

    def __getattr__(name: str) -> Any:
        if name in owner:
            value = getattr(importlib.import_module(f"{package}.{owner[name]}"), name)
        else:
            try:  # a submodule reached as an attribute (``insarcloud.io.cube`` after ``import insarcloud.io``)
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return value

    def __dir__() -> list[str]:
        return list(public)

    return __getattr__, __dir__, list(public)
