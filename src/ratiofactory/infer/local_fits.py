"""The local minimisers behind every fit: MIGRAD (iminuit, with HESSE and MINOS) and
scipy's L-BFGS-B, each as a local fit (:class:`~.minima.LocalFit`) from one start and the
final :class:`~.results.FitResult` of the best one (covariance, EDM, message).

>>> import pyhf
>>> from ratiofactory.infer.objective import Objective, make_setup
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> local = migrad_local(Objective(model, [62.0, 100.0]), make_setup(model), FitOptions())
>>> round(float(local.values[0]), 3), local.valid
(2.4, True)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.optimize
from iminuit import Minuit

from .errors import InvalidFitSetup
from .minima import LocalFit
from .objective import FitSetup, Objective
from .options import FitOptions
from .results import FitResult
from .wall import WalledObjective, foot_of_wall, on_wall

__all__ = ["AT_BOUND", "at_bound", "covariance", "initial_steps", "migrad_finish", "migrad_local", "scipy_finish", "scipy_local"]

#: a free parameter this close to a bound (relative to the bound width) is "at the bound"
AT_BOUND = 1e-5


def at_bound(setup: FitSetup, values: np.ndarray) -> dict[str, str]:
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


def _make_minuit(objective: Objective, setup: FitSetup, x0: np.ndarray, options: FitOptions,
                 walled: WalledObjective | None = None) -> Minuit:
    if walled is None:  # the minimiser sees a finite wall where −2 ln L is +inf/NaN (.wall)
        walled = WalledObjective(objective, setup.bounds, setup.fixed)
    grad = walled.grad if objective.has_grad else False

    def fcn(pars: np.ndarray) -> float:  # a plain function: iminuit must not pick up Objective.hessian
        return walled(pars)

    m = Minuit(fcn, np.asarray(x0, dtype=float), grad=grad, name=setup.names)
    m.errordef = Minuit.LEAST_SQUARES  # the objective is -2 ln L
    m.errors = initial_steps(setup, x0)
    m.limits = [tuple(float(b) for b in pair) for pair in setup.bounds]
    m.fixed = [bool(f) for f in setup.fixed]
    m.strategy = options.strategy if options.strategy is not None else (0 if objective.has_grad else 1)
    m.tol = options.tolerance
    m.print_level = -1  # Minuit2 prints internal diagnostics to stdout even at 0 (they broke --quiet)
    return m


def initial_steps(setup: FitSetup, x0: np.ndarray) -> np.ndarray:
    """MIGRAD's initial step sizes: 1 % of the bound width (of ``max(1, |x|)`` when a bound
    is infinite), or 1 % of ``|x|`` if larger. iminuit's default, 1 % of ``|x|``, is tiny for
    a parameter that starts near 0: a warm start from a point where a nuisance parameter had
    no effect (α = 2e-7 at μ = 0 of an interference model) then gives MIGRAD a huge initial
    curvature, and it stopped "converged" 0.02 above the conditional minimum."""
    x0 = np.asarray(x0, dtype=float)
    width = setup.bounds[:, 1] - setup.bounds[:, 0]
    scale = np.where(np.isfinite(width), width, np.maximum(1.0, np.abs(x0)))
    return np.maximum(0.01 * scale, 0.01 * np.abs(x0))


def migrad_local(objective: Objective, setup: FitSetup, options: FitOptions) -> LocalFit:
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
        notes.append(WALL_NOTE)
        return LocalFit(setup.init, values, float(objective(values)), False, int(m.nfcn), m, notes)
    return LocalFit(setup.init, values, float(m.fval), bool(m.valid), int(m.nfcn), m, notes)


#: why a local fit that ended on the evaluation-error wall (:mod:`.wall`) is no result
WALL_NOTE = ("the minimiser ended on (or at the foot of) the wall where -2 ln L is not finite (an event with"
             " s(x;θ) <= 0): -2 ln L still falls towards that region, so the point is no minimum; try other"
             " initial values or bounds")


def migrad_finish(objective, setup, options, local: LocalFit, hesse, minos) -> FitResult:
    m, notes = local.state, list(local.notes)
    valid = bool(m.valid) and WALL_NOTE not in notes
    cov, cov_ok = (None, False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if valid and hesse:
            cov, cov_ok = covariance(objective, setup, local.values, m)
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


def covariance(objective: Objective, setup: FitSetup, values: np.ndarray, m: Minuit | None) -> tuple[np.ndarray | None, bool]:
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


def scipy_local(objective: Objective, setup: FitSetup, options: FitOptions) -> LocalFit:
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
                        (res, None, False, None), [WALL_NOTE])
    if not valid:
        # L-BFGS-B often stops "ABNORMAL" in the line search when already at the minimum to
        # machine precision: accept it when the EDM meets MIGRAD's criterion
        cov, cov_ok = covariance(objective, setup, values, None)
        edm = _edm(objective, setup, values, cov) if cov_ok and cov is not None else None
        valid = edm is not None and edm < 0.002 * options.tolerance
    return LocalFit(setup.init, values, float(objective(values)), valid, int(res.nfev),
                    (res, cov, cov_ok, edm))


def scipy_finish(objective, setup, options, local: LocalFit, hesse, minos) -> FitResult:
    res, cov, cov_ok, edm = local.state
    if hesse and cov is None:
        cov, cov_ok = covariance(objective, setup, local.values, None)
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
    sides = at_bound(setup, values)
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
