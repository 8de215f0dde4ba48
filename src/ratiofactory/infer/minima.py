"""Global minimum search: where to start local fits, and which minima are distinct.

NSBI likelihoods of interference analyses are not parabolic: with the coefficients
``μ − √μ``, ``√μ``, ``1 − √μ`` the density is quadratic in ``√μ``, and background-like
data have a second minimum of ``−2 ln L`` (μ ≈ 2 beside μ = 0 in the off-shell example).
The multimodality is along the parameters that enter the coefficients, so the search
runs along them and stays cheap:

1. a local fit from the given start (the model's init, or a warm start);
2. a local fit from every *seed point* whose ``−2 ln L`` is already below that minimum
   (the user's or model's init when the fit was warm-started, and given seeds such as
   the point an Asimov dataset was generated at): one evaluation each;
3. a coarse 1-D curve of ``−2 ln L`` along the free POI (and along every other free
   unconstrained scalar, e.g. a second POI or a free normalisation), the other
   parameters held at the best minimum so far: ``starts`` evaluations per direction,
   on a grid uniform in ``√(μ − lo)`` when the lower bound is ≥ 0 (dense where
   interference minima lie) and uniform otherwise. A local fit starts from every local
   minimum of the curve outside the basin already found.

A unimodal likelihood costs one local fit plus a few evaluations; each extra basin costs
one more local fit. Minima closer than 1 % of a parameter's bound width (or of
``max(1, |θ|)`` for an unbounded one) in every parameter are the same minimum.

>>> grid = curve_grid((0.0, 10.0), 5, 1.0)
>>> [float(v) for v in grid]
[0.0, 0.625, 2.5, 5.625, 10.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .objective import FitSetup, Objective

__all__ = ["LocalFit", "curve_grid", "distinct_minima", "nuisance_grid", "search", "search_directions"]

#: where the curve along an interpolated nuisance parameter is evaluated (pre-fit σ)
NUISANCE_OFFSETS = np.array([-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0])
#: halvings of the curve's intervals around non-convex samples
REFINE_ROUNDS = 3
#: two minima within this fraction of every parameter's scale are the same
SAME_MINIMUM = 0.01
#: a seed point this far below a minimum (in −2 ln L) lies in a better basin
_BELOW = 1e-6
#: minima closer than this in −2 ln L are equally low (MIGRAD's default precision is 2e-7)
TIE = 1e-6


@dataclass
class LocalFit:
    """One local minimisation: where it started and ended, and the minimiser's state
    (a ``Minuit`` object or a scipy result) for the final HESSE/MINOS."""

    start: np.ndarray
    values: np.ndarray
    twice_nll: float
    valid: bool
    nfev: int
    state: Any = None
    notes: list[str] = field(default_factory=list)


def search_directions(setup: FitSetup) -> list[tuple[int, bool]]:
    """(index, is_nuisance) of the free parameters searched along: the POI and the
    unconstrained scalars over their bounds, then the interpolated nuisance parameters
    (constrained around 0) around their current value."""
    found = [] if setup.poi_index is None or setup.fixed[setup.poi_index] else [setup.poi_index]
    found += [k for k in setup.unconstrained if not setup.fixed[k] and k not in found]
    nuisances = [k for k in setup.interpolated if not setup.fixed[k] and k not in found]
    return [(k, False) for k in found] + [(k, True) for k in nuisances]


def curve_grid(bounds: Sequence[float], points: int, centre: float) -> np.ndarray:
    """``points`` values of one parameter inside ``bounds``: uniform in ``√(x − lo)`` when
    ``lo ≥ 0`` (interference minima sit near zero), uniform otherwise; an infinite
    bound is replaced by ``centre ± 10·max(1, |centre|)``."""
    lo, hi = (float(b) for b in bounds)
    reach = 10.0 * max(1.0, abs(centre))
    lo, hi = (lo if np.isfinite(lo) else centre - reach), (hi if np.isfinite(hi) else centre + reach)
    steps = np.linspace(0.0, 1.0, points)
    return lo + (hi - lo) * (steps**2 if lo >= 0.0 else steps)


def nuisance_grid(bounds: Sequence[float], centre: float) -> np.ndarray:
    """``centre`` ± 0.5, 1, 2, 3 (pre-fit σ of a nuisance parameter constrained around 0),
    inside ``bounds``."""
    lo, hi = (float(b) for b in bounds)
    return np.clip(centre + NUISANCE_OFFSETS, lo, hi)


def _curve_seeds(objective: Objective, setup: FitSetup, best: LocalFit, points: int) -> tuple[list[np.ndarray], int]:
    """Start points at the local minima of −2 ln L along each search direction (the other
    parameters at ``best``) other than ``best`` itself, and the number of evaluations.

    All curves are evaluated together (one vectorised call per round on jax). Where a
    sampled curve is not convex, the intervals next to that point are halved (up to
    ``REFINE_ROUNDS`` times), so that a narrow basin between two samples shows up.
    """
    curves = {}
    for k, nuisance in search_directions(setup):
        here = float(best.values[k])
        grid = nuisance_grid(setup.bounds[k], here) if nuisance else curve_grid(setup.bounds[k], points, here)
        near = SAME_MINIMUM * _scales(setup, best.values)[k]  # closer points belong to best's basin
        curves[k] = (here, np.unique(grid[np.abs(grid - here) > near]))
    xs = {k: np.array([here]) for k, (here, _) in curves.items()}
    ys = {k: np.array([best.twice_nll]) for k in curves}
    new = {k: grid for k, (_, grid) in curves.items()}
    evaluations = 0
    for _ in range(REFINE_ROUNDS + 1):
        todo = [(k, x) for k, grid in new.items() for x in grid]
        if not todo:
            break
        trial = np.repeat(best.values[None, :], len(todo), axis=0)
        for row, (k, x) in enumerate(todo):
            trial[row, k] = x
        values = objective.values(trial)
        evaluations += len(todo)
        for k, added in new.items():
            mine = np.array([row for row, (j, _) in enumerate(todo) if j == k], dtype=int)
            order = np.argsort(np.concatenate([xs[k], added]))
            xs[k] = np.concatenate([xs[k], added])[order]
            ys[k] = np.concatenate([ys[k], values[mine]])[order]
        new = {k: _midpoints_where_concave(xs[k], ys[k]) for k in curves}
    seeds = []
    for k, (here, _) in curves.items():
        x, y = xs[k], ys[k]
        for i in range(x.size):
            left = y[i - 1] if i > 0 else np.inf
            right = y[i + 1] if i < x.size - 1 else np.inf
            if x[i] != here and np.isfinite(y[i]) and y[i] <= min(left, right) and y[i] < max(left, right):
                point = best.values.copy()
                point[k] = x[i]
                seeds.append(point)
    return seeds, evaluations


def _midpoints_where_concave(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Midpoints of the intervals next to every sample lying above the chord of its
    neighbours (a finite sample of a convex curve never does)."""
    extra = []
    for i in range(1, xs.size - 1):
        if not np.all(np.isfinite(ys[i - 1:i + 2])):
            continue
        chord = ys[i - 1] + (ys[i + 1] - ys[i - 1]) * (xs[i] - xs[i - 1]) / (xs[i + 1] - xs[i - 1])
        if ys[i] > chord + 1e-9 * (1.0 + abs(ys[i])):
            extra += [0.5 * (xs[i - 1] + xs[i]), 0.5 * (xs[i] + xs[i + 1])]
    return np.setdiff1d(np.unique(np.asarray(extra, dtype=float)), xs)


