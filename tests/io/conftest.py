"""io test fixtures beyond tests/conftest.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """``insarcloud.cli.main`` configures the root logger with a handler on the sys.stderr of the moment,
    which is pytest's capture stream in a test: drop it afterwards, or later tests log to a closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
