"""The probability distribution of a model's data vector at fixed parameters: toys.

``model.make_pdf(pars)`` is what pyhf's ``make_pdf`` is for a pyhf model: an object with
``sample(shape)`` (toys) and ``log_prob(data)``. A toy is drawn in the layout of the data
vector (design.md section 2):

- binned main counts and auxdata: pyhf's own distribution of the binned model (Poisson
  counts, its constraint pdfs for the auxdata);
- per-event weights of each unbinned channel: Poisson(expected weight), the expected
  weights being the Asimov weights w_i^ref · s(x_i;θ) of the reference events and 0 for
  the observed events (so their toy weight is 0);
- auxdata of constraints only unbinned channels use: Normal(θ_k, σ_k).

Draws use scipy's global random state through pyhf's backend distributions, so
``numpy.random.seed`` makes toys reproducible exactly as it does for pyhf.

>>> import numpy as np, ratiofactory
>>> ws = ratiofactory.Workspace({"version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [
...         {"name": "s", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
...         {"name": "b", "data": [50.0], "modifiers": []}]}],
...     "observations": [{"name": "SR", "data": [55.0]}],
...     "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]})
>>> model = ws.model()
>>> np.random.seed(1)
>>> model.make_pdf([1.0]).sample((3,)).shape
(3, 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyhf

from .errors import InvalidModel

__all__ = ["ModelPdf", "make_pdf"]


class ModelPdf:
    """The distribution of the data vector of ``model`` at parameters ``pars``."""

    def __init__(self, model: Any, pars: Any) -> None:
        self.model = model
        self.pars = pars
        expected_main = np.asarray(model.expected_actualdata(pars), dtype=float)
        n_binned = model.binned.config.nmaindata if model.binned is not None else 0
        self._binned_pdf = None
        if model.binned is not None:
            self._binned_pdf = model.binned.make_pdf(model.binned_pars(pars))
        self._n_binned_main = n_binned
        rates = expected_main[n_binned:]
        if np.any(rates < 0):
            first = int(np.flatnonzero(rates < 0)[0])
            raise InvalidModel(
                f"negative expected per-event weight at data index {n_binned + first} (s(x;θ) < 0 for a "
                "reference event): no Poisson toys there; see model.nonpositive_events(pars)"
            )
        self._event_rates = rates
        constraints = model._constraints
        self._aux_loc = np.asarray([float(np.asarray(pars)[c[0]]) for c in constraints], dtype=float)
        self._aux_sigma = np.asarray([c[2] for c in constraints], dtype=float)

    def expected_data(self) -> Any:
        """The mean of the distribution: Asimov data at ``pars``."""
        return self.model.expected_data(self.pars)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Any:
        """Toys of shape ``sample_shape + (n_data,)`` in the data vector's layout."""
        tensorlib = pyhf.tensorlib
        sample_shape = tuple(sample_shape)
        parts_main, parts_aux = [], []
        if self._binned_pdf is not None:
            binned = np.asarray(self._binned_pdf.sample(sample_shape), dtype=float)
            parts_main.append(binned[..., : self._n_binned_main])
            parts_aux.append(binned[..., self._n_binned_main :])
        if self._event_rates.size:
            poisson = pyhf.probability.Poisson(tensorlib.astensor(self._event_rates))
            parts_main.append(np.asarray(poisson.sample(sample_shape), dtype=float))
        if self._aux_loc.size:
            normal = pyhf.probability.Normal(tensorlib.astensor(self._aux_loc), tensorlib.astensor(self._aux_sigma))
            parts_aux.append(np.asarray(normal.sample(sample_shape), dtype=float))
        return tensorlib.astensor(np.concatenate(parts_main + parts_aux, axis=-1))

    def log_prob(self, value: Any) -> Any:
        """ln L(pars) of data ``value`` (one vector, or a batch along the leading axes)."""
        value = np.asarray(value, dtype=float)
        if value.ndim == 1:
            return -self.model.nll(self.pars, value)
        flat = value.reshape(-1, value.shape[-1])
        out = np.asarray([-float(self.model.nll(self.pars, row)) for row in flat])
        return pyhf.tensorlib.astensor(out.reshape(value.shape[:-1]))


def make_pdf(model: Any, pars: Any) -> ModelPdf:
    """The distribution of ``model``'s data vector at ``pars`` (see :class:`ModelPdf`)."""
    return ModelPdf(model, pars)