def _scales(setup: FitSetup, values: np.ndarray) -> np.ndarray:
    width = setup.bounds[:, 1] - setup.bounds[:, 0]
    return np.where(np.isfinite(width), width, np.maximum(1.0, np.abs(values)))


def distinct_minima(fits: Sequence[LocalFit], setup: FitSetup) -> list[LocalFit]:
    """Valid local fits, lowest first, one per distinct minimum.

    Fits that agree within ``TIE`` in −2 ln L count as equally low, and then the earlier
    one wins (the first fit, from the given start, before the seeds): the search changes a
    result only when it finds a minimum lower by more than the fit's precision, so that
    equal likelihoods evaluated differently give the same answer.
    """
    valid = [(i, f) for i, f in enumerate(fits) if f.valid]
    clusters: list[list[tuple[int, LocalFit]]] = []
    for i, candidate in sorted(valid, key=lambda item: item[1].twice_nll):
        scale = _scales(setup, candidate.values)
        for cluster in clusters:
            if np.max(np.abs(candidate.values - cluster[0][1].values) / scale) <= SAME_MINIMUM:
                cluster.append((i, candidate))
                break
        else:
            clusters.append([(i, candidate)])
    chosen = [min(((i, f) for i, f in c if f.twice_nll <= c[0][1].twice_nll + TIE), key=lambda item: item[0])
              for c in clusters]
    lowest = min((f.twice_nll for _, f in chosen), default=np.inf)
    chosen.sort(key=lambda item: (item[1].twice_nll > lowest + TIE, item[1].twice_nll if item[1].twice_nll > lowest + TIE else item[0]))
    return [f for _, f in chosen]


def _lowest(fits: Sequence[LocalFit]) -> LocalFit:
    valid = [f for f in fits if f.valid]
    return min(valid, key=lambda f: f.twice_nll) if valid else fits[0]


def search(objective: Objective, setup: FitSetup, points: int, seeds: Sequence[ArrayLike],
           local: Callable[[FitSetup], LocalFit]) -> tuple[list[LocalFit], int]:
    """Every local fit of the global search (the first from ``setup.init``) and the
    number of extra evaluations of the objective."""
    fits = [local(setup)]
    evaluations = 0
    started = [setup.init]
    for seed in [setup.start_points(), *seeds]:
        point = setup.with_init(np.asarray(seed, dtype=float)).init
        if any(np.allclose(point, s, rtol=0.0, atol=1e-12) for s in started):
            continue
        started.append(point)
        evaluations += 1
        best = _lowest(fits)
        value = objective(point)
        if np.isfinite(value) and (not best.valid or value < best.twice_nll - _BELOW):
            fits.append(local(setup.with_init(point)))
    if points > 1:
        curve_seeds, used = _curve_seeds(objective, setup, _lowest(fits), points)
        evaluations += used
        fits += [local(setup.with_init(point)) for point in curve_seeds]
    return fits, evaluations
