"""Asimov datasets: the expected data at a parameter point.

For binned channels these are pyhf's expected counts; for unbinned channels the
reference events carry the Asimov weights ``w_i^A(θ) = w_i^ref · s(x_i^ref; θ)`` and the
observed events weigh 0 (design notes, section 2), so a fit to the Asimov data evaluates
the same likelihood on the reweighted reference sample, never on a histogram.

Where the ratios are normalised on the reference sample (``ratio_normalisation:
"reference"`` and ``shape_normalisation: "reference"``, the defaults with a reference
sample) ``Σ_i w_i^A = ν(θ)`` exactly and a fit to the Asimov data of θ₀ returns θ₀.
Otherwise ``Σ_i w_i^A`` only estimates ``ν(θ) = ∫ s(x;θ) p_ref(x) dx`` from a finite
reference sample: :func:`asimov_data` checks the two agree within the sample's statistical
precision and warns (:class:`AsimovYieldWarning`) when they do not: the ratio models and
the yields then disagree. A density s(x;θ) < 0 on reference events has no Asimov data:
:class:`ratiofactory.errors.NegativeAsimovWeights` names the channel, the sample and the
events.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> [float(v) for v in asimov_data(model, [1.0, 1.0])]
[55.0, 100.0]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from ..model import numpy_backend
from ..normalisation import ROUNDING, weighted_mean_and_error
from .fitting import FitOptions, minimize
from .objective import FitSetup, Objective
from .results import FitResult

__all__ = ["AsimovYieldWarning", "YieldCheck", "asimov_data", "asimov_yield_checks", "conditional_asimov"]

#: Σ w^A may differ from ν(θ) by this many standard errors of the reference-sample estimate
YIELD_PULL_LIMIT = 5.0


class AsimovYieldWarning(UserWarning):
    """The reweighted reference sample does not reproduce the expected yield ν(θ)."""


@dataclass(frozen=True)
class YieldCheck:
    """Σ_i w_i^A against ν(θ) for one unbinned channel (``pull`` in standard errors)."""

    channel: str
    expected_yield: float
    asimov_sum: float
    standard_error: float

    @property
    def pull(self) -> float:
        """(Σ w^A − ν) in standard errors; 0 within rounding (1e-10 relative), ±inf when
        the reference sample has no spread (a constant density) and they still differ."""
        diff = self.asimov_sum - self.expected_yield
        if abs(diff) <= ROUNDING * max(abs(self.expected_yield), 1.0):
            return 0.0
        return diff / self.standard_error if self.standard_error > 0 else float(np.copysign(np.inf, diff))


def asimov_yield_checks(model: Any, pars: Sequence[float] | np.ndarray) -> list[YieldCheck]:
    """One :class:`YieldCheck` per unbinned channel of ``model`` (none for pyhf models).

    The standard error of ``Σ w_i^ref s_i`` (reference weights summing to one) is
    ``sqrt(Σ (w_i^ref)² (s_i − Σ w^ref s)²)``, the spread taken so that a constant s has
    none (:func:`ratiofactory.normalisation.weighted_mean_and_error`).

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> asimov_yield_checks(model, [1.0, 1.0])   # a binned pyhf model has no reference sample
    []
    """
    checks = []
    for channel in getattr(model, "unbinned_channels", ()):
        nu, s = model.event_densities(np.asarray(pars, dtype=float), channel.name)
        s_ref = np.asarray(s, dtype=float)[channel.n_observed:]
        total, error = weighted_mean_and_error(np.asarray(channel.reference_weights, dtype=float), s_ref)
        checks.append(YieldCheck(channel.name, float(np.reshape(nu, ())), total, error))
    return checks


def asimov_data(model: Any, pars: Sequence[float] | np.ndarray, *, check: bool = True) -> Any:
    """Asimov data at ``pars`` (main data then auxdata): ``model.expected_data(pars)``.

    Raises :class:`ratiofactory.errors.NegativeAsimovWeights` where s(x;θ) < 0 on
    reference events. With ``check`` (default) every unbinned channel's Σ w^A is compared
    with ν(θ); a difference above 5 standard errors of the reference sample emits
    :class:`AsimovYieldWarning` naming the channel (it cannot happen with both
    normalisations ``"reference"``).

    >>> import pyhf
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> asimov_data(model, [1.0, 1.0]).tolist()
    [55.0, 100.0]
    >>> model.expected_data([1.0, 1.0]).tolist()
    [55.0, 100.0]
    """
    backend = pyhf.get_backend()
    with numpy_backend():  # on jax: no eager pass of ~40 small compiled programs
        data = model.expected_data(np.asarray(pars, dtype=float))
        checks = asimov_yield_checks(model, pars) if check else []
    data = backend[0].astensor(np.asarray(data, dtype=float))
    if check:
        for item in checks:
            if abs(item.pull) > YIELD_PULL_LIMIT:
                warnings.warn(
                    f"unbinned channel {item.channel!r}: the Asimov weights sum to "
                    f"{item.asimov_sum:.6g} but the expected yield is {item.expected_yield:.6g}"
                    f" ({item.pull:+.1f} standard errors of the reference sample); the ratio"
                    " models and the yields disagree (or the reference sample is too small)",
                    AsimovYieldWarning,
                    stacklevel=2,
                )
    return data


def conditional_asimov(
    objective: Objective, setup: FitSetup, poi_value: float, options: FitOptions | None = None,
    *, start: np.ndarray | None = None,
) -> tuple[Any, FitResult]:
    """Asimov data at ``poi = poi_value`` and the nuisance parameters profiled on the
    observed data, θ̂̂(poi_value) (what asymptotic CLs and expected significances use).

    Returns the data and the conditional fit.
    """
    fixed = setup if start is None else setup.with_init(start)
    result = minimize(objective, fixed.with_poi_fixed(poi_value), options, hesse=False,
                      context=f"Asimov fit at {setup.poi_name}={poi_value:g}: ")
    return asimov_data(objective.model, result.values), result
