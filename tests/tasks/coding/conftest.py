"""Fixtures of the MAT-Coding task tests: the shared benchmark demo file."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def demo(shared_data) -> Path:
    return shared_data / "mat_coding_demo" / "coding_case.json"
