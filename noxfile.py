#!/usr/bin/env -S uv run --script
# /// script
# dependencies = ["nox>=2024.3.2"]
# ///
"""Task runner for contributors: ``nox -s lint``, ``nox -s tests``, ``nox -s wheel``."""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"


@nox.session(default=True)
def lint(session: nox.Session) -> None:
    """The pre-commit hooks (ruff and file checks) on every file."""
    session.install("pre-commit")
    session.run("pre-commit", "run", "--all-files", *session.posargs)


@nox.session(default=True)
def tests(session: nox.Session) -> None:
    """The test suite without the slow tests (pass pytest arguments after ``--``)."""
    session.install(".[test]")
    session.run("pytest", "-q", "-m", "not slow", *session.posargs)


@nox.session(default=False)
def wheel(session: nox.Session) -> None:
    """sdist, then the wheel from it, installed in a fresh venv: load and fit the example."""
    session.run(".ci/check-wheel", external=True)


if __name__ == "__main__":
    nox.main()
