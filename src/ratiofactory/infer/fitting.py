"""Maximum-likelihood fits with iminuit (MIGRAD, HESSE, MINOS) or scipy.

A fit that does not converge raises :class:`~ratiofactory.infer.FitFailed` (its
``result`` attribute keeps the invalid :class:`FitResult` for diagnostics): numbers from
an unconverged fit are never returned as if they were a measurement.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> result = fit(model, [62.0] + model.config.auxdata)
>>> round(result.poi_value, 3), round(result.poi_error, 2), result.valid
(2.4, 1.87, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from iminuit import Minuit

from .errors import FitFailed, InvalidFitSetup
from .local_fits import at_bound, covariance, migrad_finish, migrad_local, scipy_finish, scipy_local
from .minima import TIE, LocalFit, distinct_minima, search
from .objective import FitSetup, Objective, make_setup
from .options import DEFAULT_STARTS, DEFAULT_TOLERANCE, FitOptions
from .results import FitResult, LocalMinimum

__all__ = ["DEFAULT_STARTS", "DEFAULT_TOLERANCE", "FitOptions", "fit", "minimize"]


def fit(
    model: Any,
    data: Any,
    *,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | Iterable[str] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    poi: str | None = None,
    method: str = "minuit",
    hesse: bool = True,
    minos: bool | Sequence[str] = False,
    strategy: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    maxiter: int = 100_000,
    global_search: bool = True,
    starts: int = DEFAULT_STARTS,
    seeds: Sequence[Sequence[float]] = (),
) -> FitResult:
    """Maximum-likelihood fit of ``model`` to ``data`` (minimises ``−2 ln L``).

    ``init``, ``fixed`` and ``bounds`` override the model's suggestions, by parameter
    name (dict) or for the full vector; ``fixed={"lumi": 1.0}`` fixes a parameter at a
    value. ``poi`` names the parameter reported as POI (default: the model's). ``minos``
    is True for all free parameters or a list of names. The fit searches for the global
    minimum inside the bounds (``global_search``, ``starts``: see :class:`FitOptions`);
    ``seeds`` are extra full parameter vectors to start from when they are already below
    the first minimum found (e.g. the point Asimov data were generated at). Raises
    :class:`FitFailed` when no local fit converges and :class:`InvalidFitSetup` for
    inconsistent input.

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> result = fit(model, data, fixed={"uncorr_bkguncrt": 1.0})  # background fixed at 50
    >>> round(float(result.values[0]), 3), round(float(result.errors[0]), 4)
    (2.4, 1.5748)
    >>> round((62 - 50) / 5, 3), round(62**0.5 / 5, 4)  # mu-hat = (n - b)/s, error sqrt(n)/s
    (2.4, 1.5748)
    """
    setup = make_setup(model, init=init, fixed=fixed, bounds=bounds, poi=poi)
    options = FitOptions(method=method, strategy=strategy, tolerance=tolerance, maxiter=maxiter,
                         global_search=global_search, starts=starts)
    return minimize(Objective(model, data), setup, options, hesse=hesse, minos=minos, seeds=seeds)


def minimize(
    objective: Objective,
    setup: FitSetup,
    options: FitOptions | None = None,
    *,
    hesse: bool = True,
    minos: bool | Sequence[str] = False,
    context: str = "",
    seeds: Sequence[Sequence[float]] = (),
) -> FitResult:
    """Minimise a prepared objective from a prepared setup (the engine behind every fit):
    a local fit from ``setup.init`` and, unless ``options.global_search`` is off, the
    global search of :mod:`ratiofactory.infer.minima` (also from ``setup.origin`` and
    ``seeds`` when they lie below the first minimum).

    ``context`` prefixes error messages (e.g. ``"profile scan at mu=1.5: "``).
    """
    options = options or FitOptions()
    _check_finite_start(objective, setup, context)
    if setup.fixed.all():
        return _all_fixed(objective, setup)
    local = scipy_local if options.method == "scipy" else migrad_local

    def run(start: FitSetup) -> LocalFit:
        return local(objective, start, options)

    if options.curve_points > 1 or seeds:
        fits, evaluations = search(objective, setup, options.curve_points, seeds, run)
    else:
        fits, evaluations = [run(setup)], 0
    minima = distinct_minima(fits, setup)
    best = minima[0] if minima else fits[0]
    nfev = evaluations + sum(f.nfev for f in fits)
    if options.global_search and best.valid and at_bound(setup, best.values):
        polished = _polish_at_bound(objective, setup, best, run)
        nfev += polished.nfev - (best.nfev if polished.state is best.state else 0)
        best = polished
    finish = scipy_finish if options.method == "scipy" else migrad_finish
    result = finish(objective, setup, options, best, hesse, minos)
    others = tuple(LocalMinimum(m.values, m.twice_nll, m.twice_nll - result.twice_nll) for m in minima[1:])
    on_bound = at_bound(setup, result.values)
    if on_bound and hesse and objective.has_grad and result.covariance is not None:
        result = _covariance_on_bound(objective, setup, result, on_bound)
    result = replace(result, nfev=nfev, other_minima=others, local_fits=len(fits), at_bound=on_bound,
                     errors=_no_error_on_bound(result.errors, setup, on_bound))
    return _checked(result, context)


def _polish_at_bound(objective: Objective, setup: FitSetup, best: LocalFit,
                     run: Callable[[FitSetup], LocalFit]) -> LocalFit:
    """MIGRAD converges slowly onto a bound (its sine transformation flattens there, and
    its EDM underestimates the distance): refit with the parameters on a bound pinned to
    it (continuing the same MIGRAD, whose covariance estimate is kept), and keep that point
    unless it is higher."""
    pinned = {setup.index(name): float(setup.bounds[setup.index(name)][0 if side == "lower" else 1])
              for name, side in at_bound(setup, best.values).items()}
    if all(setup.fixed[k] or k in pinned for k in range(len(setup.names))):
        return best
    if isinstance(best.state, Minuit):
        m, before = best.state, best.state.nfcn
        for k, value in pinned.items():
            m.fixed[k], m.values[k] = True, value
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            m.migrad(ncall=m.nfcn + 100_000)
        again = LocalFit(best.values, np.array(m.values, dtype=float), float(m.fval), bool(m.valid),
                         best.nfev + m.nfcn - before, m, best.notes)
    else:
        start = setup.with_init(best.values)
        for k, value in pinned.items():
            start = start.with_fixed(k, value)
        again = run(start)
    if again.valid and again.twice_nll <= best.twice_nll + TIE:
        return again
    if again.state is best.state:  # back to the point returned, as it was posed
        best.state.values = best.values
        for k in pinned:
            best.state.fixed[k] = bool(setup.fixed[k])
    return best


def _covariance_on_bound(objective: Objective, setup: FitSetup, result: FitResult,
                         on_bound: dict[str, str]) -> FitResult:
    """The covariance with the parameters on a bound held there (an active constraint,
    not a parabolic minimum), as HESSE gives it on numpy once the fit pinned them: the
    exact Hessian over all free parameters would let the others' errors grow through a
    correlation with a parameter that cannot move past its bound."""
    pinned = setup
    for name in on_bound:
        k = setup.index(name)
        pinned = pinned.with_fixed(k, float(result.values[k]))
    cov, ok = covariance(objective, pinned, result.values, None)
    if cov is None:
        return result
    errors = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return replace(result, covariance=cov, covariance_valid=ok, errors=errors)


def _no_error_on_bound(errors: np.ndarray | None, setup: FitSetup, at_bound: dict[str, str]) -> np.ndarray | None:
    """NaN errors for parameters on a bound: the minimum is not a parabola there (HESSE in
    MINUIT's internal coordinates collapses to ~0, the exact Hessian ignores the bound)."""
    if errors is None or not at_bound:
        return errors
    errors = np.array(errors, dtype=float)
    errors[[setup.index(name) for name in at_bound]] = np.nan
    return errors


def _check_finite_start(objective: Objective, setup: FitSetup, context: str) -> None:
    value = objective(setup.init)
    if not np.isfinite(value):
        shown = ", ".join(f"{n}={v:g}" for n, v in list(zip(setup.names, setup.init, strict=True))[:8])
        more = ", ..." if len(setup.names) > 8 else ""
        if np.isnan(value):  # s(x;θ) <= 0 gives +inf, never NaN
            raise InvalidFitSetup(
                f"{context}-2 ln L is nan at the initial parameters ({shown}{more}): a term of the likelihood is"
                " undefined there (e.g. a constraint of width <= 0 in a model built without the workspace"
                " checks, or a negative expected count in a binned channel); start from other initial values"
            )
        raise InvalidFitSetup(
            f"{context}-2 ln L is {value} at the initial parameters ({shown}{more}): the likelihood"
            " is not finite there (an unbinned channel is +inf where an event has s(x;θ) <= 0,"
            f" e.g. through negative interference coefficients{_nonpositive(objective, setup)});"
            " start from other initial values"
        )


def _nonpositive(objective: Objective, setup: FitSetup) -> str:
    """``"; here 3 events, first: ..."`` from a model that can name its s ≤ 0 events."""
    finder = getattr(objective.model, "nonpositive_events", None)
    if finder is None:
        return ""
    try:
        bad = finder(setup.init, np.asarray(objective.data))
    except Exception:  # noqa: BLE001 (diagnostics must never hide the real error)
        return ""
    if not bad:
        return ""
    first = bad[0]
    return (f"; here {len(bad)} event(s), first: channel {first['channel']!r} {first['set']}"
            f" event {first['event']} with s = {first['s']:.4g}")


def _all_fixed(objective: Objective, setup: FitSetup) -> FitResult:
    n = len(setup.names)
    return FitResult(
        setup.names, setup.init, np.zeros(n), np.zeros((n, n)), objective(setup.init), True,
        setup.fixed, setup.poi_name, 0.0, 1, "all parameters fixed", "none", objective.backend, True,
    )


def _checked(result: FitResult, context: str) -> FitResult:
    if not result.valid:
        raise FitFailed(f"{context}fit did not converge: {result.message}", result)
    return result
