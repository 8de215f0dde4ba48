"""ratiofactory: declarative unbinned NSBI likelihoods.

A workspace (JSON + ONNX density-ratio models + event files) compiles into a model with
``logpdf(pars, data)`` and ``expected_data(pars)`` on the numpy or jax backend.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
