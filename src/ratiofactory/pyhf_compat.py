"""Running ``pyhf.infer`` on ratiofactory models.

A ratiofactory :class:`~ratiofactory.model.Model` returns a scalar from ``logpdf``;
pyhf's inference indexes ``pdf.logpdf(pars, data)[0]``. :func:`as_pyhf` wraps a model in
a thin adapter whose ``logpdf`` has shape ``(1,)`` and which otherwise forwards
everything pyhf.infer touches: ``config`` (``poi_index``, ``poi_name``, ``npars``,
``par_names``, ``par_slice``, ``suggested_init/bounds/fixed``), ``expected_data``
(Asimov) and ``make_pdf(pars).sample(shape)`` (toys).

>>> import pyhf, ratiofactory
>>> ws = ratiofactory.Workspace({"version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [
...         {"name": "s", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
...         {"name": "b", "data": [50.0], "modifiers": []}]}],
...     "observations": [{"name": "SR", "data": [55.0]}],
...     "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]})
>>> model = ws.model()
>>> pdf = as_pyhf(model)
>>> pdf.logpdf([1.0], ws.data(model)).shape
(1,)
>>> cls = pyhf.infer.hypotest(1.0, ws.data(model), pdf, test_stat="qtilde")
>>> round(float(cls), 4)
0.6638
"""

from __future__ import annotations

from typing import Any

import pyhf

from .model import Model

__all__ = ["PyhfAdapter", "as_pyhf"]


class PyhfAdapter:
    """A :class:`Model` seen through pyhf's ``pyhf.Model`` interface."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.config = model.config

    def logpdf(self, pars: Any, data: Any) -> Any:
        """ln L as a tensor of shape (1,), like ``pyhf.Model.logpdf``."""
        return pyhf.tensorlib.reshape(self.model.logpdf(pars, data), (1,))

    def expected_data(self, pars: Any, include_auxdata: bool = True) -> Any:
        return self.model.expected_data(pars, include_auxdata=include_auxdata)

    def expected_actualdata(self, pars: Any) -> Any:
        return self.model.expected_actualdata(pars)

    def expected_auxdata(self, pars: Any) -> Any:
        return self.model.expected_auxdata(pars)

    def make_pdf(self, pars: Any) -> Any:
        return self.model.make_pdf(pars)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __repr__(self) -> str:
        return f"as_pyhf({self.model!r})"


def as_pyhf(model: Model) -> PyhfAdapter:
    """``model`` with pyhf's ``logpdf`` shape (1,), for ``pyhf.infer`` and other pyhf tools."""
    return PyhfAdapter(model)
