"""Export to RooFit (the checks are in tests/roofit_checks.py), each selection run in a
pytest process of its own.

Imported into the suite's process, ROOT stayed resident for the rest of the session:
~410 MB at import (its libraries and C++ interpreter) and ~90 MB more once RooFit had
built models, which every later module then carried on top of its own peak (the fast
suite's peak RSS was ~1.5 GB). The child process inherits this run's environment and
pytest configuration (pyproject.toml, tests/conftest.py, warnings as errors); a failure
shows the child's report.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT_DIR = Path(__file__).resolve().parents[1]
CHECKS = Path(__file__).resolve().parent / "roofit_checks.py"

if importlib.util.find_spec("ROOT") is None:
    pytest.skip("ROOT is not available (pip install root)", allow_module_level=True)


def _run_checks(selection: str) -> None:
    """pytest on roofit_checks.py with the marker expression ``selection``, in a new process."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", selection, str(CHECKS)]
    result = subprocess.run(command, cwd=ROOT_DIR, capture_output=True, text=True, env=os.environ.copy(),
                            check=False)
    report = result.stdout + result.stderr
    # exit code 5 is "nothing selected", never expected: both selections have checks
    assert result.returncode == 0, f"{' '.join(command)} exited with {result.returncode}:\n{report}"
    assert " passed" in report, report  # not all skipped (a missing sbottom file skips one)


def test_roofit_checks():
    """The fast checks (NLLs of the mixed workspace against ratiofactory's, the reference
    integrals, the off-shell export's names, the written file, the CLI)."""
    _run_checks("not slow")


@pytest.mark.slow  # ~10-20 s: MIGRAD/MINOS on two exports, the off-shell NLL at 20 points, sbottom
def test_roofit_checks_slow():
    """The slow checks: RooFit's fits against ratiofactory's, the off-shell and sbottom NLLs."""
    _run_checks("slow")
