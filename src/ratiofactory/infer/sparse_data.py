"""Fits to observed data read only the observed events.

The data vector of an unbinned channel weighs every event of its event set: observed data
weigh the ~1000 observed events 1 and the ~100 000 reference events 0. The dense
likelihood still reads all of them at each evaluation (a reference event with weight 0
adds nothing to ``Σ_i w_i ln s_i``, but it is computed). The sparse likelihood of the toys
(:class:`ratiofactory.toys.sparse.SparseLikelihood`) gathers the events of non-zero
weight once and takes what needs the reference sample (the shape normalisation
integrals) from moments summed once per model: an evaluation then costs the observed
events only (~50x less on the off-shell example). On jax :class:`~.objective.Objective`
uses it for data whose non-zero unbinned weights are at most :data:`SPARSE_FRACTION` of
the events (observed data, toys) and the dense likelihood for the rest (Asimov data weigh
every reference event): there the dense likelihood's chunked pass is the faster one
(4.6 ms against 6.0 ms per value and gradient for Asimov data of the off-shell example).
On numpy the sparse likelihood serves every dataset: with all 100k reference events it
still saves the pass over the reference sample that the dense likelihood makes for the
shape normalisation (8.4 ms against 14.3 ms per evaluation).

The two agree to round-off (tests: 1e-10; on numpy the first evaluation is checked
against the dense one). The precomputed integrals are exact inside the model's bounds of
the shape parameters; a point outside them is evaluated densely.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SPARSE_FRACTION", "SparseData", "sparse_data"]

#: on jax the sparse likelihood serves data whose non-zero unbinned weights are at most
#: this fraction of the unbinned events (on numpy it serves all)
SPARSE_FRACTION = 0.25

#: events of a dataset are padded to a multiple of this (one compiled program serves all
#: datasets of a model up to that size)
PAD_EVENTS = 256

_PER_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SparseData:
    """``−2 ln L`` of one dataset through the sparse likelihood: ``value(pars)`` (numpy),
    ``value_and_grad(pars)`` (jax, compiled once per model and padded size), and
    ``covers(pars)`` (inside the range where the precomputed integrals are exact)."""

    def __init__(self, likelihood: Any, data: np.ndarray, shape_indices: list[int], bounds: np.ndarray,
                 functions: dict[str, Callable] | None) -> None:
        self.likelihood = likelihood
        rest, chosen, weights = likelihood.pack_one(np.asarray(data, dtype=float))
        if functions is None:  # numpy: the events' arrays gathered once
            self.inputs = likelihood.gather((rest, chosen, weights), likelihood.arrays)
        else:  # jax: padded (few compiled shapes), gathered inside the compiled program
            import jax

            sizes = [PAD_EVENTS * max(1, -(-len(i) // PAD_EVENTS)) for i in chosen]
            chosen = [np.pad(i.astype(np.int32), (0, n - len(i))) for i, n in zip(chosen, sizes, strict=True)]
            weights = [np.pad(w, (0, n - len(w))) for w, n in zip(weights, sizes, strict=True)]
            self.inputs = jax.device_put((rest, chosen, weights))
        self._shape_indices = shape_indices
        self._bounds = bounds
        self._functions = functions

    def covers(self, pars: np.ndarray) -> bool:
        """Whether the shape parameters at ``pars`` lie inside the range of the integrals."""
        k = self._shape_indices
        if not k:
            return True
        alpha = np.asarray(pars, dtype=float)[k]
        return bool(np.all(alpha >= self._bounds[k, 0]) and np.all(alpha <= self._bounds[k, 1]))

    def value(self, pars: np.ndarray) -> float:
        """``−2 ln L`` (numpy)."""
        return float(self.likelihood.twice_nll_gathered(np.asarray(pars, dtype=float), self.inputs,
                                                        self.likelihood.arrays))

    def value_and_grad(self, pars: Any) -> tuple[Any, Any]:
        """``−2 ln L`` and its gradient (jax)."""
        assert self._functions is not None
        return self._functions["value_and_grad"](pars, self.inputs, self.likelihood.arrays)

    def hessian(self, pars: Any) -> Any:
        """The exact Hessian (jax; compiled on first use only)."""
        assert self._functions is not None
        return self._functions["hessian"](pars, self.inputs, self.likelihood.arrays)


def sparse_data(model: Any, data: Any, backend: str) -> SparseData | None:
    """A :class:`SparseData` for ``data`` when the model has unbinned channels the sparse
    likelihood covers and the data weigh few of their events; None otherwise."""
    from ..toys.sparse import SparseLikelihood

    if not SparseLikelihood.supports(model):
        return None
    values = np.asarray(data, dtype=float)
    slices = list(model._event_slices)
    events = sum(s.stop - s.start for s in slices)
    nonzero = sum(int(np.count_nonzero(values[s])) for s in slices)
    negative = any(bool(np.any(values[s] < 0)) for s in slices)  # packing keeps weights > 0 only
    if events == 0 or negative or (backend == "jax" and nonzero > SPARSE_FRACTION * events):
        return None
    likelihood, functions = _likelihood(model, backend)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    found = SparseData(likelihood, values, SparseLikelihood.shape_parameters(model), bounds, functions)
    if backend == "numpy":  # one dense evaluation checks the two agree (cheap on numpy)
        pars = np.asarray(model.config.suggested_init(), dtype=float)
        dense = -2.0 * float(np.reshape(np.asarray(model.logpdf(pars, values)), (-1,))[0])
        sparse = found.value(pars)
        if not (np.isfinite(dense) and abs(sparse - dense) <= 1e-9 * max(1.0, abs(dense))):
            return None
    return found


def _likelihood(model: Any, backend: str) -> tuple[Any, dict[str, Callable] | None]:
    """The model's sparse likelihood on ``backend`` (over the model's bounds) and, on jax,
    its compiled value-and-gradient and Hessian; built once per model."""
    per_model = _PER_MODEL.setdefault(model, {})
    if backend in per_model:
        return per_model[backend]
    from ..toys.sparse import SparseLikelihood

    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    if backend != "jax":
        per_model[backend] = (SparseLikelihood(model, np, bounds), None)
        return per_model[backend]
    import jax

    likelihood = SparseLikelihood(model, None, bounds)
    twice_nll = likelihood.twice_nll
    functions = {"value_and_grad": jax.jit(jax.value_and_grad(twice_nll)), "hessian": jax.jit(jax.hessian(twice_nll))}
    per_model[backend] = (likelihood, functions)
    return per_model[backend]
