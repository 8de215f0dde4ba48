"""Shared fixtures: the backend switch, an isolated ONNX cache, and the ``slow`` convention.

Tests that take more than ~5 s on a 2-core machine carry ``@pytest.mark.slow``; the
README's fast command (``pytest -q -m "not slow"``) skips them and its second command
(``pytest -q -m slow``) runs only them. For a test parametrized over the ``backend``
fixture (or any other parameter) where only some cases are slow, write
``@pytest.mark.slow_when(backend="jax")``: the cases whose parameters match all the given
values are marked ``slow``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Turn ``slow_when(name=value, ...)`` into ``slow`` on the matching parametrized cases."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for marker in item.iter_markers("slow_when"):
            if marker.kwargs and all(params.get(k) == v for k, v in marker.kwargs.items()):
                item.add_marker(pytest.mark.slow)
                break


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection left alive (the imported libraries and test modules) out of
    the garbage collector's reach: each full collection, such as the one after every module
    below, no longer walks it (0.1-0.25 s each, ~10 s of the fast suite)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test module, drop jax's compiled programs and collect garbage, so that
    the suite's memory stays that of its largest module (~300 MB less at the peak)."""
    yield
    if "jax" in sys.modules:
        import jax

        jax.clear_caches()
    gc.collect()
    _return_freed_memory()


def _return_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc keeps them otherwise, and the
    suite's resident memory would only grow from module to module)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        with contextlib.suppress(OSError, AttributeError):  # not glibc (e.g. musl)
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test left open: pyplot keeps each one until it is closed (the CLI's
    plot commands and a plot whose saving was refused leave theirs), and warns, an error
    here, once more than 20 are open."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


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
