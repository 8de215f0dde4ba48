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

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import toms748
from scipy.stats import norm

from ..progress import Progress
from .asimov import conditional_asimov
from .errors import InvalidFitSetup
from .fitting import FitOptions, minimize
from .hypotest_results import BANDS, SignificanceResult, UpperLimitResult
from .hypotests import (
    AsymptoticCalculator,
    _check_kind,
    _statistic,
    asymptotic_pvalues,
    prepare_setup,
    require_background_only,
)
from .objective import Objective
from .results import FitResult
from .roots import bracketed_newton

__all__ = ["LimitOutsideRangeWarning", "NonMonotoneCLsWarning", "significance", "upper_limit"]


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
    strict: bool = False,
) -> UpperLimitResult:
    """Observed and expected (−2σ … +2σ) upper limits on the POI where CLs = ``level``,
    with the whole excluded set ``{μ : CLs(μ) < level}`` as a union of intervals.

    Without ``scan``, CLs is computed on a grid over ``search`` (default: the POI's bounds,
    lower end raised to 0; geometric towards the lower end, uniform above, refined around
    local extrema of CLs), and every crossing of ``level`` is refined to ``rtol`` by
    Newton's method with the slopes of the statistics (:mod:`.roots`; TOMS 748 where
    there is none); refinement between grid points whose global searches found one
    minimum uses local fits. With ``scan`` (POI values), CLs is computed there and every
    crossing is interpolated linearly, as pyhf's ``linear_grid_scan`` does for the first.

    The limit itself is where the exclusion reaches the end of the search range: the lower
    edge of the last excluded interval (for a CLs falling monotonically, the one crossing).
    When CLs(μ) is not monotone (interference: the yield can return to the background-only
    one at larger μ) the excluded set has several pieces; a :class:`NonMonotoneCLsWarning`
    (one line) lists them, and ``excluded``/``expected_excluded`` hold them. Crossings
    closer together than the grid spacing can be missed: pass a finer ``scan`` to check.

    A line (observed or one expected band) whose CLs does not cross ``level`` within the
    range has no limit there: it is NaN, ``outside_range`` says ``"above"`` (CLs is still
    above the level at the end of the range: the limit is beyond it) or ``"below"``
    (already excluded at the start), and a :class:`LimitOutsideRangeWarning` names the
    lines; every other line keeps its limit. ``strict=True`` raises
    :class:`InvalidFitSetup` instead, as before.

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> from ratiofactory.infer import hypotest
    >>> limit = upper_limit(model, data)
    >>> round(limit.observed, 3), round(hypotest(model, data, limit.observed).cls, 4)  # CLs = 0.05 there
    (5.688, 0.05)
    """
    _check_kind(test_stat, ("qtilde", "q"))
    if not 0.0 < level < 1.0:
        raise InvalidFitSetup(f"CLs level must lie in (0, 1), got {level}")
    setup = prepare_setup(model, test_stat, poi=poi, init=init, fixed=fixed, bounds=bounds)
    poi_index, name = setup.require_poi()
    calc = AsymptoticCalculator(model, data, setup, test_stat, options)
    targets = [band + float(norm.isf(level * norm.cdf(band))) for band in BANDS]
    if scan is not None:
        values = np.unique(np.asarray(list(scan), dtype=float))
        cls = np.array([[calc.observed_cls(mu), *calc.expected_cls(mu)] for mu in values])
        sets = [_scan_excluded(values, cls[:, k], level) for k in range(len(BANDS) + 1)]
        lo, hi = float(values[0]), float(values[-1])
        method = "scan"
    else:
        lo, hi = search if search is not None else (max(setup.bounds[poi_index][0], 0.0),
                                                   setup.bounds[poi_index][1])
        lo, hi = float(lo), float(hi)
        sets = _root_excluded(calc, level, targets, lo, hi, rtol, atol)
        values, cls = _tested(calc)
        method = "toms748"
    found = [_limit(pieces, lo, hi) for pieces in sets]
    limits = [limit for limit, _ in found]
    result = UpperLimitResult(name, float(level), test_stat, method, limits[0], tuple(limits[1:]),
                              values, cls[:, 0], cls[:, 1:], sets[0], tuple(sets[1:]),
                              tuple(where for _, where in found), (lo, hi))
    if any(where is not None for _, where in found):
        if strict:
            raise InvalidFitSetup(_strict_message(result))
        warnings.warn(LimitOutsideRangeWarning(result.outside_range_message()), stacklevel=2)
    if any(len(pieces) > 1 for pieces in sets):
        warnings.warn(NonMonotoneCLsWarning(result.non_monotone_message()), stacklevel=2)
    return result


class NonMonotoneCLsWarning(UserWarning):
    """CLs(μ) is not monotone: the excluded set has more than one piece."""


class LimitOutsideRangeWarning(UserWarning):
    """The CLs of a line (observed or an expected band) does not cross the level within the
    search range or scan: its limit lies beyond the range (``UpperLimitResult.outside_range``)."""


