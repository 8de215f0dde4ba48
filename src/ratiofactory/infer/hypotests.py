"""Profile-likelihood test statistics and asymptotic CLs (Cowan, Cranmer, Gross, Vitells,
arXiv:1007.1727), with pyhf's definitions and conventions.

With ``t = −2 ln[L(μ, θ̂̂(μ)) / L(μ̂, θ̂)]`` (clipped at 0):

=============  =====================================================================
``tmu``        ``t``
``tmu_tilde``  ``t`` with the POI's lower bound raised to 0 (so μ̂ ≥ 0)
``q``          ``t`` if μ̂ ≤ μ, else 0
``qtilde``     ``q`` with the POI's lower bound raised to 0
``q0``         ``t`` at μ = 0 if μ̂ ≥ 0, else 0
=============  =====================================================================

The asymptotic distributions follow pyhf: in the ``−μ̂/σ`` space the statistic is
``√q − √q_A`` (for q̃ above ``q_A``: ``(q − q_A)/(2√q_A)``), with
``CLs+b = Φ(−(ts + √q_A))``, ``CLb = Φ(−ts)``, ``CLs = CLs+b/CLb`` and the expected band
at ``ts = 2, 1, 0, −1, −2`` (the −2σ … +2σ expected limits). ``q_A`` is the statistic on
the Asimov data at μ = 0 with θ̂̂(0) from the observed data.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> result = hypotest(model, [52.0] + model.config.auxdata, 1.0)
>>> round(result.cls, 4), [round(v, 4) for v in result.expected_cls]
(0.6222, [0.2254, 0.369, 0.5707, 0.7933, 0.9456])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.stats import norm

from .asimov import conditional_asimov
from .errors import InvalidFitSetup
from .fitting import FitOptions, minimize
from .hypotest_results import BANDS, HypoTestResult
from .objective import FitSetup, Objective, make_setup
from .results import FitResult
from .roots import poi_slope

__all__ = ["TEST_STATISTICS", "AsymptoticCalculator", "asymptotic_pvalues", "compute_teststat", "hypotest"]

TEST_STATISTICS = ("qtilde", "q", "q0", "tmu", "tmu_tilde")
_TILDE = ("qtilde", "tmu_tilde")

#: the test-statistic values (in −μ̂/σ space) of the −2σ … +2σ expected limits
_BAND_TS = tuple(-b for b in BANDS)


def _check_kind(test_stat: str, allowed: Sequence[str] = TEST_STATISTICS) -> None:
    if test_stat not in allowed:
        raise InvalidFitSetup(f"unknown test statistic {test_stat!r}; use one of {', '.join(allowed)}")


def prepare_setup(model: Any, test_stat: str, *, poi, init, fixed, bounds) -> FitSetup:
    """Fit setup for a test statistic: a POI is required; tilde statistics bound it below by 0."""
    setup = make_setup(model, init=init, fixed=fixed, bounds=bounds, poi=poi)
    index = setup._require_poi()
    if setup.fixed[index]:
        raise InvalidFitSetup(f"the POI {setup.poi_name!r} is fixed; a hypothesis test needs it free")
    lo, hi = setup.bounds[index]
    if test_stat in _TILDE and lo < 0:
        if hi <= 0:
            raise InvalidFitSetup(f"{test_stat} needs {setup.poi_name!r} > 0 allowed; its bounds are [{lo:g}, {hi:g}]")
        setup = setup.with_bounds(index, 0.0, hi)
    return setup


def require_background_only(setup: FitSetup, test_stat: str, value: float = 0.0) -> None:
    """The background-only hypothesis ``poi = value`` (CLb, the Asimov data of CLs, q₀'s
    null) must lie within the POI's bounds; said in those words, not as a fixed value
    outside its bounds deep in a fit."""
    index, name = setup.require_poi()
    lo, hi = setup.bounds[index]
    if not lo <= value <= hi:
        raise InvalidFitSetup(
            f"the background-only hypothesis {name} = {value:g} lies outside the POI's bounds [{lo:g}, {hi:g}]:"
            f" the {test_stat} test needs it (its CLb, Asimov data or null hypothesis), so the bounds of"
            f" {name!r} must include {value:g}")


def _statistic(test_stat: str, poi_value: float, free: FitResult, conditional: FitResult, index: int) -> float:
    t = max(conditional.twice_nll - free.twice_nll, 0.0)
    muhat = free.values[index]
    if test_stat in ("q", "qtilde") and muhat > poi_value:
        return 0.0
    if test_stat == "q0" and muhat < 0:
        return 0.0
    return float(t)


class AsymptoticCalculator:
    """Test statistics on the observed and the Asimov data for one model and dataset.

    The free fits (to data and to Asimov) and the Asimov dataset do not depend on the
    tested value and are computed once; each tested value costs two conditional fits,
    warm-started from the free fits.
    """

    def __init__(self, model: Any, data: Any, setup: FitSetup, test_stat: str,
                 options: FitOptions | None = None, asimov_poi: float = 0.0) -> None:
        _check_kind(test_stat)
        require_background_only(setup, test_stat, asimov_poi)
        self.setup, self.test_stat, self.options = setup, test_stat, options
        self.index, self.poi_name = setup.require_poi()
        self.data = Objective(model, data)
        self.free = minimize(self.data, setup, options, hesse=False, context="free fit to data: ")
        asimov, self.asimov_fit = conditional_asimov(self.data, setup, asimov_poi, options, start=self.free.values)
        self.asimov = Objective(model, asimov)
        self.asimov_free = minimize(self.asimov, setup.with_init(self.asimov_fit.values), options, hesse=False,
                                    context="free fit to Asimov data: ")
        self._cache: dict[tuple[str, float], float] = {}
        self._fits: dict[str, dict[float, np.ndarray]] = {}
        self._one_basin: dict[str, dict[float, bool]] = {}  # searched, and found a single minimum
        self._refining = False

    @contextlib.contextmanager
    def refining(self) -> Iterator[None]:
        """Root refinement between tested POI values: a conditional fit bracketed by two
        fits whose global search found a single minimum is a local fit warm-started from the
        nearest (the basin cannot change between them unless a minimum appears and vanishes
        within one grid step; the grid's own fits all search)."""
        self._refining = True
        try:
            yield
        finally:
            self._refining = False

    def _options(self, what: str, poi_value: float) -> FitOptions | None:
        searched = self._one_basin.get(what, {})
        if not (self._refining and (self.options is None or self.options.global_search)):
            return self.options
        below = [mu for mu in searched if mu < poi_value]
        above = [mu for mu in searched if mu > poi_value]
        if below and above and searched[max(below)] and searched[min(above)]:
            return replace(self.options or FitOptions(), global_search=False)
        return self.options

    def _conditional(self, objective: Objective, what: str, poi_value: float) -> FitResult:
        """Fixed-POI fit, warm-started from the closest POI value fitted before."""
        done = self._fits.setdefault(what, {})
        start = done[min(done, key=lambda mu: abs(mu - poi_value))] if done else None
        if start is None:
            start = (self.free if what == "data" else self.asimov_free).values
        setup = self.setup.with_init(start).with_poi_fixed(poi_value)
        if not np.isfinite(objective(setup.init)):
            # a neighbour's nuisance parameters can make s(x;θ) <= 0 at this POI value
            # (interference): start from the free fit's instead
            free = (self.free if what == "data" else self.asimov_free).values
            setup = self.setup.with_init(free).with_poi_fixed(poi_value)
        options = self._options(what, poi_value)
        result = minimize(objective, setup, options, hesse=False,
                          context=f"fit to {what} at {self.setup.poi_name}={poi_value:g}: ")
        done[poi_value] = result.values
        if options is None or options.global_search:
            self._one_basin.setdefault(what, {})[poi_value] = not result.other_minima
        return result

    def cached_values(self) -> list[tuple[str, float]]:
        """(``"observed"`` or ``"asimov"``, POI value) of every statistic computed so far."""
        return list(self._cache)

    def has_observed(self, poi_value: float) -> bool:
        """Whether the observed statistic at ``poi_value`` is already computed."""
        return ("observed", float(poi_value)) in self._cache

    def observed(self, poi_value: float) -> float:
        """The test statistic on the observed data."""
        key = ("observed", float(poi_value))
        if key not in self._cache:
            fit = self._conditional(self.data, "data", float(poi_value))
            self._cache[key] = _statistic(self.test_stat, poi_value, self.free, fit, self.index)
        return self._cache[key]

    def asimov_value(self, poi_value: float) -> float:
        """The test statistic on the Asimov data."""
        key = ("asimov", float(poi_value))
        if key not in self._cache:
            fit = self._conditional(self.asimov, "Asimov data", float(poi_value))
            self._cache[key] = _statistic(self.test_stat, poi_value, self.asimov_free, fit, self.index)
        return self._cache[key]

    def slope(self, what: str, poi_value: float) -> float:
        """d q/dμ of the statistic on ``"observed"`` or ``"asimov"`` data at ``poi_value``
        (computed before): the slope of the conditional fit's −2 ln L along the POI
        (:func:`~.roots.poi_slope`), 0 where the statistic is clipped to 0."""
        key = (what, float(poi_value))
        if self._cache[key] == 0.0:
            return 0.0
        objective = self.data if what == "observed" else self.asimov
        values = self._fits["data" if what == "observed" else "Asimov data"][float(poi_value)]
        return poi_slope(objective, values, self.index, self.setup.bounds)

    def expected_cls(self, poi_value: float) -> tuple[float, ...]:
        """Expected CLs at the −2σ … +2σ bands (needs only the Asimov fit)."""
        _, _, cls = asymptotic_pvalues(0.0, self.asimov_value(poi_value), self.test_stat, _BAND_TS)
        return tuple(cls)

    def observed_cls(self, poi_value: float) -> float:
        """Observed CLs."""
        q, q_asimov = self.observed(poi_value), self.asimov_value(poi_value)
        return float(asymptotic_pvalues(q, q_asimov, self.test_stat)[2][0])

    def hypotest(self, poi_value: float) -> HypoTestResult:
        """Observed and expected CLs+b, CLb and CLs at ``poi_value``."""
        q, q_asimov = self.observed(poi_value), self.asimov_value(poi_value)
        (clsb,), (clb,), (cls,) = asymptotic_pvalues(q, q_asimov, self.test_stat)
        exp_clsb, exp_clb, exp_cls = asymptotic_pvalues(0.0, q_asimov, self.test_stat, _BAND_TS)
        return HypoTestResult(
            self.poi_name, float(poi_value), self.test_stat, q, q_asimov, cls, clsb, clb,
            tuple(exp_cls), tuple(exp_clsb), tuple(exp_clb), float(self.free.values[self.index]),
        )


def asymptotic_pvalues(q: float, q_asimov: float, test_stat: str,
                       ts: Iterable[float] | None = None) -> tuple[list[float], list[float], list[float]]:
    """(CLs+b, CLb, CLs) for observed ``q`` (or, with ``ts``, at the given values of the
    statistic in −μ̂/σ space, as for the expected band) given the Asimov ``q_asimov``.

    >>> from scipy.stats import norm
    >>> clsb, clb, cls = asymptotic_pvalues(1.0, 4.0, "qtilde")  # q <= q_A: sqrt(q) = 1, sqrt(q_A) = 2
    >>> [round(p, 6) for p in clsb + clb + cls]
    [0.158655, 0.841345, 0.188573]
    >>> round(float(norm.sf(1.0)), 6), round(float(norm.cdf(2.0 - 1.0)), 6)  # CLs+b = 1 - Phi(1), CLb = Phi(2 - 1)
    (0.158655, 0.841345)
    """
    sqrt_q, sqrt_qa = np.sqrt(max(q, 0.0)), np.sqrt(max(q_asimov, 0.0))
    if ts is None:
        if test_stat in ("qtilde", "tmu_tilde") and sqrt_q > sqrt_qa > 0:
            ts = [(q - q_asimov) / (2.0 * sqrt_qa)]
        else:
            ts = [sqrt_q - sqrt_qa]
    ts = np.asarray(list(ts), dtype=float)
    clsb = norm.cdf(-(ts + sqrt_qa))
    clb = norm.cdf(-ts)
    return [float(v) for v in clsb], [float(v) for v in clb], [float(v) for v in clsb / clb]


def compute_teststat(
    model: Any,
    data: Any,
    poi_value: float,
    *,
    test_stat: str = "qtilde",
    poi: str | None = None,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    options: FitOptions | None = None,
) -> float:
    """The value of ``test_stat`` (one of :data:`TEST_STATISTICS`) at ``poi = poi_value``
    (``q0`` always tests 0).

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> q = compute_teststat(model, data, 5.0)
    >>> round(q, 4)
    1.8309
    >>> init, bounds, fixed = (model.config.suggested_init(), model.config.suggested_bounds(),
    ...                        model.config.suggested_fixed())
    >>> round(float(pyhf.infer.test_statistics.qmu_tilde(5.0, data, model, init, bounds, fixed)), 4)
    1.8309
    """
    _check_kind(test_stat)
    setup = prepare_setup(model, test_stat, poi=poi, init=init, fixed=fixed, bounds=bounds)
    poi_value = 0.0 if test_stat == "q0" else float(poi_value)
    objective = Objective(model, data)
    free = minimize(objective, setup, options, hesse=False, context="free fit: ")
    conditional = minimize(objective, setup.with_init(free.values).with_poi_fixed(poi_value), options,
                           hesse=False, context=f"fit at {setup.poi_name}={poi_value:g}: ")
    return _statistic(test_stat, poi_value, free, conditional, setup.require_poi()[0])


def hypotest(
    model: Any,
    data: Any,
    poi_value: float,
    *,
    test_stat: str = "qtilde",
    poi: str | None = None,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    options: FitOptions | None = None,
) -> HypoTestResult:
    """Asymptotic CLs test of ``poi = poi_value`` with ``test_stat`` ``"qtilde"`` or ``"q"``.

    Agrees with ``pyhf.infer.hypotest(..., return_tail_probs=True, return_expected_set=True)``.

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> result = hypotest(model, data, 1.0)
    >>> round(result.cls, 5)
    0.70548
    >>> round(float(pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde")), 5)  # pyhf agrees
    0.70548
    """
    _check_kind(test_stat, ("qtilde", "q"))
    setup = prepare_setup(model, test_stat, poi=poi, init=init, fixed=fixed, bounds=bounds)
    return AsymptoticCalculator(model, data, setup, test_stat, options).hypotest(float(poi_value))
