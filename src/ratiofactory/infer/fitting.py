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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.optimize
from iminuit import Minuit

from .errors import FitFailed, InvalidFitSetup
from .minima import TIE, LocalFit, distinct_minima, search
from .objective import FitSetup, Objective, make_setup
from .results import FitResult, LocalMinimum
from .wall import WalledObjective, foot_of_wall, on_wall

__all__ = ["DEFAULT_STARTS", "DEFAULT_TOLERANCE", "FitOptions", "fit", "minimize"]

#: MIGRAD stops when the estimated distance to the minimum is below 0.002·tolerance
#: (in units of −2 ln L): 2e-7 by default, so that test statistics, CLs and limits are
#: accurate to ~1e-6 even with numerical gradients (pyhf's default, 0.1, gives ~1e-4).
DEFAULT_TOLERANCE = 1e-4

#: points of the coarse 1-D curve along the POI that seeds the global search
DEFAULT_STARTS = 9

#: a free parameter this close to a bound (relative to the bound width) is "at the bound"
AT_BOUND = 1e-5


@dataclass(frozen=True)
class FitOptions:
    """How to minimise: ``method`` ``"minuit"`` (MIGRAD) or ``"scipy"`` (L-BFGS-B);
    MINUIT ``strategy`` (None: 0 with exact gradients, 1 without) and ``tolerance``;
    ``maxiter`` bounds the number of function calls of each local fit.

    ``global_search`` (default True) looks for the global minimum inside the bounds
    (:mod:`ratiofactory.infer.minima`): ``starts`` points on a coarse curve along the
    POI (and other free unconstrained scalars) seed extra local fits wherever that curve
    has another minimum. ``global_search=False`` (or ``starts=1``) runs one local fit
    from the start point, as MINUIT alone does.

    >>> import pyhf
    >>> from ratiofactory.infer import FitOptions, hypotest
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> scipy_local = FitOptions(method="scipy", global_search=False)
    >>> cls = hypotest(model, data, 1.0, options=scipy_local).cls
    >>> round(cls, 5) == round(hypotest(model, data, 1.0).cls, 5)  # same as MINUIT's
    True
    """

    method: str = "minuit"
    strategy: int | None = None
    tolerance: float = DEFAULT_TOLERANCE
    maxiter: int = 100_000
    global_search: bool = True
    starts: int = DEFAULT_STARTS

    def __post_init__(self) -> None:
        if self.method not in ("minuit", "scipy"):
            raise InvalidFitSetup(f"unknown fit method {self.method!r}; use 'minuit' or 'scipy'")
        if not self.tolerance > 0:
            raise InvalidFitSetup(f"tolerance must be positive, got {self.tolerance}")
        starts: object = self.starts  # user input: check the type too
        if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
            raise InvalidFitSetup(f"starts must be a positive integer (1: no global search), got {self.starts!r}")

    @property
    def curve_points(self) -> int:
        """Points of the global search's curve; 1 means a single local fit."""
        return int(self.starts) if self.global_search else 1


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
    local = _scipy_local if options.method == "scipy" else _migrad_local

    def run(start: FitSetup) -> LocalFit:
        return local(objective, start, options)

    if options.curve_points > 1 or seeds:
        fits, evaluations = search(objective, setup, options.curve_points, seeds, run)
    else:
        fits, evaluations = [run(setup)], 0
    minima = distinct_minima(fits, setup)
    best = minima[0] if minima else fits[0]
    nfev = evaluations + sum(f.nfev for f in fits)
    if options.global_search and best.valid and _at_bound(setup, best.values):
        polished = _polish_at_bound(objective, setup, best, run)
        nfev += polished.nfev - (best.nfev if polished.state is best.state else 0)
        best = polished
    finish = _scipy_finish if options.method == "scipy" else _migrad_finish
    result = finish(objective, setup, options, best, hesse, minos)
    others = tuple(LocalMinimum(m.values, m.twice_nll, m.twice_nll - result.twice_nll) for m in minima[1:])
    at_bound = _at_bound(setup, result.values)
    result = replace(result, nfev=nfev, other_minima=others, local_fits=len(fits), at_bound=at_bound,
                     errors=_no_error_on_bound(result.errors, setup, at_bound))
    return _checked(result, context)


