"""Shared fixture for the ebpf-lang tests: the example modules under examples/lang/."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "lang"


@pytest.fixture(scope="session")
def example() -> Callable[[str], ModuleType]:
    """``example("xdp_counter")`` imports ``examples/lang/xdp_counter.py``."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module


@pytest.fixture(scope="session")
def c_source() -> Callable[[str], str]:
    """``c_source("xdp_counter")`` -> the path of the example's C version."""
    return lambda name: str(EXAMPLES / "c" / f"{name}.c")
