"""Exports of ratiofactory workspaces to other tools.

:func:`to_roofit` / :func:`export_roofit` build a RooWorkspace (RooFit, RooStats, CMS
Combine) of the whole likelihood; they need ROOT (``pip install 'ratiofactory[roofit]'``),
which is imported only when they are called. See docs/export.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportError", "export_roofit", "to_roofit"]

from ._root import ExportError


def to_roofit(workspace: Any, **kwargs: Any) -> Any:
    """The RooWorkspace of ``workspace``: see :func:`ratiofactory.export.roofit.to_roofit`."""
    from .roofit import to_roofit as build

    return build(workspace, **kwargs)


def export_roofit(workspace: Any, path: Any, **kwargs: Any) -> Any:
    """Write the RooWorkspace of ``workspace`` to ``path``: see :func:`ratiofactory.export.roofit.export_roofit`."""
    from .roofit import export_roofit as write

    return write(workspace, path, **kwargs)
