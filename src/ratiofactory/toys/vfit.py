"""Fits of many toys at once.

On jax, a batch of toys is fitted by one compiled function, ``jax.vmap`` of a
bounded-iteration projected Newton method on ``−2 ln L``:

* exact gradient and Hessian (forward-over-reverse, ``jax.jacfwd`` of ``jax.grad``),
* box constraints by projection: a parameter at a bound whose gradient points outward
  is held for that step, the step is clipped into the bounds,
* Levenberg–Marquardt damping ``H + λ diag(H)`` (λ shrinks after an accepted step and
  grows after a rejected one, so a step never increases ``−2 ln L`` and never lands where
  it is +∞),
* per-toy convergence: the Hessian on the free parameters is positive definite and the
  estimated distance to the minimum ``½ gᵀH⁻¹g`` is below ``edm_tol``; then one more
  undamped Newton step takes it to round-off (so results do not depend on the batching).

Newton with exact Hessians converges in a handful of iterations on the few parameters of
a toy fit, each iteration being one pass over the events per toy, so it vectorises
without the data-dependent control flow of MIGRAD. Toys that do not converge within
``max_iter`` are refitted one by one with MIGRAD (:mod:`ratiofactory.infer`); a toy that
still fails is reported (``converged`` False, values NaN), never kept silently.

On numpy every toy is fitted with MIGRAD in a loop.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from ..infer.errors import FitFailed, InvalidFitSetup
from ..infer.fitting import FitOptions, minimize
from ..infer.objective import FitSetup, Objective, _jax_functions
from ..model import traceable_logpdf
from .executors import batches
from .generate import SparseToys, expected_main_data, generate_toys
from .sparse import SparseLikelihood

__all__ = ["BatchFit", "fit_toys", "generate_and_fit"]

_SOLVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class BatchFit:
    """Fits of a batch of toys: ``values`` (n, npars), ``twice_nll`` (n,), ``converged``
    (n,), ``refitted`` (n,: finished by MIGRAD after Newton did not converge)."""

    values: np.ndarray
    twice_nll: np.ndarray
    converged: np.ndarray
    refitted: np.ndarray

    @property
    def n_failed(self) -> int:
        """Toys whose fit did not converge (NaN values)."""
        return int((~self.converged).sum())


def _build_solver(twice_nll: Any, max_iter: int, edm_tol: float):
    """jit(vmap(projected Newton)) for ``twice_nll(x, (data, arrays))``: ``data`` (a pytree)
    per toy, ``arrays`` (the model's per-event arrays, a pytree) shared by all toys."""
    import jax
    import jax.numpy as jnp

    def grad_with_aux(x, data):
        value, grad = jax.value_and_grad(twice_nll)(x, data)
        return grad, (value, grad)

    def value_grad_hess(x, data):
        hess, (value, grad) = jax.jacfwd(grad_with_aux, has_aux=True)(x, data)
        return value, grad, hess

    def reduced(x, g, h, free, lo, hi):
        """Gradient and Hessian on the parameters that may move (identity elsewhere)."""
        held = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        moving = free & ~held
        g_m = jnp.where(moving, g, 0.0)
        h_m = jnp.where(moving[:, None] & moving[None, :], h, 0.0) + jnp.diag(jnp.where(moving, 0.0, 1.0))
        return g_m, h_m

    def diagnose(x, value, g, h, box):
        g_m, h_m = reduced(x, g, h, *box)
        chol = jnp.linalg.cholesky(h_m)
        posdef = jnp.all(jnp.isfinite(chol))
        newton = jax.scipy.linalg.cho_solve((chol, True), g_m)
        edm = 0.5 * jnp.dot(g_m, newton)
        return posdef & jnp.isfinite(value) & (edm < edm_tol) & (edm >= 0)

    def body(state, data, box):
        free, lo, hi = box
        x, value, g, h, lam, iteration, _ = state
        g_m, h_m = reduced(x, g, h, *box)
        diag = jnp.abs(jnp.diag(h_m)) + 1e-12
        step = -jnp.linalg.solve(h_m + jnp.diag(lam * diag), g_m)
        x_new = jnp.where(free, jnp.clip(x + step, lo, hi), x)
        v_new, g_new, h_new = value_grad_hess(x_new, data)
        accept = jnp.isfinite(v_new) & (v_new <= value + 1e-10) & jnp.all(jnp.isfinite(g_new))
        pick = lambda new, old: jnp.where(accept, new, old)
        x, value, g, h = pick(x_new, x), pick(v_new, value), pick(g_new, g), pick(h_new, h)
        lam = jnp.where(accept, jnp.maximum(lam * 0.1, 0.0), jnp.maximum(lam * 10.0, 1e-3))
        return x, value, g, h, lam, iteration + 1, diagnose(x, value, g, h, box)

    def solve_one(x0, data, free, lo, hi, arrays):
        data, box = (data, arrays), (free, lo, hi)
        value, g, h = value_grad_hess(x0, data)
        state = (x0, value, g, h, jnp.asarray(0.0), 0, diagnose(x0, value, g, h, box))
        state = jax.lax.while_loop(lambda s: (~s[6]) & (s[5] < max_iter), lambda s: body(s, data, box), state)
        converged = state[6]
        # one more undamped step: quadratic convergence takes the EDM from < edm_tol to
        # round-off, so the result no longer depends on where the loop happened to stop
        polished = body((*state[:4], jnp.asarray(0.0), *state[5:]), data, box)
        return polished[0], polished[1], converged

    return jax.jit(jax.vmap(solve_one, in_axes=(0, 0, None, None, None, None)))


def _dense_nll(model: Any) -> tuple[Any, Any]:
    import jax.numpy as jnp

    logpdf, arrays = traceable_logpdf(model)
    return (lambda x, inputs: -2.0 * jnp.reshape(logpdf(x, *inputs), (-1,))[0]), arrays


def _sparse_nll(sparse: SparseLikelihood) -> tuple[Any, Any]:
    return (lambda x, inputs: sparse.twice_nll(x, *inputs)), sparse.ratios


def _solver(model: Any, setup: FitSetup, max_iter: int, edm_tol: float, sparse: SparseLikelihood | None):
    import jax.numpy as jnp

    key = ("sparse" if sparse else "dense", max_iter, edm_tol)
    per_model = _SOLVERS.setdefault(model, {})
    if key not in per_model:
        twice_nll, arrays = _sparse_nll(sparse) if sparse else _dense_nll(model)
        per_model[key] = (_build_solver(twice_nll, max_iter, edm_tol), arrays)
    solve, arrays = per_model[key]
    box = (jnp.asarray(~setup.fixed), jnp.asarray(setup.bounds[:, 0]), jnp.asarray(setup.bounds[:, 1]))
    return lambda x0, data: solve(x0, data, *box, arrays)


def _sparse_likelihood(model: Any, toy: np.ndarray, pars: np.ndarray) -> SparseLikelihood | None:
    """The sparse likelihood if it covers the model and agrees with the dense one on ``toy``
    (checked on the first toy fitted with this model; the verdict is kept)."""
    if not SparseLikelihood.supports(model):
        return None
    import jax.numpy as jnp

    per_model = _SOLVERS.setdefault(model, {})
    if "sparse likelihood" in per_model:
        return per_model["sparse likelihood"]
    per_model["sparse likelihood"] = None
    sparse = SparseLikelihood(model)
    rest, idx, w = sparse.pack(toy[None, :])
    packed = (jnp.asarray(rest[0]), [jnp.asarray(i[0]) for i in idx], [jnp.asarray(v[0]) for v in w])
    value = float(sparse.twice_nll(jnp.asarray(pars), packed, sparse.ratios))
    dense = -2.0 * float(np.reshape(np.asarray(model.logpdf(jnp.asarray(pars), jnp.asarray(toy))), (-1,))[0])
    if abs(value - dense) > 1e-9 * max(1.0, abs(dense)):
        return None
    per_model["sparse likelihood"] = sparse
    return sparse


def _batch_shape(model: Any, needed: int, batch_size: int) -> int:
    """Toys per solver call: a power of two, or a larger one already compiled for this
    model (padding a short last batch is cheaper than compiling for its size)."""
    compiled = _SOLVERS.setdefault(model, {}).setdefault("batch shapes", set())
    size = min((s for s in compiled if needed <= s <= batch_size), default=needed)
    compiled.add(size)
    return size


def _dense(toys: np.ndarray | SparseToys) -> np.ndarray:
    return toys.dense() if isinstance(toys, SparseToys) else toys


def _starts(setup: FitSetup, n: int, init: np.ndarray | None) -> np.ndarray:
    if init is None:
        return np.tile(setup.init, (n, 1))
    init = np.broadcast_to(np.asarray(init, dtype=float), (n, setup.init.size))
    return np.where(setup.fixed, setup.init, np.clip(init, setup.bounds[:, 0], setup.bounds[:, 1]))


def _migrad(model: Any, toy: np.ndarray, setup: FitSetup, start: np.ndarray,
            options: FitOptions | None) -> tuple[np.ndarray, float, bool]:
    try:
        result = minimize(Objective(model, toy), setup.with_init(start), options, hesse=False)
    except (FitFailed, InvalidFitSetup):
        return np.full(setup.init.size, np.nan), np.nan, False
    return np.asarray(result.values, dtype=float), float(result.twice_nll), True


def _loop(model, toys, setup, starts, options) -> BatchFit:
    fits = [_migrad(model, toy, setup, start, options) for toy, start in zip(toys, starts, strict=True)]
    n = len(fits)
    values = np.array([f[0] for f in fits]).reshape(n, setup.init.size)
    return BatchFit(values, np.array([f[1] for f in fits], dtype=float),
                    np.array([f[2] for f in fits], dtype=bool), np.zeros(n, dtype=bool))


_IN_FLIGHT = 2  # batches sent to the solver and not yet collected (bounds the memory of packed toys)


def _vectorised(model: Any, chunks: Iterable[tuple[np.ndarray | SparseToys, np.ndarray]], setup: FitSetup, *,
                batch_size: int, max_iter: int, edm_tol: float, options: FitOptions | None,
                sparse: bool) -> tuple[np.ndarray | SparseToys, BatchFit]:
    """Fits on jax of toys arriving in ``chunks`` of (toys, starts). A batch goes to the
    compiled solver without waiting for the previous one: jax runs it while the next chunk is
    generated and packed. Then MIGRAD refits the toys Newton left unconverged. Returns all
    the toys and their fits."""
    import jax.numpy as jnp

    received, pending, done, solver, size, likelihood = [], deque(), [], None, 0, None
    for toys, starts in chunks:
        if solver is None:
            first = _dense(toys[:1])[0]
            _jax_functions(model, setup.init, jnp.asarray(first))  # eager first evaluation
            likelihood = _sparse_likelihood(model, first, starts[0]) if sparse else None
            solver = _solver(model, setup, max_iter, edm_tol, likelihood)
            size = _batch_shape(model, max(1, min(batch_size, 1 << (len(toys) - 1).bit_length())), batch_size)
        toys = toys if likelihood is not None else _dense(toys)
        received.append((toys, starts))
        n = len(toys)
        for first in range(0, n, size):
            rows = slice(first, first + size) if first + size <= n else np.arange(first, first + size).clip(max=n - 1)
            if likelihood is not None:
                rest, idx, w = likelihood.pack(toys[rows])
                data = (jnp.asarray(rest), [jnp.asarray(i) for i in idx], [jnp.asarray(v) for v in w])
            else:
                data = jnp.asarray(toys[rows])
            pending.append((min(size, n - first), solver(jnp.asarray(starts[rows]), data)))
            while len(pending) > _IN_FLIGHT:
                done.append(_fetch(*pending.popleft()))
    done += [_fetch(*p) for p in pending]
    values, twice_nll, converged = (np.concatenate([d[k] for d in done]) for k in range(3))
    toys = _concatenate([t for t, _ in received])
    starts = np.concatenate([s for _, s in received])
    refitted = ~converged
    for i in np.flatnonzero(refitted):
        start = values[i] if np.all(np.isfinite(values[i])) else starts[i]
        values[i], twice_nll[i], converged[i] = _migrad(model, _dense(toys[i:i + 1])[0], setup, start, options)
    return toys, BatchFit(values, twice_nll, converged, refitted)


def _fetch(n: int, result: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """The first ``n`` rows of a solver call's (values, −2 ln L, converged), waiting for it."""
    return tuple(np.asarray(a)[:n] for a in result)


def _concatenate(parts: list[np.ndarray | SparseToys]) -> np.ndarray | SparseToys:
    return SparseToys.concatenate(parts) if isinstance(parts[0], SparseToys) else np.concatenate(parts)


def fit_toys(model: Any, toys: np.ndarray | SparseToys, setup: FitSetup, *, init: np.ndarray | None = None,
             batch_size: int = 256, max_iter: int = 50, edm_tol: float = 1e-8,
             options: FitOptions | None = None, sparse: bool = True) -> BatchFit:
    """Fit every toy of ``toys`` (rows of an (n, ndata) array, or :class:`SparseToys`) from
    ``setup`` (fixed parameters and bounds apply to all; ``init`` may give one start per toy).

    On jax: vectorised Newton in batches of ``batch_size`` (batches are padded to a power of
    two, so few compilations serve all), MIGRAD for the toys it leaves unconverged. On numpy:
    MIGRAD per toy. ``sparse``: for unbinned models without per-event shape systematics,
    evaluate each toy only on its events of non-zero weight (:mod:`.sparse`).
    """
    if not isinstance(toys, SparseToys):
        toys = np.atleast_2d(np.asarray(toys, dtype=float))
    starts = _starts(setup, len(toys), init)
    if pyhf.get_backend()[0].name != "jax" or len(toys) == 0:
        return _loop(model, _dense(toys), setup, starts, options)
    return _vectorised(model, [(toys, starts)], setup, batch_size=batch_size, max_iter=max_iter, edm_tol=edm_tol,
                       options=options, sparse=sparse)[1]


def generate_and_fit(model: Any, pars: Any, n_toys: int, seed: int, setup: FitSetup, *, start: int = 0,
                     expected: np.ndarray | None = None, batch_size: int = 256, max_iter: int = 50,
                     edm_tol: float = 1e-8, options: FitOptions | None = None,
                     sparse: bool = True) -> tuple[np.ndarray | SparseToys, BatchFit]:
    """Toys ``start … start + n_toys − 1`` at ``pars`` (:func:`~.generate.generate_toys`) and
    their fits (:func:`fit_toys`): on jax the next batch is generated while this one is fitted.
    Returns the toys (:class:`SparseToys` where the sparse likelihood applies) and the fits.

    >>> from ratiofactory.infer.objective import make_setup
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> toys, fits = generate_and_fit(model, [1.0, 1.0], 3, 7, make_setup(model))
    >>> fits.values.shape, bool(fits.converged.all())
    ((3, 2), True)
    """
    pars = np.asarray(pars, dtype=float)
    expected = expected_main_data(model, pars) if expected is None else expected
    use_sparse = sparse and SparseLikelihood.supports(model)

    def chunk(first: int, n: int) -> tuple[np.ndarray | SparseToys, np.ndarray]:
        return (generate_toys(model, pars, n, seed, start=first, expected=expected, sparse=use_sparse),
                _starts(setup, n, None))

    spans = batches(n_toys, batch_size, start)
    if pyhf.get_backend()[0].name != "jax" or not spans:
        toys = chunk(start, n_toys)[0]
        return toys, fit_toys(model, toys, setup, options=options)
    return _vectorised(model, (chunk(*span) for span in spans), setup, batch_size=batch_size, max_iter=max_iter,
                       edm_tol=edm_tol, options=options, sparse=sparse)