def _polish_at_bound(objective: Objective, setup: FitSetup, best: LocalFit,
                     run: Callable[[FitSetup], LocalFit]) -> LocalFit:
    """MIGRAD converges slowly onto a bound (its sine transformation flattens there, and
    its EDM underestimates the distance): refit with the parameters on a bound pinned to
    it (continuing the same MIGRAD, whose covariance estimate is kept), and keep that point
    unless it is higher."""
    pinned = {setup.index(name): float(setup.bounds[setup.index(name)][0 if side == "lower" else 1])
              for name, side in _at_bound(setup, best.values).items()}
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


def _no_error_on_bound(errors: np.ndarray | None, setup: FitSetup, at_bound: dict[str, str]) -> np.ndarray | None:
    """NaN errors for parameters on a bound: the minimum is not a parabola there (HESSE in
    MINUIT's internal coordinates collapses to ~0, the exact Hessian ignores the bound)."""
    if errors is None or not at_bound:
        return errors
    errors = np.array(errors, dtype=float)
    errors[[setup.index(name) for name in at_bound]] = np.nan
    return errors


def _at_bound(setup: FitSetup, values: np.ndarray) -> dict[str, str]:
    """Free parameters within ``AT_BOUND`` (relative to the bound width) of a bound."""
    found = {}
    for i, name in enumerate(setup.names):
        lo, hi = setup.bounds[i]
        if setup.fixed[i] or not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        tol = AT_BOUND * (hi - lo)
        if values[i] - lo <= tol:
            found[name] = "lower"
        elif hi - values[i] <= tol:
            found[name] = "upper"
    return found


