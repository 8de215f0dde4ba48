"""Fits of many toys at once, each searching for the global minimum.

On jax, a batch of toys is fitted by one compiled function (:mod:`.newton`): ``jax.vmap``
of projected Newton with exact Hessians, started from the given point and from the best
points of a coarse scan along the POI (``starts``: number of starts, 1 or ``"off"`` for a
single local fit), keeping the lowest minimum. Toys that do not converge within
``max_iter`` are refitted one by one with MIGRAD (:mod:`ratiofactory.infer`) from the same
starts; a toy that still fails is reported (``converged`` False, values NaN), never kept
silently.

On numpy every toy is fitted with MIGRAD in a loop, from the same starts (the same seeds on
the same POI grid), on the sparse likelihood where it applies.

Why several starts: with interference the likelihood is quadratic in √μ and often has two
minima along the POI; a free fit that stays in the wrong one gives a wrong test statistic
(``q = 0`` for background-only toys of the off-shell example whose fit stopped at μ ≈ 2).
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
from ..infer.objective import FitSetup, Objective
from ..model import numpy_backend, traceable_logpdf
from .executors import batches
from .generate import SparseToys, expected_main_data, generate_toys
from .newton import GRID_POINTS, AutodiffEvaluation, build_solver, poi_grid
from .sparse import SparseLikelihood
from .sparse_derivatives import SparseEvaluation

__all__ = ["DEFAULT_STARTS", "BatchFit", "fit_toys", "generate_and_fit", "poi_seeds"]

DEFAULT_STARTS = 3
"""Starts per toy fit with a free POI: the given start and the two best POI seeds."""

_SOLVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class BatchFit:
    """Fits of a batch of toys: ``values`` (n, npars), ``twice_nll`` (n,), ``converged``
    (n,), ``refitted`` (n,: finished by MIGRAD after Newton did not converge), and the
    minimum each start reached: ``start_twice_nll`` and ``start_poi`` (n, starts; the first
    start is the given one, so ``start_twice_nll[:, 0] − twice_nll`` shows what the global
    search gained)."""

    values: np.ndarray
    twice_nll: np.ndarray
    converged: np.ndarray
    refitted: np.ndarray
    start_twice_nll: np.ndarray | None = None
    start_poi: np.ndarray | None = None

    @property
    def n_failed(self) -> int:
        """Toys whose fit did not converge (NaN values)."""
        return int((~self.converged).sum())

    @property
    def n_rescued(self) -> int:
        """Toys whose best minimum is lower (by > 1e-6) than the one reached from the given start."""
        if self.start_twice_nll is None:
            return 0
        first = np.where(np.isfinite(self.start_twice_nll[:, 0]), self.start_twice_nll[:, 0], np.inf)
        return int(np.sum(self.twice_nll < first - 1e-6))


def n_starts(setup: FitSetup, starts: int | str | None = None, options: FitOptions | None = None) -> int:
    """Local fits per toy: ``starts`` (an int, or ``"off"`` for 1), else 1 where ``options``
    (:class:`~ratiofactory.infer.FitOptions`) switch the global search off
    (``global_search=False`` or ``starts=1``), else :data:`DEFAULT_STARTS`; always 1 when
    the POI is fixed or absent."""
    if starts is None:
        local = options is not None and getattr(options, "curve_points", 2) <= 1
        starts = 1 if local else DEFAULT_STARTS
    if starts == "off":
        starts = 1
    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise InvalidFitSetup(f"starts must be a positive number of starts or 'off', got {starts!r}")
    if setup.poi_index is None or setup.fixed[setup.poi_index]:
        return 1
    return int(starts)


def poi_seeds(twice_nll_at: Any, setup: FitSetup, start: np.ndarray, n_seeds: int) -> np.ndarray:
    """The POI seeds of a toy on numpy, as :mod:`.newton` finds them on jax: the local
    minima (best first) of ``twice_nll_at(pars)`` on :func:`~.newton.poi_grid` of the POI's
    bounds, the other parameters at ``start``, then the other grid points by value."""
    lo, hi = setup.bounds[setup.poi_index]
    grid = poi_grid(float(lo), float(hi), GRID_POINTS, np)
    values = np.empty(GRID_POINTS)
    for k, mu in enumerate(grid):
        pars = start.copy()
        pars[setup.poi_index] = mu
        values[k] = twice_nll_at(pars)
    finite = np.isfinite(values)
    left, right = np.append(np.inf, values[:-1]), np.append(values[1:], np.inf)
    local = finite & (values <= left) & (values <= right)
    rank = np.where(local, values, np.where(finite, values + 1e12, np.inf))
    return grid[np.argsort(rank, kind="stable")[:n_seeds]]


def _dense_nll(model: Any) -> tuple[Any, Any, Any]:
    import jax.numpy as jnp

    logpdf, arrays = traceable_logpdf(model)
    return (lambda x, data, arrays: -2.0 * jnp.reshape(logpdf(x, data, arrays), (-1,))[0]), (lambda d, a: d), arrays


def _sparse_nll(sparse: SparseLikelihood) -> tuple[Any, Any, Any]:
    return sparse.twice_nll_gathered, sparse.gather, sparse.arrays


def _solver(model: Any, setup: FitSetup, max_iter: int, edm_tol: float, sparse: SparseLikelihood | None,
            starts: int):
    import jax.numpy as jnp

    key = ("sparse" if sparse else "dense", id(sparse), max_iter, edm_tol, starts, setup.poi_index)
    per_model = _SOLVERS.setdefault(model, {})
    if key not in per_model:
        twice_nll, prepare, arrays = _sparse_nll(sparse) if sparse else _dense_nll(model)
        evaluation = SparseEvaluation(sparse, setup.poi_index) if sparse else AutodiffEvaluation(twice_nll)
        per_model[key] = (build_solver(evaluation, prepare, max_iter, edm_tol, starts, setup.poi_index), arrays)
    solve, arrays = per_model[key]
    box = (jnp.asarray(~setup.fixed), jnp.asarray(setup.bounds[:, 0]), jnp.asarray(setup.bounds[:, 1]))
    return lambda x0, data: solve(x0, data, *box, arrays)


def _sparse_likelihood(model: Any, toy: np.ndarray, pars: np.ndarray, setup: FitSetup | None = None,
                       xp: Any = None) -> SparseLikelihood | None:
    """The sparse likelihood (on ``xp``, default jax) for the bounds of ``setup`` if it covers
    the model and agrees with the dense one on ``toy`` at ``pars`` (checked once per model,
    backend and bounds; the verdict is kept)."""
    if not SparseLikelihood.supports(model):
        return None
    if xp is None:
        import jax.numpy as xp
    bounds = np.asarray(model.config.suggested_bounds() if setup is None else setup.bounds, float)
    key = ("sparse likelihood", xp.__name__, bounds[SparseLikelihood.shape_parameters(model)].tobytes())
    per_model = _SOLVERS.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    per_model[key] = None
    sparse = SparseLikelihood(model, xp, bounds)
    evaluate = sparse.twice_nll if xp is np else _jit(sparse.twice_nll)  # eager jax ops would compile one by one
    value = float(evaluate(xp.asarray(pars), sparse.pack_one(toy), sparse.arrays))
    with numpy_backend():  # the dense reference on numpy: no jax compilations, little memory
        dense = -2.0 * float(np.reshape(np.asarray(model.logpdf(np.asarray(pars, float), np.asarray(toy))), (-1,))[0])
    if not abs(value - dense) <= 1e-9 * max(1.0, abs(dense)):
        return None
    per_model[key] = sparse
    return sparse


def _jit(function: Any) -> Any:
    import jax

    return jax.jit(function)


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
            options: FitOptions | None, objective: Objective | None = None) -> tuple[np.ndarray, float, bool]:
    try:
        result = minimize(objective or Objective(model, toy), setup.with_init(start), _single(options), hesse=False)
    except (FitFailed, InvalidFitSetup):
        return np.full(setup.init.size, np.nan), np.nan, False
    return np.asarray(result.values, dtype=float), float(result.twice_nll), True


def _single(options: FitOptions | None) -> FitOptions:
    """``options`` for one local fit: the starts are chosen here, the same on numpy and jax."""
    from dataclasses import replace

    return replace(options or FitOptions(), global_search=False)


class _SparseObjective(Objective):
    """``−2 ln L`` of one toy through the sparse likelihood on numpy (for MIGRAD)."""

    def __init__(self, model: Any, toy: np.ndarray, sparse: SparseLikelihood) -> None:
        self.model, self.backend, self.has_grad = model, "numpy", False
        self.data = toy
        self.calls = self.nonfinite_calls = 0
        self._last = None
        self._sparse = sparse
        self._inputs = sparse.gather(sparse.pack_one(toy), sparse.arrays)

    def __call__(self, pars: np.ndarray) -> float:
        self.calls += 1
        value = self._sparse.twice_nll_gathered(np.asarray(pars, dtype=float), self._inputs, self._sparse.arrays)
        return self._count(float(value))


def _finite_start(objective: Objective, setup: FitSetup, start: np.ndarray) -> np.ndarray:
    """``start``, or where ``−2 ln L`` of this toy is not finite there, ``setup.init`` or
    else the setup's origin (the first of them where it is finite).

    A conditional toy fit starts from the toy's free fit with the POI moved to the tested
    value; with an interference model that point can give one of the toy's events
    s(x; θ) ≤ 0 (off-shell example: free fit at μ̂ ≈ 0 with k_factor ≈ −4.4, tested at
    μ = 4), where no minimiser can start. Returns ``start`` unchanged if none is finite
    (the fit then fails and is reported)."""
    nonfinite = objective.nonfinite_calls
    for point in (setup.with_init(start).init, setup.init, setup.start_points()):
        if np.isfinite(objective(point)):
            objective.nonfinite_calls = nonfinite  # a rejected start is not a problem of the fit
            return point
    objective.nonfinite_calls = nonfinite
    return start


def _fit_from_starts(model: Any, toy: np.ndarray, setup: FitSetup, start: np.ndarray, n: int,
                     options: FitOptions | None, sparse: SparseLikelihood | None):
    """MIGRAD from ``start`` and ``n − 1`` POI seeds; the best and every start's minimum."""
    objective = _SparseObjective(model, toy, sparse) if sparse is not None else Objective(model, toy)
    points = [_finite_start(objective, setup, np.asarray(start, float))]
    if n > 1:
        start_in = setup.with_init(start).init
        for mu in poi_seeds(objective, setup, start_in, n - 1):
            seeded = start_in.copy()
            seeded[setup.poi_index] = mu
            points.append(seeded)
    fits = [_migrad(model, toy, setup, point, options, objective) for point in points]
    values = np.array([f[1] for f in fits])
    best = int(np.argmin(np.where(np.isfinite(values), values, np.inf)))
    poi = [f[0][setup.poi_index] if setup.poi_index is not None else 0.0 for f in fits]
    return fits[best], values, np.array(poi)


