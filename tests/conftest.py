"""Shared fixtures: the backend switch and an isolated ONNX cache."""

from __future__ import annotations

import pyhf
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its ONNX cache to a fresh temporary directory, never ~/.cache."""
    monkeypatch.setenv("RATIOFACTORY_CACHE_DIR", str(tmp_path_factory.mktemp("ratiocache")))


@pytest.fixture(params=["numpy", "jax"])
def backend(request):
    """Run the test on both backends (float64); restores numpy afterwards."""
    pyhf.set_backend(request.param, precision="64b")
    yield request.param
    pyhf.set_backend("numpy", precision="64b")
