"""Shared fixtures. Real data lives in ../shared/data (never in the repo); tests skip without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data, or skip the test when it is absent (a user's fresh machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def procedural_head():
    """The tiny analytic head, for fast unit tests."""
    from dejavu.head import load_head

    return load_head("procedural")