def _loop(model, toys, setup, starts, options, n: int, sparse: bool) -> BatchFit:
    likelihood = None
    if sparse and len(toys):
        likelihood = _sparse_likelihood(model, toys[0], starts[0], setup, np)
    results = [_fit_from_starts(model, toy, setup, start, n, options, likelihood)
               for toy, start in zip(toys, starts, strict=True)]
    count = len(results)
    values = np.array([r[0][0] for r in results]).reshape(count, setup.init.size)
    return BatchFit(values, np.array([r[0][1] for r in results], dtype=float),
                    np.array([r[0][2] for r in results], dtype=bool), np.zeros(count, dtype=bool),
                    np.array([r[1] for r in results]).reshape(count, n), np.array([r[2] for r in results]).reshape(count, n))


_IN_FLIGHT = 2  # batches sent to the solver and not yet collected (bounds the memory of packed toys)


def _vectorised(model: Any, chunks: Iterable[tuple[np.ndarray | SparseToys, np.ndarray]], setup: FitSetup, *,
                batch_size: int, max_iter: int, edm_tol: float, options: FitOptions | None,
                sparse: bool, starts: int) -> tuple[np.ndarray | SparseToys, BatchFit]:
    """Fits on jax of toys arriving in ``chunks`` of (toys, starts). A batch goes to the
    compiled solver without waiting for the previous one: jax runs it while the next chunk is
    generated and packed. Then MIGRAD refits the toys Newton left unconverged. Returns all
    the toys and their fits."""
    import jax.numpy as jnp

    received, done, solver, size, likelihood = [], [], None, 0, None
    pending: deque[tuple[int, Any]] = deque()
    for toys, first_points in chunks:
        if solver is None:
            first = _dense(toys[:1])[0]
            likelihood = _sparse_likelihood(model, first, first_points[0], setup) if sparse else None
            solver = _solver(model, setup, max_iter, edm_tol, likelihood, starts)
            size = _batch_shape(model, max(1, min(batch_size, 1 << (len(toys) - 1).bit_length())), batch_size)
        toys = toys if likelihood is not None else _dense(toys)
        received.append((toys, first_points))
        n = len(toys)
        for first in range(0, n, size):
            rows = slice(first, first + size) if first + size <= n else np.arange(first, first + size).clip(max=n - 1)
            if likelihood is not None:
                rest, idx, w = likelihood.pack(toys[rows])
                data: Any = (jnp.asarray(rest), [jnp.asarray(i) for i in idx], [jnp.asarray(v) for v in w])
            else:
                data = jnp.asarray(toys[rows])
            pending.append((min(size, n - first), solver(jnp.asarray(first_points[rows]), data)))
            while len(pending) > _IN_FLIGHT:
                done.append(_fetch(*pending.popleft()))
    done += [_fetch(*p) for p in pending]
    values, twice_nll, converged, start_nll, start_poi = (np.concatenate([d[k] for d in done]) for k in range(5))
    toys = _concatenate([t for t, _ in received])
    first_points = np.concatenate([s for _, s in received])
    refitted = ~converged
    reference = None  # MIGRAD refits on the numpy sparse likelihood: no compilation for one toy
    if likelihood is not None and refitted.any():
        reference = _sparse_likelihood(model, _dense(toys[:1])[0], first_points[0], setup, np)
    for i in np.flatnonzero(refitted):
        best, start_nll[i], start_poi[i] = _fit_from_starts(model, _dense(toys[i:i + 1])[0], setup, first_points[i],
                                                            starts, options, reference)
        values[i], twice_nll[i], converged[i] = best
    return toys, BatchFit(values, twice_nll, converged, refitted, start_nll, start_poi)


