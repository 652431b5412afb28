"""Fixtures for the metric tests: the converted LPIPS weights (made by `make install`)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lpips_weights():
    """Skip unless both converted LPIPS weight files exist (``python -m dejavu.metrics.weights fetch``)."""
    from dejavu.metrics.lpips import NETS, weights_path

    missing = [str(weights_path(n)) for n in NETS if not weights_path(n).is_file()]
    if missing:
        pytest.skip(f"LPIPS weights not converted ({', '.join(missing)}); run python -m dejavu.metrics.weights fetch")
