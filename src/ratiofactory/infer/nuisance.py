"""Pulls, constraints and impacts of nuisance parameters on the POI.

With ``λ(θ) = −2 ln L(θ)`` (the fit objective), ``H = ∂²λ/∂θ∂θ`` at the best fit and the
covariance ``C = (H/2)⁻¹ = 2 H⁻¹`` over the free parameters:

- pull ``(α̂_k − a_k)/σ_k^pre`` with ``a_k`` the auxiliary measurement (Gaussian
  constraints; ``aux/τ`` for Poisson ones) and ``σ_k^pre`` the pre-fit width; constraint
  ``√C_kk / σ_k^pre``.
- ``hessian``: the design-note formula ``Γ_k = −[∂²λ/∂μ²]⁻¹ ∂²λ/∂μ∂α_k · √C_kk``. The
  normalisation of λ cancels in the ratio; Γ_k is the shift of μ̂ when α_k moves by its
  post-fit σ **with all other parameters held at their best-fit values**, so it is not a
  profiled impact unless α_k is uncorrelated with the other nuisance parameters.
- ``hessian_profiled``: ``C_μk / √C_kk``, the shift of μ̂ when α_k moves by +σ_k^post and
  everything else is re-profiled, in the parabolic approximation. It equals the post-fit
  refit impact wherever the likelihood is parabolic.
- refit impacts: μ̂ from fits with α_k fixed at ``α̂_k ± σ_k^pre`` and ``α̂_k ± σ_k^post``,
  minus μ̂ (``prefit_up`` is the shift for ``+σ``). Rows are ranked by the largest
  ``|post-fit refit impact|`` (by ``|hessian_profiled|`` without refits).

On jax ``H`` is the exact Hessian; on numpy it is ``2 C⁻¹`` with C from HESSE.

A parameter whose best fit lies on a bound (the POI of a search without excess at
μ̂ = 0) is an active constraint, not a parabolic minimum: small moves of the others
leave it there. ``C`` is then taken with such parameters held at their bound (what
MINUIT's HESSE gives on numpy once the fit pinned them; the same from the exact Hessian
on jax), so both backends give the same numbers. The Hessian columns are linear
responses of μ̂ and are not defined (None) when μ̂ itself is on a bound; a nuisance
parameter on a bound has no post-fit error, constraint, post-fit refit or Hessian
impact (None). The refit impacts stay: with μ̂ on a bound they are one-sided (a shift that
pushes μ̂ into the bound gives 0), as in cabinetry's ranking, whose refits respect the
bounds too. ``ImpactsResult.at_bound`` names those parameters and the table says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidFitSetup
from .fitting import FitOptions, minimize
from .local_fits import covariance
from .objective import FitSetup, Objective, make_setup
from .results import FitResult, ImpactRow, ImpactsResult

__all__ = ["impacts", "prefit_constraints"]


def prefit_constraints(model: Any, data: Any) -> dict[int, tuple[float, float]]:
    """Parameter index → (pre-fit centre a_k, pre-fit width σ_k) for constrained parameters.

    The centre is read from the auxiliary data in ``data`` (pyhf's order,
    ``config.auxdata_order``, at the end of the data vector).

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> prefit_constraints(model, data)  # shapesys on bin 1: centre 1, width 5/50
    {1: (1.0, 0.1)}
    """
    config = model.config
    data = np.asarray(data, dtype=float)
    aux = data[data.size - len(config.auxdata):] if len(config.auxdata) else np.zeros(0)
    result: dict[int, tuple[float, float]] = {}
    position = 0
    for name in getattr(config, "auxdata_order", []):
        paramset = config.param_set(name)
        n = paramset.n_parameters
        values = aux[position:position + n]
        position += n
        factors = getattr(paramset, "factors", None)
        if getattr(paramset, "pdf_type", "normal") == "poisson" and factors is not None:
            values = values / np.asarray(factors, dtype=float)
        start = config.par_slice(name).start
        for i, (centre, width) in enumerate(zip(values, paramset.width(), strict=True)):
            result[start + i] = (float(centre), float(width))
    return result


def impacts(
    model: Any,
    data: Any,
    *,
    parameters: Iterable[str] | None = None,
    refit: bool = True,
    poi: str | None = None,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    options: FitOptions | None = None,
) -> ImpactsResult:
    """Pulls and impacts on the POI of every free parameter (or of ``parameters``,
    expanded names), ranked. ``refit=False`` skips the four refits per parameter.

    >>> import pyhf
    >>> from ratiofactory.infer import fit
    >>> model = pyhf.simplemodels.correlated_background([5.0], [50.0], [55.0], [45.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> row = impacts(model, data).row("correlated_bkg_uncertainty")
    >>> best = fit(model, data)      # pull = (α̂ − 0)/1, constraint = σ(α̂)/1
    >>> round(row.pull, 4) == round(best.value("correlated_bkg_uncertainty"), 4), round(row.constraint, 3)
    (True, 1.0)
    """
    setup = make_setup(model, init=init, fixed=fixed, bounds=bounds, poi=poi)
    index, name = setup.require_poi()
    objective = Objective(model, data)
    best = minimize(objective, setup, options, context="global fit: ")
    on_bound = [setup.index(n) for n in best.at_bound]
    cov = _covariance_off_bounds(objective, setup, best, on_bound)
    hess = _hessian(objective, best, setup, cov)
    prefit = prefit_constraints(model, data)
    rows = [_row(k, objective, setup, best, cov, hess, prefit.get(k), index, options, refit, on_bound)
            for k in _selected(setup, index, parameters)]
    rows.sort(key=lambda r: -_rank(r))
    return ImpactsResult(name, best.poi_value, best.poi_error, tuple(rows), dict(best.at_bound))


def _selected(setup: FitSetup, index: int, parameters: Iterable[str] | None) -> list[int]:
    if parameters is None:
        return [k for k in range(len(setup.names)) if k != index and not setup.fixed[k]]
    chosen = [setup.index(name) for name in parameters]
    for k in chosen:
        if k == index or setup.fixed[k]:
            raise InvalidFitSetup(f"no impact for {setup.names[k]!r}: it is the POI or fixed")
    return chosen


def _covariance_off_bounds(objective: Objective, setup: FitSetup, best: FitResult, on_bound: list[int]) -> np.ndarray:
    """``C = 2 H⁻¹`` over the free parameters, those on a bound held there (zero rows)."""
    cov, valid = best.covariance, best.covariance_valid
    if on_bound and (cov is None or np.any(np.diag(cov)[on_bound] != 0.0)):  # not held there by the fit
        pinned = setup
        for k in on_bound:
            pinned = pinned.with_fixed(k, float(best.values[k]))
        cov, valid = covariance(objective, pinned, best.values, None)
    if cov is None or not valid:
        raise InvalidFitSetup(f"the covariance at the best fit is not positive definite ({best.message});"
                              " impacts need a proper minimum")
    return np.asarray(cov, dtype=float)


def _hessian(objective: Objective, best: FitResult, setup: FitSetup, cov: np.ndarray) -> np.ndarray:
    """Hessian of −2 ln L (exact on jax; on numpy ``2 C⁻¹`` over the parameters ``cov``
    covers, zero elsewhere)."""
    if objective.has_grad:
        return objective.hessian(best.values)
    covered = np.diag(cov) > 0
    hess = np.zeros_like(cov)
    hess[np.ix_(covered, covered)] = 2.0 * np.linalg.inv(cov[np.ix_(covered, covered)])
    return hess


def _row(k, objective, setup, best, cov, hess, prefit, index, options, refit, on_bound) -> ImpactRow:
    post = None if k in on_bound else float(np.sqrt(cov[k, k]))
    linear = post is not None and post > 0 and index not in on_bound  # μ̂ responds linearly
    centre, width = prefit if prefit is not None else (None, None)
    shifts: dict[str, float | None] = dict.fromkeys(("prefit_up", "prefit_down", "postfit_up", "postfit_down"))
    if refit:
        for label, sigma in (("prefit", width), ("postfit", post)):
            if sigma is None:
                continue
            for direction, sign in (("up", 1.0), ("down", -1.0)):
                shifts[f"{label}_{direction}"] = _refit_shift(objective, setup, best, k, sign * sigma, options)
    return ImpactRow(
        name=setup.names[k],
        bestfit=float(best.values[k]),
        postfit_error=post,
        prefit_center=centre,
        prefit_error=width,
        pull=None if width is None or centre is None else (float(best.values[k]) - centre) / width,
        constraint=None if width is None or post is None else post / width,
        hessian=float(-hess[index, k] / hess[index, index] * post) if linear and post is not None else None,
        hessian_profiled=float(cov[index, k] / post) if linear and post is not None else None,
        **shifts,
    )


def _refit_shift(objective, setup, best, k, delta, options) -> float:
    lo, hi = setup.bounds[k]
    value = float(np.clip(best.values[k] + delta, lo, hi))
    shifted = setup.with_init(best.values).with_fixed(k, value)
    result = minimize(objective, shifted, options, hesse=False,
                      context=f"impact refit with {setup.names[k]}={value:g}: ")
    return float(result.values[setup.poi_index] - best.values[setup.poi_index])


def _rank(row: ImpactRow) -> float:
    """Largest |post-fit refit impact|, else |hessian_profiled|, else |pre-fit refit impact|."""
    for values in ((row.postfit_up, row.postfit_down), (row.hessian_profiled,), (row.prefit_up, row.prefit_down)):
        known = [abs(v) for v in values if v is not None]
        if known:
            return max(known)
    return 0.0