#: the search grid: this many points halving towards the lower end, and this many uniform
GEOMETRIC_POINTS, UNIFORM_POINTS = 10, 8
#: rounds of grid refinement around local extrema of CLs (each adds two points per extremum)
EXTREMUM_ROUNDS = 2

Pieces = tuple[tuple[float, float], ...]


def _search_grid(lo: float, hi: float) -> list[float]:
    """POI values where CLs is first computed: ``lo``, ``lo + (hi − lo)/2^j`` (limits of
    small signals sit close to ``lo``) and ``UNIFORM_POINTS`` uniform steps (structure at
    large POI values)."""
    width = hi - lo
    points = {lo, hi}
    points |= {lo + width / 2.0**j for j in range(1, GEOMETRIC_POINTS + 1)}
    points |= {lo + width * i / UNIFORM_POINTS for i in range(1, UNIFORM_POINTS)}
    return sorted(points)


def _refined(grid: list[float], values: Callable[[float], float]) -> list[float]:
    """``grid`` plus the midpoints of the cells beside each interior local extremum of
    ``values`` (where a non-monotone CLs may dip across the level between grid points)."""
    for _ in range(EXTREMUM_ROUNDS):
        f = [values(mu) for mu in grid]
        extra = set()
        for i in range(1, len(grid) - 1):
            if (f[i] - f[i - 1]) * (f[i + 1] - f[i]) < 0:
                extra |= {0.5 * (grid[i - 1] + grid[i]), 0.5 * (grid[i] + grid[i + 1])}
        if not extra:
            break
        grid = sorted(set(grid) | extra)
    return grid


def _root_excluded(calc: AsymptoticCalculator, level: float, targets: list[float], lo: float, hi: float,
                   rtol: float, atol: float) -> list[Pieces]:
    """The excluded sets (observed, then each expected band) on [lo, hi].

    An expected band excludes where ``√q_A(μ) > x_k`` with ``x_k = −n_k + Φ⁻¹(1 −
    level·Φ(−n_k))``: all five bands share the one function ``√q_A(μ)``; the observed
    excludes where ``CLs(μ) < level``.
    """
    with Progress(f"upper limit on {calc.setup.poi_name}", None, "POI values") as bar:
        def tested(value: float) -> float:
            bar.update(len({mu for _, mu in calc.cached_values()}))
            return value

        def sqrt_qa(mu: float) -> float:
            return tested(float(np.sqrt(max(calc.asimov_value(mu), 0.0))))

        def observed_cls(mu: float) -> float:
            return tested(calc.observed_cls(mu))

        def above(target: float) -> Callable[[float], float]:
            return lambda mu: sqrt_qa(mu) - target

        def sqrt_qa_and_slope(target: float) -> Callable[[float], tuple[float, float]]:
            def f(mu: float) -> tuple[float, float]:
                root = sqrt_qa(mu)
                return root - target, calc.slope("asimov", mu) / (2.0 * root) if root > 0 else np.nan
            return f

        def cls_and_slope(mu: float) -> tuple[float, float]:
            cls = observed_cls(mu)
            q, q_asimov = calc.observed(mu), calc.asimov_value(mu)
            d_q, d_qa = _cls_partials(q, q_asimov, calc.test_stat)
            return level - cls, -(d_q * calc.slope("observed", mu) + d_qa * calc.slope("asimov", mu))

        grid = _refined(_search_grid(lo, hi), sqrt_qa)
        with calc.refining():
            sets = [_excluded(grid, above(target), rtol, atol, sqrt_qa_and_slope(target)) for target in targets]
        observed_grid = _refined(grid, observed_cls)
        with calc.refining():
            sets.insert(0, _excluded(observed_grid, lambda mu: level - observed_cls(mu), rtol, atol, cls_and_slope))
    return sets


def _cls_partials(q: float, q_asimov: float, test_stat: str) -> tuple[float, float]:
    """(∂CLs/∂q, ∂CLs/∂q_A) of the asymptotic formula, by central differences (no fits)."""
    def cls(a: float, b: float) -> float:
        return asymptotic_pvalues(a, b, test_stat)[2][0]

    h_q, h_a = 1e-6 * max(1.0, q), 1e-6 * max(1.0, q_asimov)
    d_q = (cls(q + h_q, q_asimov) - cls(max(q - h_q, 0.0), q_asimov)) / (q + h_q - max(q - h_q, 0.0))
    d_a = (cls(q, q_asimov + h_a) - cls(q, max(q_asimov - h_a, 0.0))) / (q_asimov + h_a - max(q_asimov - h_a, 0.0))
    return d_q, d_a