def _fetch(n: int, result: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """The first ``n`` rows of a solver call's outputs, waiting for it."""
    return tuple(np.array(a)[:n] for a in result)


def _concatenate(parts: list[np.ndarray | SparseToys]) -> np.ndarray | SparseToys:
    sparse = [p for p in parts if isinstance(p, SparseToys)]
    if len(sparse) == len(parts):
        return SparseToys.concatenate(sparse)
    return np.concatenate([p.dense() if isinstance(p, SparseToys) else p for p in parts])


def fit_toys(model: Any, toys: np.ndarray | SparseToys, setup: FitSetup, *, init: np.ndarray | None = None,
             batch_size: int = 256, max_iter: int = 50, edm_tol: float = 1e-8,
             options: FitOptions | None = None, sparse: bool = True, starts: int | str | None = None) -> BatchFit:
    """Fit every toy of ``toys`` (rows of an (n, ndata) array, or :class:`SparseToys`) from
    ``setup`` (fixed parameters and bounds apply to all; ``init`` may give one start per toy).

    ``starts``: fits per toy with a free POI — the given start and ``starts − 1`` seeds from a
    scan along the POI, keeping the lowest minimum (default :data:`DEFAULT_STARTS`, or the
    ``starts`` of ``options``; ``"off"`` or 1: a single local fit). On jax: vectorised Newton
    in batches of ``batch_size`` (padded to a power of two, so few compilations serve all),
    MIGRAD for the toys it leaves unconverged. On numpy: MIGRAD per toy and start.
    ``sparse``: evaluate each unbinned channel only on the toy's events of non-zero weight
    (:mod:`.sparse`; ``False`` forces the dense likelihood).

    >>> import numpy as np, pyhf
    >>> from ratiofactory.infer.objective import make_setup
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> from ratiofactory.toys import generate_toys
    >>> fitted = fit_toys(model, generate_toys(model, [1.0, 1.0], 20, seed=1), make_setup(model))
    >>> fitted.values.shape, fitted.n_failed
    ((20, 2), 0)
    """
    if not isinstance(toys, SparseToys):
        toys = np.atleast_2d(np.asarray(toys, dtype=float))
    first_points = _starts(setup, len(toys), init)
    count = n_starts(setup, starts, options)
    if pyhf.get_backend()[0].name != "jax" or len(toys) == 0:
        return _loop(model, _dense(toys), setup, first_points, options, count, sparse)
    return _vectorised(model, [(toys, first_points)], setup, batch_size=batch_size, max_iter=max_iter,
                       edm_tol=edm_tol, options=options, sparse=sparse, starts=count)[1]


def generate_and_fit(model: Any, pars: Any, n_toys: int, seed: int, setup: FitSetup, *, start: int = 0,
                     expected: np.ndarray | None = None, batch_size: int = 256, max_iter: int = 50,
                     edm_tol: float = 1e-8, options: FitOptions | None = None,
                     sparse: bool = True, starts: int | str | None = None) -> tuple[np.ndarray | SparseToys, BatchFit]:
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
        return toys, fit_toys(model, toys, setup, options=options, sparse=sparse, starts=starts)
    return _vectorised(model, (chunk(*span) for span in spans), setup, batch_size=batch_size, max_iter=max_iter,
                       edm_tol=edm_tol, options=options, sparse=sparse, starts=n_starts(setup, starts, options))
