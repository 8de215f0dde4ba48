"""Every docstring example in the package runs (and its printed numbers are checked)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pyhf
import pytest

import ratiofactory

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(ratiofactory.__path__, prefix="ratiofactory.")
    if not info.name.startswith("ratiofactory.cli")
)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.slow_when(name="ratiofactory.toys.neyman")  # a Neyman construction: ~4 s
def test_docstring_examples(name):
    module = importlib.import_module(name)
    try:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finally:
        pyhf.set_backend("numpy")
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
