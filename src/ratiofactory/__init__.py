"""ratiofactory: declarative unbinned NSBI likelihoods.

A workspace (JSON + ONNX density-ratio models + event files) compiles into a model with
``logpdf(pars, data)`` and ``expected_data(pars)`` on the numpy or jax backend.
"""

from __future__ import annotations

from typing import Any

from .errors import RatiofactoryError

__version__ = "0.1.0"

__all__ = ["Model", "RatiofactoryError", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    # imported on first use, so that `import ratiofactory` stays light
    if name == "Workspace":
        from .workspace import Workspace

        return Workspace
    if name == "Model":
        from .model import Model

        return Model
    raise AttributeError(f"module 'ratiofactory' has no attribute {name!r}")
