"""ratiofactory: declarative unbinned neural simulation-based inference (NSBI) likelihoods.

A workspace is a JSON document (a superset of pyhf's) plus ONNX density-ratio models
r_j(x) = p_j(x)/p_ref(x) and event files. Its unbinned channels hold samples with analytic
coefficients f_j(θ) (e.g. μ − √μ), normalisation modifiers (normsys, lumi, normfactor)
and per-event shape systematics; its binned channels are pyhf's, sharing parameters by
name. The networks are evaluated once; the likelihood is then an array function of θ on
numpy or jax (``pyhf.set_backend``), with jit and exact gradients on jax.

Main classes (imported on first use):

- ``Workspace``: load and validate a workspace (``Workspace.load(path)``), build its
  ``model()`` and ``data(model)``, ``digest()``.
- ``Model``: ``logpdf(pars, data)`` (pyhf's shape (1,)), scalar ``nll``, ``expected_data(pars)`` and a pyhf-style
  ``config`` (``par_order``, ``suggested_init()``, ``poi_index``, ...).
- ``RatiofactoryError``: the base of every error about the user's input.

Modules: ``infer`` (fits, profile scans, intervals, CLs limits, significance, impacts,
Asimov data), ``toys`` (toys, toy-based CLs, Neyman construction, executors),
``algebra`` (combine, rename, prune), ``publish`` (bundles, verify, unpack),
``hepdata`` (HEPData submissions), ``plots``, ``testing`` (exact ratio graphs for tests),
``schema``, ``events``, ``expressions``, ``interpolation``; the ``ratiofactory`` command
line (``ratiofactory --help``). Documentation: https://ratiofactory.readthedocs.io/

>>> import ratiofactory
>>> ws = ratiofactory.Workspace({"version": "1.0.0", "channels": [{"name": "SR", "samples": [
...     {"name": "sig", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
...     {"name": "bkg", "data": [50.0], "modifiers": []}]}],
...     "observations": [{"name": "SR", "data": [55.0]}],
...     "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]})
>>> model = ws.model()
>>> nll = float(model.nll(model.config.suggested_init(), ws.data(model)))  # -ln L at mu = 1
>>> import math
>>> round(nll, 6) == round(55 - 55 * math.log(55) + math.lgamma(56), 6)  # -ln Pois(55 | 55)
True
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