def _excluded(grid: list[float], f: Callable[[float], float], rtol: float, atol: float,
              f_and_slope: Callable[[float], tuple[float, float]] | None = None) -> Pieces:
    """The intervals of [grid[0], grid[-1]] where ``f > 0``, each crossing between grid
    points refined by Newton with the slope of ``f`` (``f_and_slope``: 2–4 fits per
    crossing) or by TOMS 748 without one."""
    values = [f(mu) for mu in grid]
    edges: list[tuple[float, float]] = []
    inside = values[0] > 0
    start = grid[0]  # where f becomes positive (the first point if it starts positive)
    for i in range(len(grid) - 1):
        if (values[i + 1] > 0) == inside:
            continue
        a, b = grid[i], grid[i + 1]
        if values[i] == 0 or values[i + 1] == 0:
            crossing = a if values[i] == 0 else b
        elif f_and_slope is not None:
            crossing = bracketed_newton(f_and_slope, a, b, values[i], values[i + 1], xtol=atol, rtol=rtol)
        else:
            crossing = float(toms748(f, a, b, k=2, xtol=atol, rtol=rtol))
        inside = not inside
        if inside:
            start = crossing
        else:
            edges.append((start, crossing))
    if inside:
        edges.append((start, grid[-1]))
    return tuple((float(a), float(b)) for a, b in edges)


def _scan_excluded(mus: np.ndarray, cls: np.ndarray, level: float) -> Pieces:
    """The intervals where CLs < level on a grid scan, crossings interpolated linearly."""
    def crossing(i: int) -> float:
        return float(mus[i] + (level - cls[i]) * (mus[i + 1] - mus[i]) / (cls[i + 1] - cls[i]))

    below = cls < level
    pieces: list[tuple[float, float]] = []
    start = float(mus[0])  # where CLs falls below the level (the first point if it starts below)
    for i in range(mus.size - 1):
        if below[i + 1] == below[i]:
            continue
        if below[i + 1]:
            start = crossing(i)
        else:
            pieces.append((start, crossing(i)))
    if below[-1]:
        pieces.append((start, float(mus[-1])))
    return tuple(pieces)


def _limit(pieces: Pieces, lo: float, hi: float) -> tuple[float, str | None]:
    """The lower edge of the excluded interval that reaches ``hi``, or NaN and where the
    limit lies when there is none in (lo, hi]: ``"above"`` (nothing excluded up to ``hi``)
    or ``"below"`` (excluded all the way from ``lo``)."""
    if not pieces or pieces[-1][1] < hi:
        return float("nan"), "above"
    if pieces[-1][0] <= lo:
        return float("nan"), "below"
    return float(pieces[-1][0]), None


def _strict_message(result: UpperLimitResult) -> str:
    """The error of ``strict=True``: the first line outside the range, in Python terms."""
    lo, hi = result.search_range
    name, level = result.poi, result.level
    label, where = next((label, where) for label, where in zip(result.labels(), result.outside_range, strict=True)
                        if where)
    if result.method == "scan":
        if where == "above":
            return (f"CLs does not cross {level:g} within the scan of {name} [{lo:g}, {hi:g}] ({label});"
                    " extend the scan")
        return f"CLs is below {level:g} over the whole scan of {name} [{lo:g}, {hi:g}] ({label}); extend the scan"
    if where == "above":
        return (f"CLs is still above the level at {name}={hi:g}, the end of the search ({label}); raise the"
                f" POI's upper bound, e.g. bounds={{{name!r}: (0, {2 * hi:g})}}")
    return f"CLs is already below the level at {name}={lo:g} ({label})"


def _tested(calc: AsymptoticCalculator) -> tuple[np.ndarray, np.ndarray]:
    """Every POI value tested, with observed CLs (NaN where not computed) and the
    expected band."""
    mus = sorted({mu for _, mu in calc.cached_values()})
    rows = []
    for mu in mus:
        observed = calc.observed_cls(mu) if calc.has_observed(mu) else np.nan
        rows.append([observed, *calc.expected_cls(mu)])
    return np.array(mus), np.array(rows).reshape(len(mus), len(BANDS) + 1)


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

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> result = significance(model, data)
    >>> round(result.pvalue, 5), round(float(pyhf.infer.hypotest(0.0, data, model, test_stat="q0")), 5)
    (0.09367, 0.09367)
    """
    setup = prepare_setup(model, "q0", poi=poi, init=init, fixed=fixed, bounds=bounds)
    require_background_only(setup, "q0")
    index, name = setup.require_poi()
    objective = Objective(model, data)
    q0, free = _q0(objective, setup, options, "data")
    asimov, _ = conditional_asimov(objective, setup, float(poi_alt), options, start=free.values)
    q0_asimov, _ = _q0(Objective(model, asimov), setup, options, "Asimov data")
    p0, sqrt_qa = float(norm.cdf(-np.sqrt(q0))), float(np.sqrt(q0_asimov))
    band = tuple(float(norm.cdf(-(ts + sqrt_qa))) for ts in (-b for b in BANDS))
    expected = float(norm.cdf(-sqrt_qa))
    return SignificanceResult(name, float(poi_alt), q0, q0_asimov, p0, float(norm.isf(p0)),
                              expected, float(norm.isf(expected)), band, float(free.values[index]))


def _q0(objective: Objective, setup, options, what: str) -> tuple[float, FitResult]:
    free = minimize(objective, setup, options, hesse=False, context=f"free fit to {what}: ")
    null = minimize(objective, setup.with_init(free.values).with_poi_fixed(0.0), options, hesse=False,
                    context=f"background-only fit to {what}: ")
    return _statistic("q0", 0.0, free, null, setup.require_poi()[0]), free
