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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
from iminuit import Minuit

from .errors import FitFailed, InvalidFitSetup
from .objective import FitSetup, Objective, make_setup
from .results import FitResult

__all__ = ["DEFAULT_TOLERANCE", "FitOptions", "fit", "minimize"]

#: MIGRAD stops when the estimated distance to the minimum is below 0.002·tolerance
#: (in units of −2 ln L): 2e-7 by default, so that test statistics, CLs and limits are
#: accurate to ~1e-6 even with numerical gradients (pyhf's default, 0.1, gives ~1e-4).
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FitOptions:
    """How to minimise: ``method`` ``"minuit"`` (MIGRAD) or ``"scipy"`` (L-BFGS-B);
    MINUIT ``strategy`` (None: 0 with exact gradients, 1 without) and ``tolerance``;
    ``maxiter`` bounds the number of function calls."""

    method: str = "minuit"
    strategy: int | None = None
    tolerance: float = DEFAULT_TOLERANCE
    maxiter: int = 100_000

    def __post_init__(self) -> None:
        if self.method not in ("minuit", "scipy"):
            raise InvalidFitSetup(f"unknown fit method {self.method!r}; use 'minuit' or 'scipy'")
        if not self.tolerance > 0:
            raise InvalidFitSetup(f"tolerance must be positive, got {self.tolerance}")


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
) -> FitResult:
    """Maximum-likelihood fit of ``model`` to ``data`` (minimises ``−2 ln L``).

    ``init``, ``fixed`` and ``bounds`` override the model's suggestions, by parameter
    name (dict) or for the full vector; ``fixed={"lumi": 1.0}`` fixes a parameter at a
    value. ``poi`` names the parameter reported as POI (default: the model's). ``minos``
    is True for all free parameters or a list of names. Raises :class:`FitFailed` when
    MIGRAD does not converge and :class:`InvalidFitSetup` for inconsistent input.
    """
    setup = make_setup(model, init=init, fixed=fixed, bounds=bounds, poi=poi)
    options = FitOptions(method=method, strategy=strategy, tolerance=tolerance, maxiter=maxiter)
    return minimize(Objective(model, data), setup, options, hesse=hesse, minos=minos)


def minimize(
    objective: Objective,
    setup: FitSetup,
    options: FitOptions | None = None,
    *,
    hesse: bool = True,
    minos: bool | Sequence[str] = False,
    context: str = "",
) -> FitResult:
    """Minimise a prepared objective from a prepared setup (the engine behind every fit).

    ``context`` prefixes error messages (e.g. ``"profile scan at mu=1.5: "``).
    """
    options = options or FitOptions()
    _check_finite_start(objective, setup, context)
    if setup.fixed.all():
        return _all_fixed(objective, setup)
    if options.method == "scipy":
        return _scipy(objective, setup, options, hesse, context)
    return _migrad(objective, setup, options, hesse, minos, context)


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


def _make_minuit(objective: Objective, setup: FitSetup, x0: np.ndarray, options: FitOptions) -> Minuit:
    grad = objective.grad if objective.has_grad else False

    def fcn(pars: np.ndarray) -> float:  # a plain function: iminuit must not pick up Objective.hessian
        return objective(pars)

    m = Minuit(fcn, np.asarray(x0, dtype=float), grad=grad, name=setup.names)
    m.errordef = Minuit.LEAST_SQUARES  # the objective is -2 ln L
    m.limits = [tuple(float(b) for b in pair) for pair in setup.bounds]
    m.fixed = [bool(f) for f in setup.fixed]
    m.strategy = options.strategy if options.strategy is not None else (0 if objective.has_grad else 1)
    m.tol = options.tolerance
    m.print_level = -1  # Minuit2 prints internal diagnostics to stdout even at 0 (they broke --quiet)
    return m


