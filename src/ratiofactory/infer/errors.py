"""Errors raised by :mod:`ratiofactory.infer`.

Both derive from :class:`ratiofactory.errors.RatiofactoryError`, so a command-line
front end can catch every user-facing problem in one place.
"""

from __future__ import annotations

from typing import Any

from ..errors import RatiofactoryError

__all__ = ["FitFailed", "InvalidFitSetup"]


class InvalidFitSetup(RatiofactoryError, ValueError):
    """The fit configuration is inconsistent: an unknown parameter name, an init outside
    its bounds, a scan range outside the bounds, a likelihood that is not finite at the
    starting point..."""


class FitFailed(RatiofactoryError, RuntimeError):
    """The minimiser did not converge.

    ``result`` holds the (invalid) :class:`~ratiofactory.infer.FitResult` of the last
    attempt, for diagnostics; its numbers must not be used as a measurement.
    """

    def __init__(self, message: str, result: Any = None) -> None:
        self.result = result
        super().__init__(message)
