"""Compatibility shims for the machines this project runs on.

timm imports ``torchvision`` at import time, for ``FrozenBatchNorm2d`` alone (we never use it).
PyPI's torchvision wheels are linked against the CUDA build of torch and fail to import next to the
CPU build of torch 2.13.0 that the project pins ("operator torchvision::nms does not exist").
Installing the CUDA pair instead costs ~5.5 GB per virtualenv. So when torchvision cannot be
imported we register a minimal stand-in module that provides the one class timm needs, copied from
torchvision (BSD-3-Clause). Where torchvision works (the GPU image with CUDA torch) it is used as is.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
from typing import Any

log = logging.getLogger(__name__)


def _frozen_batchnorm2d() -> type:
    import torch
    from torch import nn

    class FrozenBatchNorm2d(nn.Module):
        """BatchNorm2d with fixed statistics and affine parameters (torchvision.ops.misc)."""

        def __init__(self, num_features: int, eps: float = 1e-5) -> None:
            super().__init__()
            self.eps = eps
            self.register_buffer("weight", torch.ones(num_features))
            self.register_buffer("bias", torch.zeros(num_features))
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.weight.reshape(1, -1, 1, 1)
            b = self.bias.reshape(1, -1, 1, 1)
            rv = self.running_var.reshape(1, -1, 1, 1)
            rm = self.running_mean.reshape(1, -1, 1, 1)
            scale = w * (rv + self.eps).rsqrt()
            return x * scale + (b - rm * scale)

    return FrozenBatchNorm2d


class _StubMeta(type):
    """Classes that answer any attribute with another stub class (for import-time references)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_class(f"{cls.__name__}.{name}")


def _stub_class(name: str) -> type:
    def _refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            f"torchvision.{name} is unavailable: torchvision cannot load beside the CPU build of torch; "
            "insarcloud only needs timm's models (see insarcloud/_compat.py)"
        )

    return _StubMeta(name, (), {"__init__": _refuse})


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "FrozenBatchNorm2d":
            return _frozen_batchnorm2d()
        return _stub_class(f"{self.__name__.removeprefix('torchvision.')}.{name}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []  # a package, so any submodule import resolves through this finder
        module.__dict__["__insarcloud_stub__"] = True
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _install_torchvision_stub() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _StubFinder())


def import_timm() -> Any:
    """Import and return ``timm``, shimming ``torchvision`` when the installed one cannot load."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    try:
        importlib.import_module("torchvision")
    except (ImportError, RuntimeError, OSError) as exc:
        log.debug("torchvision unusable here (%s); using the FrozenBatchNorm2d stand-in", exc)
        _install_torchvision_stub()
    return importlib.import_module("timm")
