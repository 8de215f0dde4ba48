"""Profile-likelihood scans in one or two POIs, and Wilks intervals from them.

``t_μ = −2 ln[L(μ, θ̂̂(μ)) / L(μ̂, θ̂)]`` is computed on a grid; each point is
warm-started from its neighbour. :func:`interval` finds every crossing of ``t_μ`` with
the Wilks threshold (bracketed by grid points, then refined by Newton's method on the
profiled function itself, with its slope from the envelope theorem: :mod:`.roots`), so
asymmetric, non-parabolic and disjoint intervals come out right.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([10.0], [50.0], [3.0], validate=False)
>>> scan = profile_scan(model, [65.0] + model.config.auxdata, [0.0, 1.0, 2.0, 3.0, 4.0])
>>> ci = interval(scan)
>>> [round(v, 3) for v in ci.intervals[0]]
[0.668, 2.389]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2

from ..progress import Progress
from .errors import InvalidFitSetup
from .fitting import FitOptions, minimize
from .objective import FitSetup, Objective, make_setup
from .results import FitResult, IntervalResult, ScanResult, ScanResult2D
from .roots import bracketed_newton, poi_slope

__all__ = ["CL_1SIGMA", "CL_2SIGMA", "interval", "profile_scan", "profile_scan_2d"]

#: 68.27 % and 95.45 %: the confidence levels of ±1σ and ±2σ (thresholds 1 and 4 in t_μ)
CL_1SIGMA = float(chi2.cdf(1.0, 1))
CL_2SIGMA = float(chi2.cdf(4.0, 1))

#: t_μ is known to about this precision (MIGRAD's EDM goal 2e-7 at the default tolerance):
#: a crossing where |t_μ − threshold| is below it is found
_FIT_PRECISION = 1e-8

#: a scan point this far below the global minimum (in −2 ln L) triggers a new global fit
_BETTER_MINIMUM = 1e-6


def profile_scan(
    model: Any,
    data: Any,
    poi_values: Iterable[float],
    *,
    poi: str | None = None,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | Iterable[str] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    options: FitOptions | None = None,
) -> ScanResult:
    """Profile ``t_μ`` of the POI (or of parameter ``poi``) at ``poi_values``.

    ``tmu`` is relative to the global minimum; if a scan point finds a lower minimum than
    the global fit, the global fit is redone from there. Values within 1e-6 below zero
    (minimiser noise) are clipped to 0. Raises :class:`InvalidFitSetup` when a scan value
    lies outside the parameter's bounds.

    >>> import math, pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> scan = profile_scan(model, data, [0.0, 2.4, 4.0], fixed={"uncorr_bkguncrt": 1.0})
    >>> t = lambda mu: 2 * (5 * mu + 50 - 62 * math.log(5 * mu + 50) - 62 + 62 * math.log(62))
    >>> [round(float(v), 4) for v in scan.tmu], [round(t(mu), 4) for mu in (0.0, 2.4, 4.0)]
    ([2.6738, 0.0, 0.9513], [2.6738, 0.0, 0.9513])
    """
    setup = make_setup(model, init=init, fixed=fixed, bounds=bounds, poi=poi)
    index, name = setup.require_poi()
    values = _grid(poi_values, setup, index)
    objective = Objective(model, data)
    best = minimize(objective, setup, options, context="global fit: ")
    profiled, twice = _scan_line(objective, setup, index, values, best, options)
    best = _improve_global(objective, setup, best, profiled, twice, options)
    tmu = np.clip(twice - best.twice_nll, 0.0, None)
    profile = _Profile(objective, setup, options, values, profiled, best)
    lo, hi = (float(b) for b in setup.bounds[index])
    return ScanResult(name, values, tmu, twice, profiled, best, profile, bounds=(lo, hi))


def _grid(poi_values: Iterable[float], setup: FitSetup, index: int) -> np.ndarray:
    values = np.unique(np.asarray(list(poi_values), dtype=float))
    name = setup.names[index]
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise InvalidFitSetup(f"scan of {name!r}: need at least one finite value")
    lo, hi = setup.bounds[index]
    if values[0] < lo or values[-1] > hi:
        raise InvalidFitSetup(
            f"scan range [{values[0]:g}, {values[-1]:g}] of {name!r} lies outside its bounds"
            f" [{lo:g}, {hi:g}]; narrow the scan or widen the parameter's bounds"
        )
    return values


class _Profile:
    """``t_μ`` re-profiled at any μ (a conditional fit warm-started from the nearest point
    fitted so far) and its slope ``dt_μ/dμ`` there (:func:`~.roots.poi_slope`)."""

    def __init__(self, objective: Objective, setup: FitSetup, options: FitOptions | None,
                 values: np.ndarray, profiled: np.ndarray, best: FitResult) -> None:
        self.objective, self.setup, self.options, self.best = objective, setup, options, best
        self.index, self.name = setup.require_poi()
        self._fitted = {float(mu): row for mu, row in zip(values, profiled, strict=True)}
        self._results: dict[float, FitResult] = {}

    def fit(self, mu: float) -> FitResult:
        """The conditional fit at ``mu`` (memoised)."""
        mu = float(mu)
        if mu not in self._results:
            start = self._fitted[min(self._fitted, key=lambda m: abs(m - mu))]
            fixed_setup = self.setup.with_init(start).with_poi_fixed(mu)
            self._results[mu] = minimize(self.objective, fixed_setup, self.options, hesse=False,
                                         context=f"profile of {self.name} at {mu:g}: ")
            self._fitted[mu] = self._results[mu].values
        return self._results[mu]

    def __call__(self, mu: float) -> float:
        return self.fit(mu).twice_nll - self.best.twice_nll

    def slope(self, mu: float) -> float:
        """dt_μ/dμ at ``mu``."""
        return poi_slope(self.objective, self.fit(mu).values, self.index, self.setup.bounds)


def _scan_line(objective, setup, index, values, best, options) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-POI fits along ``values``, outward from the point nearest the best fit."""
    profiled = np.empty((values.size, len(setup.names)))
    twice = np.empty(values.size)
    start = int(np.argmin(np.abs(values - best.values[index])))
    with Progress(f"profile scan of {setup.names[index]}", values.size, "points") as bar:
        for order in (range(start, values.size), range(start - 1, -1, -1)):
            previous = best.values
            for i in order:
                fixed_setup = setup.with_init(previous).with_poi_fixed(values[i])
                result = minimize(objective, fixed_setup, options, hesse=False,
                                  context=f"profile scan at {setup.names[index]}={values[i]:g}: ")
                profiled[i], twice[i] = result.values, result.twice_nll
                previous = result.values
                bar.advance()
    return profiled, twice