def _migrad(objective, setup, options, hesse, minos, context) -> FitResult:
    m = _make_minuit(objective, setup, setup.init, options)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.migrad(ncall=options.maxiter)
        if not m.valid:  # one retry from where MIGRAD stopped, as MINUIT users commonly do
            m.migrad(ncall=options.maxiter)
        values = np.array(m.values, dtype=float)
        cov, cov_ok = (None, False)
        if m.valid and hesse:
            cov, cov_ok = _covariance(objective, setup, values, m)
        minos_errors = _minos(m, setup, minos, notes) if m.valid and minos else {}
    notes += sorted({str(w.message).splitlines()[0] for w in caught})
    result = _result(objective, setup, values, cov, cov_ok, m.valid, m.fmin.edm, m.nfcn,
                     _migrad_message(m, objective, notes), "minuit", minos_errors)
    return _checked(result, context)


def _migrad_message(m: Minuit, objective: Objective, notes: list[str]) -> str:
    fmin = m.fmin
    if m.valid:
        parts = ["converged"]
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
    names = [n for n, f in zip(setup.names, setup.fixed, strict=True) if not f] if minos is True else list(minos)
    for name in names:
        if name not in setup.names:
            raise InvalidFitSetup(f"minos: unknown parameter {name!r}; known: {', '.join(setup.names)}")
        if setup.fixed[setup.index(name)]:
            raise InvalidFitSetup(f"minos: parameter {name!r} is fixed")
    m.minos(*names)
    result = {}
    for name in names:
        err = m.merrors[name]
        result[name] = (float(err.lower), float(err.upper))
        if not err.is_valid:
            notes.append(f"MINOS error of {name!r} is not valid")
    return result


def _scipy(objective, setup, options, hesse, context) -> FitResult:
    free = ~setup.fixed

    def full(x_free: np.ndarray) -> np.ndarray:
        x = setup.init.copy()
        x[free] = x_free
        return x

    def value(x_free: np.ndarray) -> float:
        return objective(full(x_free))

    jac = (lambda x_free: objective.grad(full(x_free))[free]) if objective.has_grad else "3-point"
    res = scipy.optimize.minimize(
        value, setup.init[free], jac=jac, method="L-BFGS-B", bounds=setup.bounds[free],
        options={"maxfun": options.maxiter, "ftol": 1e-15, "gtol": options.tolerance * 1e-3},
    )
    values = full(res.x)
    cov, cov_ok = _covariance(objective, setup, values, None) if hesse or not res.success else (None, False)
    edm = _edm(objective, values, cov, free) if cov_ok else None
    # L-BFGS-B often stops "ABNORMAL" in the line search when already at the minimum to
    # machine precision: accept it when the EDM meets MIGRAD's criterion
    valid = bool(res.success) or (edm is not None and edm < 0.002 * options.tolerance)
    message = "converged" if valid else f"scipy L-BFGS-B did not converge: {res.message}"
    if objective.nonfinite_calls:
        message += f"; -2 ln L was not finite at {objective.nonfinite_calls} evaluated points"
    if not hesse:
        cov, cov_ok = None, False
    result = _result(objective, setup, values, cov, cov_ok, valid, edm, int(res.nfev),
                     message, "scipy", {})
    return _checked(result, context)


def _edm(objective: Objective, values: np.ndarray, cov: np.ndarray, free: np.ndarray) -> float:
    """Estimated distance to the minimum, ``g·C·g/4`` (MINUIT's ``g·V·g/2`` with ``V = C/2``
    for errordef 1); the gradient is exact on jax, central differences on numpy."""
    if objective.has_grad:
        grad = objective.grad(values)[free]
    else:
        step = 1e-6 * np.maximum(1.0, np.abs(values[free]))
        grad = np.empty(step.size)
        for i, (k, h) in enumerate(zip(np.flatnonzero(free), step, strict=True)):
            up, down = values.copy(), values.copy()
            up[k] += h
            down[k] -= h
            grad[i] = (objective(up) - objective(down)) / (2 * h)
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
