"""Shared fixtures: the backend switch and an isolated ONNX cache."""

from __future__ import annotations

import os

import pyhf
import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (tests/test_properties.py): reproducible examples without time
# limits (jax compiles on first use) in every run; the tests set how many. Another
# profile: HYPOTHESIS_PROFILE=... or pytest's --hypothesis-profile.
settings.register_profile(
    "ratiofactory",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # the autouse cache fixture below is per test, harmless to share between examples
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ratiofactory"))


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