def _improve_global(objective, setup, best, profiled, twice, options) -> FitResult:
    """Redo the global fit from the lowest scan point if that one is lower."""
    k = int(np.argmin(twice))
    if twice[k] >= best.twice_nll - _BETTER_MINIMUM:
        return best
    again = minimize(objective, setup.with_init(profiled[k]), options, context="global fit (restarted): ")
    return again if again.twice_nll < best.twice_nll else best


def profile_scan_2d(
    model: Any,
    data: Any,
    x_values: Iterable[float],
    y_values: Iterable[float],
    *,
    pois: tuple[str, str],
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | Iterable[str] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    options: FitOptions | None = None,
) -> ScanResult2D:
    """Profile ``t`` on the grid ``x_values × y_values`` of the two parameters ``pois``.

    Points are visited row by row in a snake order so that each fit starts from its
    neighbour. Compare ``tmu`` with the 2-dof Wilks thresholds (``ScanResult2D.inside``).

    >>> import numpy as np, pyhf
    >>> model = pyhf.simplemodels.correlated_background([5.0], [50.0], [55.0], [45.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> scan = profile_scan_2d(model, data, [1.0, 2.0], [0.0, 0.5], pois=("mu", "correlated_bkg_uncertainty"))
    >>> nll = lambda pars: float(model.logpdf(np.array(pars), data)[0]) * -1   # pars: (alpha, mu)
    >>> round(float(scan.tmu[1, 1]), 4), round(2 * nll([0.5, 2.0]) - scan.bestfit.twice_nll, 4)
    (0.254, 0.254)
    """
    x_name, y_name = pois
    if x_name == y_name:
        raise InvalidFitSetup(f"profile_scan_2d needs two different parameters, got {x_name!r} twice")
    setup = make_setup(model, init=init, fixed=fixed, bounds=bounds, poi=x_name)
    ix, iy = setup.index(x_name), setup.index(y_name)
    xs, ys = _grid(x_values, setup, ix), _grid(y_values, setup, iy)
    objective = Objective(model, data)
    best = minimize(objective, setup, options, context="global fit: ")
    twice = np.empty((xs.size, ys.size))
    profiled = np.empty((xs.size, ys.size, len(setup.names)))
    previous = best.values
    for i, x in enumerate(xs):
        for j in range(ys.size) if i % 2 == 0 else range(ys.size - 1, -1, -1):
            point = setup.with_init(previous).with_fixed(ix, x).with_fixed(iy, ys[j])
            result = minimize(objective, point, options, hesse=False,
                              context=f"profile scan at {x_name}={x:g}, {y_name}={ys[j]:g}: ")
            twice[i, j], profiled[i, j] = result.twice_nll, result.values
            previous = result.values
    flat = profiled.reshape(-1, len(setup.names))
    best = _improve_global(objective, setup, best, flat, twice.ravel(), options)
    tmu = np.clip(twice - best.twice_nll, 0.0, None)
    return ScanResult2D((x_name, y_name), xs, ys, tmu, twice, best)


