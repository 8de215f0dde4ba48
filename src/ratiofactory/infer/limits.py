"""Upper limits (CLs) and discovery significance, asymptotic.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> limits = upper_limit(model, [52.0] + model.config.auxdata)
>>> round(limits.observed, 3), [round(v, 3) for v in limits.expected]
(3.858, [1.874, 2.537, 3.567, 5.06, 6.953])
>>> z = significance(model, [70.0] + model.config.auxdata)
>>> round(z.significance, 3), round(z.expected_significance, 3)
(2.133, 0.541)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import toms748
from scipy.stats import norm

from .asimov import conditional_asimov
from .errors import InvalidFitSetup
from .fitting import FitOptions, minimize
from .hypotests import AsymptoticCalculator, _check_kind, _statistic, prepare_setup
from .objective import Objective
from .results import BANDS, FitResult, SignificanceResult, UpperLimitResult

__all__ = ["significance", "upper_limit"]


def upper_limit(
    model: Any,
    data: Any,
    *,
    scan: Iterable[float] | None = None,
    search: tuple[float, float] | None = None,
    level: float = 0.05,
    test_stat: str = "qtilde",
    poi: str | None = None,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    options: FitOptions | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-12,
) -> UpperLimitResult:
    """Observed and expected (−2σ … +2σ) upper limits on the POI where CLs = ``level``.

    Without ``scan`` the crossings are found by TOMS 748 root finding on CLs − level,
    inside ``search`` (default: the POI's bounds, lower end raised to 0), to ``rtol``;
    each expected band is bracketed by the closest values already computed. With
    ``scan`` (POI values), CLs is computed there and each limit is interpolated
    linearly at the first downward crossing, as pyhf's ``linear_grid_scan`` does.
    The result lists the CLs values computed at every tested POI value (NaN where the
    root finder did not need one).
    """
    _check_kind(test_stat, ("qtilde", "q"))
    if not 0.0 < level < 1.0:
        raise InvalidFitSetup(f"CLs level must lie in (0, 1), got {level}")
    setup = prepare_setup(model, test_stat, poi=poi, init=init, fixed=fixed, bounds=bounds)
    calc = AsymptoticCalculator(model, data, setup, test_stat, options)
    funcs: list[Callable[[float], float]] = [calc.observed_cls]
    funcs += [(lambda mu, k=k: calc.expected_cls(mu)[k]) for k in range(len(BANDS))]
    if scan is not None:
        values = np.unique(np.asarray(list(scan), dtype=float))
        cls = np.array([[f(mu) for f in funcs] for mu in values])
        limits = [_interpolated_crossing(values, cls[:, k], level, setup.poi_name) for k in range(len(funcs))]
        method = "scan"
    else:
        lo, hi = search if search is not None else (max(setup.bounds[setup.poi_index][0], 0.0),
                                                   setup.bounds[setup.poi_index][1])
        limits = _root_limits(calc, level, float(lo), float(hi), rtol, atol)
        values, cls = _tested(calc)
        method = "toms748"
    return UpperLimitResult(setup.poi_name, float(level), test_stat, method, limits[0], tuple(limits[1:]),
                            values, cls[:, 0], cls[:, 1:])


def _root_limits(calc: AsymptoticCalculator, level: float, lo: float, hi: float,
                 rtol: float, atol: float) -> list[float]:
    """Observed and expected limits by TOMS 748 root finding.

    An expected limit solves ``CLs_exp,k(μ) = level``, i.e. ``√q_A(μ) = x_k`` with
    ``x_k = −n_k + Φ⁻¹(1 − level·Φ(−n_k))``: all five bands share the one function
    ``√q_A(μ)`` (nearly linear in μ), started from ``μ ≈ σ_A x_k``. The observed limit
    solves ``CLs(μ) = level`` starting from the median expected limit.
    """
    name = calc.setup.poi_name
    sigma = calc.asimov_free.poi_error
    if not (np.isfinite(sigma) and sigma > 0):
        sigma = 0.1 * (hi - lo)
    expected = []
    for band in BANDS:
        target = band + float(norm.isf(level * norm.cdf(band)))
        f = lambda mu, t=target: float(np.sqrt(calc.asimov_value(mu))) - t
        expected.append(_solve(f, lo + sigma * target, lo, hi, rtol, atol, f"expected {band:+d} sigma", name))
    observed = _solve(lambda mu: level - calc.observed_cls(mu), expected[2], lo, hi, rtol, atol, "observed", name)
    return [observed, *expected]


def _solve(f: Callable[[float], float], guess: float, lo: float, hi: float, rtol: float, atol: float,
           what: str, name: str) -> float:
    """Root of an increasing ``f`` in [lo, hi]: bracket by geometric steps from ``guess``."""
    x = min(max(guess, lo), hi)
    if f(x) < 0:  # the root lies above x
        a = b = x
        for _ in range(60):
            if b >= hi:
                raise InvalidFitSetup(
                    f"{what} limit: CLs is still above the level at {name}={hi:g}, the end of the"
                    f" search; raise the POI's upper bound, e.g. bounds={{{name!r}: (0, {2 * hi:g})}}"
                )
            a, b = b, (min(hi, lo + 1.5 * (b - lo)) if b > lo else lo + 0.01 * (hi - lo))
            if f(b) >= 0:
                break
    else:  # the root lies at or below x
        a = b = x
        for _ in range(60):
            if a <= lo:
                raise InvalidFitSetup(f"{what} limit: CLs is already below the level at {name}={lo:g}")
            b, a = a, (lo + (a - lo) / 1.5 if a - lo > 1e-9 * (hi - lo) else lo)
            if f(a) < 0:
                break
    if f(b) == 0.0:
        return float(b)
    return float(toms748(f, a, b, k=2, xtol=atol, rtol=rtol))


def _tested(calc: AsymptoticCalculator) -> tuple[np.ndarray, np.ndarray]:
    """Every POI value the root finder tested, with observed CLs (NaN where not
    computed) and the expected band."""
    mus = sorted({mu for _, mu in calc.cached_values()})
    rows = []
    for mu in mus:
        observed = calc.observed_cls(mu) if calc.has_observed(mu) else np.nan
        rows.append([observed, *calc.expected_cls(mu)])
    return np.array(mus), np.array(rows).reshape(len(mus), len(BANDS) + 1)


def _interpolated_crossing(mus: np.ndarray, cls: np.ndarray, level: float, name: str) -> float:
    for i in range(mus.size - 1):
        if cls[i] >= level > cls[i + 1]:
            return float(mus[i] + (level - cls[i]) * (mus[i + 1] - mus[i]) / (cls[i + 1] - cls[i]))
    raise InvalidFitSetup(
        f"CLs does not cross {level:g} within the scan of {name} [{mus[0]:g}, {mus[-1]:g}]; extend the scan"
    )


def significance(
    model: Any,
    data: Any,
    *,
    poi_alt: float = 1.0,
    poi: str | None = None,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    options: FitOptions | None = None,
) -> SignificanceResult:
    """Discovery significance with ``q₀``: observed ``p₀ = Φ(−√q₀)`` and ``Z = Φ⁻¹(1 − p₀)``,
    and the median expected ones from the Asimov data at ``poi = poi_alt`` (θ̂̂ from the
    observed data), with the ±1σ/±2σ band of expected p-values.

    Agrees with ``pyhf.infer.hypotest(0.0, ..., test_stat="q0", return_expected_set=True)``.
    """
    setup = prepare_setup(model, "q0", poi=poi, init=init, fixed=fixed, bounds=bounds)
    index = setup.poi_index
    objective = Objective(model, data)
    q0, free = _q0(objective, setup, options, "data")
    asimov, _ = conditional_asimov(objective, setup, float(poi_alt), options, start=free.values)
    q0_asimov, _ = _q0(Objective(model, asimov), setup, options, "Asimov data")
    p0, sqrt_qa = float(norm.cdf(-np.sqrt(q0))), float(np.sqrt(q0_asimov))
    band = tuple(float(norm.cdf(-(ts + sqrt_qa))) for ts in (-b for b in BANDS))
    expected = float(norm.cdf(-sqrt_qa))
    return SignificanceResult(setup.poi_name, float(poi_alt), q0, q0_asimov, p0, float(norm.isf(p0)),
                              expected, float(norm.isf(expected)), band, float(free.values[index]))


def _q0(objective: Objective, setup, options, what: str) -> tuple[float, FitResult]:
    free = minimize(objective, setup, options, hesse=False, context=f"free fit to {what}: ")
    null = minimize(objective, setup.with_init(free.values).with_poi_fixed(0.0), options, hesse=False,
                    context=f"background-only fit to {what}: ")
    return _statistic("q0", 0.0, free, null, setup.poi_index), free