def _check_finite_start(objective: Objective, setup: FitSetup, context: str) -> None:
    value = objective(setup.init)
    if not np.isfinite(value):
        shown = ", ".join(f"{n}={v:g}" for n, v in list(zip(setup.names, setup.init, strict=True))[:8])
        more = ", ..." if len(setup.names) > 8 else ""
        raise InvalidFitSetup(
            f"{context}-2 ln L is {value} at the initial parameters ({shown}{more}): the likelihood"
            " is not finite there (an unbinned channel is +inf where an event has s(x;θ) <= 0,"
            f" e.g. through negative interference coefficients{_nonpositive(objective, setup)});"
            " start from a different init="
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


def _make_minuit(objective: Objective, setup: FitSetup, x0: np.ndarray, options: FitOptions,
                 walled: WalledObjective | None = None) -> Minuit:
    if walled is None:  # the minimiser sees a finite wall where −2 ln L is +inf/NaN
        walled = WalledObjective(objective, setup.bounds, setup.fixed)
    grad = walled.grad if objective.has_grad else False

    def fcn(pars: np.ndarray) -> float:  # a plain function: iminuit must not pick up Objective.hessian
        return walled(pars)

    m = Minuit(fcn, np.asarray(x0, dtype=float), grad=grad, name=setup.names)
    m.errordef = Minuit.LEAST_SQUARES  # the objective is -2 ln L
    m.limits = [tuple(float(b) for b in pair) for pair in setup.bounds]
    m.fixed = [bool(f) for f in setup.fixed]
    m.strategy = options.strategy if options.strategy is not None else (0 if objective.has_grad else 1)
    m.tol = options.tolerance
    m.print_level = -1  # Minuit2 prints internal diagnostics to stdout even at 0 (they broke --quiet)
    return m


def _migrad_local(objective: Objective, setup: FitSetup, options: FitOptions) -> LocalFit:
    walled = WalledObjective(objective, setup.bounds, setup.fixed)
    m = _make_minuit(objective, setup, setup.init, options, walled)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.migrad(ncall=options.maxiter)
        if not m.valid:  # one retry from where MIGRAD stopped, as MINUIT users commonly do
            m.migrad(ncall=options.maxiter)
    values = np.array(m.values, dtype=float)
    notes = sorted({str(w.message).splitlines()[0] for w in caught})
    if on_wall(objective, values) or (m.valid and foot_of_wall(walled, values, float(m.fval))):
        notes.append(_WALL_NOTE)
        return LocalFit(setup.init, values, float(objective(values)), False, int(m.nfcn), m, notes)
    return LocalFit(setup.init, values, float(m.fval), bool(m.valid), int(m.nfcn), m, notes)


_WALL_NOTE = ("the minimiser ended on (or at the foot of) the wall where -2 ln L is not finite (an event with"
              " s(x;θ) <= 0): -2 ln L still falls towards that region, so the point is no minimum; try another"
              " init= or bounds=")


def _migrad_finish(objective, setup, options, local: LocalFit, hesse, minos) -> FitResult:
    m, notes = local.state, list(local.notes)
    valid = bool(m.valid) and _WALL_NOTE not in notes
    cov, cov_ok = (None, False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if valid and hesse:
            cov, cov_ok = _covariance(objective, setup, local.values, m)
        minos_errors = _minos(m, setup, minos, notes) if valid and minos else {}
    notes += sorted({str(w.message).splitlines()[0] for w in caught} - set(notes))
    return _result(objective, setup, local.values, cov, cov_ok, valid, m.fmin.edm, m.nfcn,
                   _migrad_message(m, objective, notes, valid), "minuit", minos_errors)


def _migrad_message(m: Minuit, objective: Objective, notes: list[str], valid: bool = True) -> str:
    fmin = m.fmin
    if m.valid and valid:
        parts = ["converged"]
    elif m.valid:
        parts = ["MIGRAD's minimum is not a minimum of -2 ln L"]
    else:
        parts = ["MIGRAD did not converge"]
        if fmin.has_reached_call_limit:
            parts.append("call limit reached")
        if fmin.is_above_max_edm:
            parts.append(f"EDM {fmin.edm:.3g} above goal {fmin.edm_goal:.3g}")
        if fmin.has_parameters_at_limit:
            parts.append("parameters at their limits")
    if objective.nonfinite_calls:
        parts.append(f"-2 ln L was not finite at {objective.nonfinite_calls} evaluated points")
    return "; ".join(parts + notes)


def _covariance(objective: Objective, setup: FitSetup, values: np.ndarray, m: Minuit | None) -> tuple[np.ndarray | None, bool]:
    """Covariance ``C = 2 H⁻¹`` over free parameters: exact Hessian on jax, HESSE on numpy."""
    n = len(setup.names)
    free = ~setup.fixed
    if objective.has_grad:
        hess = objective.hessian(values)[np.ix_(free, free)]
        cov = np.zeros((n, n))
        try:
            np.linalg.cholesky(hess)
            cov[np.ix_(free, free)] = 2.0 * np.linalg.inv(hess)
            ok = bool(np.all(np.isfinite(cov)))
        except np.linalg.LinAlgError:
            cov[np.ix_(free, free)] = np.nan
            ok = False
        return cov, ok
    if m is None:
        m = _make_minuit(objective, setup, values, FitOptions())
    m.hesse()
    if m.covariance is None:
        return None, False
    cov = np.array(m.covariance, dtype=float)
    cov[setup.fixed, :] = 0.0
    cov[:, setup.fixed] = 0.0
    return cov, bool(m.accurate)


def _minos(m: Minuit, setup: FitSetup, minos: bool | Sequence[str], notes: list[str]) -> dict:
    if isinstance(minos, bool):
        names = [n for n, f in zip(setup.names, setup.fixed, strict=True) if not f] if minos else []
    else:
        names = list(minos)
    for name in names:
        if name not in setup.names:
            raise InvalidFitSetup(f"minos: unknown parameter {name!r}; known: {', '.join(setup.names)}")
        if setup.fixed[setup.index(name)]:
            raise InvalidFitSetup(f"minos: parameter {name!r} is fixed")
    on_bound = [name for name in names if m.fixed[name]]  # pinned to a bound by the polish step
    for name in on_bound:
        notes.append(f"no MINOS error of {name!r}: it lies on its bound")
    names = [name for name in names if name not in on_bound]
    if names:
        m.minos(*names)
    result = {}
    for name in names:
        err = m.merrors[name]
        result[name] = (float(err.lower), float(err.upper))
        if not err.is_valid:
            notes.append(f"MINOS error of {name!r} is not valid")
    return result


def _scipy_local(objective: Objective, setup: FitSetup, options: FitOptions) -> LocalFit:
    free = ~setup.fixed

    def full(x_free: np.ndarray) -> np.ndarray:
        x = setup.init.copy()
        x[free] = x_free
        return x

    walled = WalledObjective(objective, setup.bounds, setup.fixed)

    def value(x_free: np.ndarray) -> float:
        return walled(full(x_free))

    jac = (lambda x_free: walled.grad(full(x_free))[free]) if objective.has_grad else "3-point"
    res = scipy.optimize.minimize(
        value, setup.init[free], jac=jac, method="L-BFGS-B", bounds=setup.bounds[free],
        options={"maxfun": options.maxiter, "ftol": 1e-15, "gtol": options.tolerance * 1e-3},
    )
    values = full(res.x)
    valid, cov, cov_ok, edm = bool(res.success), None, False, None
    if on_wall(objective, values) or foot_of_wall(walled, values, float(objective(values))):
        return LocalFit(setup.init, values, float(objective(values)), False, int(res.nfev),
                        (res, None, False, None), [_WALL_NOTE])
    if not valid:
        # L-BFGS-B often stops "ABNORMAL" in the line search when already at the minimum to
        # machine precision: accept it when the EDM meets MIGRAD's criterion
        cov, cov_ok = _covariance(objective, setup, values, None)
        edm = _edm(objective, setup, values, cov) if cov_ok and cov is not None else None
        valid = edm is not None and edm < 0.002 * options.tolerance
    return LocalFit(setup.init, values, float(objective(values)), valid, int(res.nfev),
                    (res, cov, cov_ok, edm))


def _scipy_finish(objective, setup, options, local: LocalFit, hesse, minos) -> FitResult:
    res, cov, cov_ok, edm = local.state
    if hesse and cov is None:
        cov, cov_ok = _covariance(objective, setup, local.values, None)
    if cov_ok and edm is None:
        edm = _edm(objective, setup, local.values, cov)
    message = "converged" if local.valid else f"scipy L-BFGS-B did not converge: {res.message}"
    if objective.nonfinite_calls:
        message += f"; -2 ln L was not finite at {objective.nonfinite_calls} evaluated points"
    message = "; ".join([message, *local.notes])
    if not hesse:
        cov, cov_ok = None, False
    return _result(objective, setup, local.values, cov, cov_ok, local.valid, edm, local.nfev,
                   message, "scipy", {})


def _edm(objective: Objective, setup: FitSetup, values: np.ndarray, cov: np.ndarray) -> float:
    """Estimated distance to the minimum, ``g·C·g/4`` (MINUIT's ``g·V·g/2`` with ``V = C/2``
    for errordef 1); the gradient is exact on jax, differences on numpy (one-sided at a
    bound). A parameter on a bound whose gradient points out of the allowed range is at a
    constrained minimum in that direction: its component is dropped."""
    free = ~setup.fixed
    sides = _at_bound(setup, values)
    if objective.has_grad:
        grad = np.array(objective.grad(values), dtype=float)
    else:
        grad = np.zeros(values.size)
        for k in np.flatnonzero(free):
            h = 1e-6 * max(1.0, abs(values[k]))
            side = sides.get(setup.names[k])
            up, down = values.copy(), values.copy()
            up[k] += 0.0 if side == "upper" else h
            down[k] -= 0.0 if side == "lower" else h
            grad[k] = (objective(up) - objective(down)) / (up[k] - down[k])
    for name, side in sides.items():
        at = setup.index(name)
        if (side == "lower" and grad[at] > 0) or (side == "upper" and grad[at] < 0):
            grad[at] = 0.0
    grad = grad[free]
    sub = cov[np.ix_(free, free)]
    return float(0.25 * grad @ sub @ grad)


def _result(objective, setup, values, cov, cov_ok, valid, edm, nfev, message, method, minos) -> FitResult:
    errors = None if cov is None else np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return FitResult(
        setup.names, values, errors, cov, float(objective(values)), bool(valid), setup.fixed,
        setup.poi_name, None if edm is None else float(edm), int(nfev), message, method,
        objective.backend, bool(cov_ok), minos,
    )


def _checked(result: FitResult, context: str) -> FitResult:
    if not result.valid:
        raise FitFailed(f"{context}fit did not converge: {result.message}", result)
    return result
