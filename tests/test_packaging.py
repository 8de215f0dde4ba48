"""What users install: one version everywhere, a Python range that has what the code uses.

The built distributions (sdist, then the wheel from it, installed in a fresh venv) are
checked by ``.ci/check-wheel``.
"""

from __future__ import annotations

import importlib.resources
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.specifiers import SpecifierSet

import ratiofactory
from ratiofactory.cli import cli

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_written_once():
    project = _pyproject()
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/ratiofactory/__init__.py"


def test_cli_version_is_the_package_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"ratiofactory, version {ratiofactory.__version__}"


@pytest.mark.parametrize(
    ("version", "allowed"),
    [("3.10.11", False), ("3.10.12", True), ("3.11.3", False), ("3.11.4", True), ("3.12.0", True)],
)
def test_requires_python_needs_the_tarfile_data_filter(version, allowed):
    # PEP 706's extraction filters (used by `unpack`): Python 3.12, backported to 3.10.12 and 3.11.4
    assert (version in SpecifierSet(_pyproject()["project"]["requires-python"])) is allowed


def test_this_python_has_the_tarfile_data_filter():
    assert callable(tarfile.data_filter), sys.version


def test_package_ships_schemas_and_py_typed():
    package = importlib.resources.files("ratiofactory")
    assert (package / "py.typed").is_file()
    assert sorted(p.name for p in (package / "schemas" / "1.0.0").iterdir()) == [
        "binned.json", "defs.json", "measurement.json", "unbinned.json", "workspace.json"]
    # the top-level `schemas/` that the docs point to is the package's directory
    assert (ROOT / "schemas").resolve() == (ROOT / "src" / "ratiofactory" / "schemas").resolve()


def test_license_file_matches_the_declared_licence():
    assert _pyproject()["project"]["license"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
