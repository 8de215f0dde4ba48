"""The fit objective −2 ln L(θ).

Every fit in :mod:`ratiofactory.infer` minimises ``−2 ln L`` (MINUIT ``errordef = 1``),
so differences of the objective are directly ``t_μ``-like test statistics and the
covariance is ``C = 2 H⁻¹`` with ``H`` the Hessian of the objective.

On the jax backend the value-and-gradient and the Hessian are jit-compiled once per
model (and, by jax, per data shape) and reused by every later fit of that model; on numpy
the minimiser differentiates numerically. The fit's parameter configuration
(:class:`FitSetup`, :func:`make_setup`) lives in :mod:`.setup` and is importable from here.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> objective = Objective(model, [55.0, 100.0])
>>> round(objective([1.0, 1.0]) - objective([0.0, 1.0]), 4)  # −2 ln L(μ=1) − (−2 ln L(μ=0))
-0.4841
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pyhf

from ..model import traceable_logpdf
from .errors import InvalidFitSetup
from .setup import FitSetup, make_setup, parameter_indices
from .sparse_data import SparseData, sparse_data

__all__ = ["FitSetup", "Objective", "difference_hessian", "make_setup", "parameter_indices"]


# ----------------------------------------------------------------------------- objective

_JAX_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: parameter points per vectorised evaluation of :meth:`Objective.values` on jax
BATCH_POINTS = 32


def _jax_functions(model: Any, pars: Any = None, data: Any = None) -> dict[str, Callable]:
    """jit-compiled value-and-gradient and Hessian of −2 ln L, built once per model.

    Both differentiate one traced function ``twice_nll(pars, data, arrays)`` whose
    per-event arrays are arguments (:func:`~ratiofactory.model.traceable_logpdf`): one
    compilation each per model and data length, shared by every fit, scan point, Asimov
    fit and impact refit of that model (``pars``/``data`` are accepted for callers of the
    earlier signature and unused). The arrays are built eagerly here, outside any trace.
    """
    cached = _JAX_FUNCTIONS.get(model)
    if cached is not None:
        return cached
    import jax
    import jax.numpy as jnp

    logpdf, arrays = traceable_logpdf(model)  # per-event arrays as arguments, not constants

    def twice_nll(pars: Any, data: Any, arrays: Any) -> Any:
        return -2.0 * jnp.reshape(logpdf(pars, data, arrays), (-1,))[0]

    value_and_grad, hessian = jax.jit(jax.value_and_grad(twice_nll)), jax.jit(jax.hessian(twice_nll))
    batch = jax.jit(jax.vmap(twice_nll, in_axes=(0, None, None)))  # compiled on first use only
    functions = {
        "value_and_grad": lambda pars, data: value_and_grad(pars, data, arrays),
        "hessian": lambda pars, data: hessian(pars, data, arrays),
        "values": lambda batch_pars, data: batch(batch_pars, data, arrays),
    }
    _JAX_FUNCTIONS[model] = functions
    return functions


class Objective:
    """``−2 ln L(θ)`` of ``model`` on ``data`` as a function of the full parameter vector.

    Call it with a numpy vector; :meth:`grad` and :meth:`hessian` are exact on jax
    (``has_grad``) and unavailable on numpy. Data that weigh few of the unbinned events
    (observed data, toys) are evaluated on those events only (:mod:`.sparse_data`,
    ``sparse``; ``sparse=False`` always evaluates densely); Asimov data densely.
    """

    sparse: SparseData | None = None

    def __init__(self, model: Any, data: Any, *, sparse: bool = True) -> None:
        tensorlib, _ = pyhf.get_backend()
        self.model = model
        self.backend = str(tensorlib.name)
        self.has_grad = self.backend == "jax"
        self.data = tensorlib.astensor(data)
        self._check_data_length(np.shape(self.data))
        self.calls = 0
        self.nonfinite_calls = 0
        self._last: tuple[bytes, float, np.ndarray] | None = None
        self.sparse = sparse_data(model, np.asarray(self.data), self.backend) if sparse else None
        if self.has_grad:
            _jax_functions(model, model.config.suggested_init(), self.data)

    def _check_data_length(self, shape: tuple[int, ...]) -> None:
        config = self.model.config
        nmain, naux = getattr(config, "nmaindata", None), getattr(config, "nauxdata", None)
        if nmain is None or naux is None:
            return
        if len(shape) != 1 or shape[0] != nmain + naux:
            raise InvalidFitSetup(
                f"data has shape {shape}; the model expects a flat vector of {nmain + naux} numbers"
                f" ({nmain} main data then {naux} auxiliary data)"
            )

    def __call__(self, pars: np.ndarray) -> float:
        if self.has_grad:
            return self._value_and_grad(pars)[0]
        self.calls += 1
        pars = np.asarray(pars, dtype=float)
        if self.sparse is not None and self.sparse.covers(pars):
            return self._count(self.sparse.value(pars))
        value = -2.0 * np.reshape(np.asarray(self.model.logpdf(pars, self.data)), (-1,))[0]
        return self._count(float(value))

    def values(self, points: np.ndarray) -> np.ndarray:
        """``−2 ln L`` at each row of ``points`` (+inf where not finite; not counted as fit
        problems). On jax one vectorised call per ``BATCH_POINTS`` rows (padded, so that it
        compiles once per model) when there are at least ``BATCH_POINTS`` rows; fewer go
        through the compiled value-and-gradient one by one (on two CPU cores a handful of
        those is cheaper than compiling the vectorised program, ~2 s on the off-shell
        example); on numpy a loop."""
        points = np.asarray(points, dtype=float).reshape(-1, len(self.model.config.suggested_init()))
        if not self.has_grad or len(points) < BATCH_POINTS or self.sparse is not None:
            nonfinite = self.nonfinite_calls
            out = np.array([self(p) for p in points])
            self.nonfinite_calls = nonfinite
        else:
            import jax.numpy as jnp

            batch = _jax_functions(self.model)["values"]
            out = np.empty(len(points))
            for start in range(0, len(points), BATCH_POINTS):
                chunk = points[start:start + BATCH_POINTS]
                padded = np.concatenate([chunk, np.repeat(chunk[-1:], BATCH_POINTS - len(chunk), axis=0)])
                out[start:start + len(chunk)] = np.asarray(batch(jnp.asarray(padded), self.data))[:len(chunk)]
            self.calls += len(points)
        return np.where(np.isfinite(out), out, np.inf)

    def grad(self, pars: np.ndarray) -> np.ndarray:
        """Exact gradient (jax only)."""
        return self._value_and_grad(pars)[1]

    def hessian(self, pars: np.ndarray) -> np.ndarray:
        """Hessian of ``−2 ln L`` (jax only), through the compiled exact gradient.

        Central differences of the exact gradient, Richardson-extrapolated, with steps of
        1 % of each parameter's curvature scale (agrees with forward-over-reverse
        ``jax.hessian`` to ~1e-8 relative; 6 gradients per parameter, no second compiled
        program). Where a step makes the likelihood non-finite (a bound, s(x;θ) ≤ 0), the
        exact ``jax.hessian`` is compiled and used instead.
        """
        x = np.asarray(pars, dtype=float)
        hess = difference_hessian(lambda p: self._value_and_grad(p)[1], x)
        if hess is None:
            import jax.numpy as jnp

            if self.sparse is not None and self.sparse.covers(x):
                hess = self.sparse.hessian(jnp.asarray(x, dtype=jnp.float64))
            else:
                hess = _jax_functions(self.model)["hessian"](jnp.asarray(x, dtype=jnp.float64), self.data)
        return np.asarray(hess, dtype=float)

    def _value_and_grad(self, pars: np.ndarray) -> tuple[float, np.ndarray]:
        pars = np.asarray(pars, dtype=float)
        key = pars.tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        import jax.numpy as jnp

        self.calls += 1
        if self.sparse is not None and self.sparse.covers(pars):
            value, grad = self.sparse.value_and_grad(jnp.asarray(pars))
        else:
            value, grad = _jax_functions(self.model)["value_and_grad"](jnp.asarray(pars), self.data)
        result = (self._count(float(value)), np.asarray(grad, dtype=float))
        self._last = (key, *result)
        return result

    def _count(self, value: float) -> float:
        if not np.isfinite(value):
            self.nonfinite_calls += 1
        return value


def difference_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                       fraction: float = 0.01) -> np.ndarray | None:
    """Hessian from an exact gradient: ``(4 D(h/2) − D(h)) / 3`` with the central difference
    ``D(h) = (g(x + h e_i) − g(x − h e_i)) / 2h`` (error O(h⁴)), ``h_i`` a ``fraction`` of
    the curvature scale ``√(2/H_ii)`` estimated with a first small step. Where one side is
    not finite (a parameter on a bound where the likelihood ends, e.g. √μ at μ = 0), the
    one-sided ``(−3g(x) + 4g(x ± h) − g(x ± 2h)) / 2h`` on the other side. None where no
    column can be formed.

    >>> hess = difference_hessian(lambda x: np.array([2 * x[0] + x[1], x[0] + 6 * x[1] ** 2]),
    ...                           np.array([1.0, 2.0]))
    >>> np.round(hess, 9).tolist()
    [[2.0, 1.0], [1.0, 24.0]]
    """
    n = x.size
    hess = np.empty((n, n))
    g0: list[np.ndarray] = []

    def at(i: int, h: float) -> np.ndarray:
        step = np.zeros(n)
        step[i] = h
        return grad(x + step)

    def central(i: int, h: float) -> np.ndarray:
        return (at(i, h) - at(i, -h)) / (2.0 * h)

    def one_sided(i: int, h: float) -> np.ndarray:
        if not g0:
            g0.append(grad(x))
        return (-3.0 * g0[0] + 4.0 * at(i, h) - at(i, 2.0 * h)) / (2.0 * h)

    for i in range(n):
        h = 1e-5 * max(1.0, abs(x[i]))
        curvature = central(i, h)[i]
        if np.isfinite(curvature) and curvature > 0:
            h = fraction * np.sqrt(2.0 / curvature)
        hess[i] = (4.0 * central(i, 0.5 * h) - central(i, h)) / 3.0
        for side in (h, -h):
            if np.all(np.isfinite(hess[i])):
                break
            hess[i] = one_sided(i, 0.1 * side)
    if not np.all(np.isfinite(hess)):
        return None
    return 0.5 * (hess + hess.T)
