"""Running pyhf's tools on ratiofactory models.

A ratiofactory :class:`~ratiofactory.model.Model` has ``pyhf.Model``'s interface:
``logpdf(pars, data)`` of shape ``(1,)``, ``config`` (``poi_index``, ``poi_name``,
``npars``, ``par_names``, ``par_order``, ``par_slice``, ``param_set``,
``suggested_init/bounds/fixed``, ``auxdata``), ``expected_data`` (Asimov) and
``make_pdf(pars).sample(shape)`` (toys). ``pyhf.infer`` and cabinetry's fits and
rankings run on it unchanged, on the numpy and jax backends:

>>> import pyhf, ratiofactory
>>> ws = ratiofactory.Workspace({"version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [
...         {"name": "s", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
...         {"name": "b", "data": [50.0], "modifiers": []}]}],
...     "observations": [{"name": "SR", "data": [55.0]}],
...     "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]})
>>> model = ws.model()
>>> model.logpdf([1.0], ws.data(model)).shape
(1,)
>>> cls = pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde")
>>> round(float(cls), 4)
0.6638

:func:`as_pyhf` is kept for code written when ``logpdf`` returned a scalar; it now
returns the model itself.
"""

from __future__ import annotations

from .model import Model

__all__ = ["as_pyhf"]


def as_pyhf(model: Model) -> Model:
    """``model`` itself: ratiofactory models already have pyhf's interface.

    >>> as_pyhf.__name__
    'as_pyhf'
    """
    return model
