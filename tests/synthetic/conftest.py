"""Fixtures for the synthetic-data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from imagelake.synthetic import ct_series, mr_series

from ._helpers import dciodvfy_messages


@pytest.fixture(name="dciodvfy")
def _dciodvfy(require_tool: Callable[[str], str]) -> Callable[[Path], dict[str, list[str]]]:
    """:func:`dciodvfy_messages` bound to the installed tool (skips, or fails under CI=true)."""
    tool = require_tool("dciodvfy")
    return lambda path: dciodvfy_messages(tool, path)


@pytest.fixture(scope="module")
def ct_small() -> list[pydicom.Dataset]:
    """A 40-slice 128 × 128 CT series (seed 1)."""
    return list(ct_series(40, 128, 128, seed=1))


@pytest.fixture(scope="module")
def mr_small() -> list[pydicom.Dataset]:
    """A 12-slice 64 × 64 sagittal T2 MR series."""
    return list(mr_series(12, 64, 64, orientation="sagittal", weighting="T2", seed=2))
