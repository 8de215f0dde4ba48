"""Importing ROOT (an optional extra) quietly, with a clear error when it is missing."""

from __future__ import annotations

import functools
import warnings
from typing import Any

from ..errors import RatiofactoryError

__all__ = ["ExportError", "load_root"]


class ExportError(RatiofactoryError, ValueError):
    """A workspace cannot be exported (ROOT missing, or a construct RooFit cannot express)."""


@functools.cache
def load_root() -> Any:
    """The ``ROOT`` module in batch mode, RooFit's INFO/PROGRESS messages off.

    The PyPI wheel of ROOT warns at import that it is an alpha distribution; that warning
    is silenced here (pytest runs with warnings as errors).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import ROOT
    except ImportError:
        raise ExportError(
            "exporting to RooFit needs ROOT (6.32 or newer): pip install 'ratiofactory[roofit]' "
            "(or pip install root)"
        ) from None
    ROOT.gROOT.SetBatch(True)
    ROOT.RooMsgService.instance().setGlobalKillBelow(ROOT.RooFit.WARNING)
    return ROOT