def interval(scan: ScanResult, cl: float = CL_1SIGMA, *, threshold: float | None = None) -> IntervalResult:
    """Confidence interval(s) ``{μ : t_μ < threshold}`` from a 1-POI profile scan.

    The threshold is the Wilks value ``chi2.ppf(cl, 1)`` (exactly 1 for the default
    ``cl = CL_1SIGMA`` = 68.27 %, 4 for ``CL_2SIGMA``; note that ``cl=0.6827`` gives 0.99998);
    pass ``threshold`` to override. Every crossing is bracketed by grid points,
    interpolated linearly and, when the scan can re-profile (``scan.profile``), refined
    by Newton's method with the profile's slope (Brent's for a profile without
    ``slope``) to 1e-10 in μ or 1e-8 in ``t_μ``. Returns all disjoint pieces; a piece
    that reaches the end of the scan (not the parameter's bound) is open there
    (``open_ends``, NaN ``errors`` on that side). Needs at least 2 scan points.

    >>> import math, numpy as np, pyhf, scipy.optimize
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> scan = profile_scan(model, data, np.linspace(0, 6, 25), fixed={"uncorr_bkguncrt": 1.0})
    >>> [(lo, hi)] = interval(scan).intervals
    >>> t = lambda mu: 2 * (5 * mu + 50 - 62 * math.log(5 * mu + 50) - 62 + 62 * math.log(62)) - 1
    >>> (round(lo, 3), round(hi, 3)) == (round(scipy.optimize.brentq(t, 0, 2.4), 3),
    ...                                  round(scipy.optimize.brentq(t, 2.4, 6), 3))
    True
    """
    if threshold is None:
        if not 0.0 < cl < 1.0:
            raise InvalidFitSetup(f"confidence level must lie in (0, 1), got {cl}")
        threshold = float(chi2.ppf(cl, 1))
    else:
        cl = float(chi2.cdf(threshold, 1))
    x, d = scan.poi_values, scan.tmu - threshold
    best = float(scan.bestfit.poi_value)
    if x.size < 2:
        raise InvalidFitSetup(f"an interval of {scan.poi!r} needs a scan of at least 2 distinct points,"
                              f" got {x.size}; scan a range around the best fit {best:g}")
    inside = d < 0
    if not inside.any():
        where = (f"the best fit {best:g} lies {'below' if best < x[0] else 'above'} the scan"
                 f" [{x[0]:g}, {x[-1]:g}]: scan a range containing it" if not x[0] <= best <= x[-1]
                 else f"scan a finer grid around the best fit {best:g}")
        raise InvalidFitSetup(f"no scan point of {scan.poi!r} has t_mu < {threshold:g}; {where}")
    crossing = _crossing_finder(scan, threshold)
    lower_bound, upper_bound = scan.bounds if scan.bounds is not None else (-np.inf, np.inf)
    pieces, open_ends = [], []
    for first, last in _runs(inside):
        lo = x[0] if first == 0 else crossing(first - 1, first)
        hi = x[-1] if last == x.size - 1 else crossing(last, last + 1)
        pieces.append((float(lo), float(hi)))
        # at the scan's end the interval goes on beyond it, unless that end is the bound
        open_ends.append((first == 0 and x[0] > lower_bound, last == x.size - 1 and x[-1] < upper_bound))
    return IntervalResult(scan.poi, float(cl), float(threshold), best, tuple(pieces), tuple(open_ends),
                          scan.profile is not None, (float(x[0]), float(x[-1])))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in ``mask``."""
    runs, start = [], None
    for i, flag in enumerate(mask):
        if flag and start is None:
            start = i
        if not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, mask.size - 1))
    return runs


def _crossing_finder(scan: ScanResult, threshold: float) -> Callable[[int, int], float]:
    """Crossings of ``t_μ = threshold`` between grid points ``i`` and ``j``: linear
    interpolation without a profile; with one, Newton on the re-profiled ``t_μ`` with its
    slope (:func:`~.roots.bracketed_newton`, 2–4 conditional fits), Brent where the
    profile gives no slope."""
    x, t = scan.poi_values, scan.tmu

    def crossing(i: int, j: int) -> float:
        guess = x[i] + (threshold - t[i]) * (x[j] - x[i]) / (t[j] - t[i])
        profile = scan.profile
        if profile is None:
            return float(guess)
        fa, fb = float(t[i]) - threshold, float(t[j]) - threshold  # the scan's own fits
        if fa == 0.0 or fb == 0.0:
            return float(x[i] if fa == 0.0 else x[j])
        slope = getattr(profile, "slope", None)
        if slope is None:
            return float(brentq(lambda mu: profile(mu) - threshold, float(x[i]), float(x[j]),
                                xtol=1e-10, rtol=1e-12))
        return bracketed_newton(lambda mu: (profile(mu) - threshold, slope(mu)), float(x[i]), float(x[j]),
                                fa, fb, xtol=1e-10, rtol=1e-12, ftol=_FIT_PRECISION)

    return crossing
