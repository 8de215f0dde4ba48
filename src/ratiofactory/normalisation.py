"""Each sample's ratios normalised on the reference sample, and what that tells about them.

A ratio model r_j = p_j/p_ref integrates to one over p_ref; on the reference events x_i
(weights w_i, Σ_i w_i = 1) its integral is estimated by

    N_j = Σ_i w_i r_j(x_i)                       (standard error √(Σ_i w_i² (r_j(x_i) − N_j)²)),

and a shape systematic's E_{p_j}[g^±] = 1 by K_jk^± = Σ_i w_i r_j g_jk^± / N_j. N_j and
K^± differ from one by the network's training error and by the reference sample's Monte
Carlo error. With ``ratio_normalisation: "reference"`` (the default when a channel has a
reference sample) the likelihood uses r_j/N_j and g^±/K^±, so that the yields ν(θ) and the
reweighted reference sample the Asimov data are built from agree exactly
(docs/schema.md). :func:`normalisation_report` gives the numbers, with the Kish effective
sample sizes (Σ w)²/Σ w² of the reference sample (weights w_i) and of each sample in it
(weights w_i r_j(x_i)), and one-line warnings.

>>> values = np.array([0.5, 1.5, 1.0, 1.0])
>>> mean, error = weighted_mean_and_error(np.full(4, 0.25), values)
>>> float(mean), round(float(error), 4)
(1.0, 0.1768)
>>> weighted_mean_and_error(np.full(3, 1 / 3), np.full(3, 0.7))[1]  # a constant has no MC error
0.0
>>> kish_effective_size(np.array([1.0, 1.0, 2.0]))
2.6666666666666665
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compile import UnbinnedChannel

__all__ = [
    "DRIFT_LIMIT",
    "MIN_EFFECTIVE_EVENTS",
    "PULL_LIMIT",
    "ChannelNormalisation",
    "NormalisationReport",
    "SampleNormalisation",
    "SystematicNormalisation",
    "channel_normalisation",
    "drift_warnings",
    "kish_effective_size",
    "likelihood_arrays",
    "normalisation_report",
    "reference_factors",
    "weighted_mean_and_error",
]

PULL_LIMIT = 3.0
"""A factor further than this many standard errors from one is reported."""
MIN_EFFECTIVE_EVENTS = 100.0
"""A Kish effective sample size below this is reported: the reference sample then
estimates a sample's integrals to worse than ~10 % (1/√ESS)."""
DRIFT_LIMIT = 0.01
"""With ``shape_normalisation: "nominal"`` a shape drift I_j(α̂)/I_j(0) further than this
from one is reported: the density then carries a yield ν(θ) does not (docs/schema.md)."""
ROUNDING = 1e-10
"""|factor − 1| below this is rounding, whatever the standard error (a constant ratio of
one has none)."""


def weighted_mean_and_error(weights: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(Σ_i w_i v_i, √(Σ_i w_i² (v_i − v̄)²)) for weights summing to one.

    The spread is taken about the first value before the mean is subtracted, so a
    constant ``values`` has exactly zero standard error (not a rounding residue).
    """
    if values.size == 0:
        return 0.0, 0.0
    mean = float(np.dot(weights, values))
    shifted = values - values[0]
    spread = shifted - np.dot(weights, shifted) / np.sum(weights)
    return mean, float(np.sqrt(np.sum((weights * spread) ** 2)))


def kish_effective_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (Σ w)² / Σ w² (0 for no events)."""
    total, squares = float(np.sum(weights)), float(np.sum(weights**2))
    return total * total / squares if squares > 0 else 0.0


def _pull(value: float, error: float) -> float:
    diff = value - 1.0
    if abs(diff) <= ROUNDING:
        return 0.0
    return diff / error if error > 0 else float(np.copysign(np.inf, diff))


def reference_factors(channel: UnbinnedChannel) -> list[tuple[float, list[tuple[float, float]]]]:
    """Per sample (N_j, [(K_jk^+, K_jk^−) per shape systematic]) on the reference events."""
    ref = slice(channel.n_observed, channel.n_events)
    w = channel.reference_weights
    factors: list[tuple[float, list[tuple[float, float]]]] = []
    for sample in channel.samples:
        if sample.parameterised is not None:  # r(x | θ): normalised in the likelihood at each θ
            factors.append((1.0, []))
            continue
        ratio = sample.ratio[ref]
        norm = float(np.dot(w, ratio))
        shapes = [(float(np.dot(w, ratio * m.hi[ref])) / norm, float(np.dot(w, ratio * m.lo[ref])) / norm)
                  for m in sample.shapesys]
        factors.append((norm, shapes))
    return factors


def likelihood_arrays(channel: UnbinnedChannel) -> list[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]]:
    """Per sample (r_j, [(g^+, g^−) per shape systematic]) on the channel's event set as the
    likelihood uses them: divided by N_j and K^± with ``ratio_normalisation: "reference"``,
    the networks' outputs otherwise (what an export of the model must write)."""
    if channel.ratio_normalisation != "reference" or not channel.n_reference:
        return [(s.ratio, [(m.hi, m.lo) for m in s.shapesys]) for s in channel.samples]
    arrays = []
    for sample, (norm, shapes) in zip(channel.samples, reference_factors(channel), strict=True):
        arrays.append((sample.ratio / norm, [(m.hi / k_hi, m.lo / k_lo)
                                             for m, (k_hi, k_lo) in zip(sample.shapesys, shapes, strict=True)]))
    return arrays


@dataclass(frozen=True)
class SystematicNormalisation:
    """K^± = Σ w r_j g^± / Σ w r_j of one shape systematic (one when g^± is normalised)."""

    parameter: str
    hi: float
    hi_error: float
    lo: float
    lo_error: float

    def to_dict(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "hi": self.hi, "hi_error": self.hi_error,
                "lo": self.lo, "lo_error": self.lo_error}


@dataclass(frozen=True)
class SampleNormalisation:
    """N_j = Σ_i w_i r_j(x_i) of one sample with its Monte Carlo standard error and the
    Kish effective number of reference events that represent the sample."""

    sample: str
    factor: float
    standard_error: float
    effective_events: float
    systematics: tuple[SystematicNormalisation, ...] = ()

    @property
    def pull(self) -> float:
        """(N_j − 1) in standard errors (0 within rounding; ±inf for a constant ratio ≠ 1)."""
        return _pull(self.factor, self.standard_error)

    def to_dict(self) -> dict[str, Any]:
        return {"sample": self.sample, "factor": self.factor, "standard_error": self.standard_error,
                "pull": self.pull, "effective_events": self.effective_events,
                "systematics": [s.to_dict() for s in self.systematics]}


@dataclass(frozen=True)
class ChannelNormalisation:
    """The reference sample of one unbinned channel and its samples' factors."""

    channel: str
    ratio_normalisation: str
    shape_normalisation: str
    reference_events: int
    effective_events: float
    samples: tuple[SampleNormalisation, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "ratio_normalisation": self.ratio_normalisation,
                "shape_normalisation": self.shape_normalisation, "reference_events": self.reference_events,
                "effective_events": self.effective_events, "samples": [s.to_dict() for s in self.samples]}


@dataclass(frozen=True)
class NormalisationReport:
    """:class:`ChannelNormalisation` of every unbinned channel with a reference sample."""

    channels: tuple[ChannelNormalisation, ...]

    def warnings(self) -> list[str]:
        """One line per factor more than :data:`PULL_LIMIT` standard errors from one and
        per effective sample size below :data:`MIN_EFFECTIVE_EVENTS`."""
        lines = []
        for chan in self.channels:
            applied = chan.ratio_normalisation == "reference"
            fix = ("the likelihood divides it out (ratio_normalisation 'reference')" if applied else
                   "the yields and the Asimov data disagree; set ratio_normalisation 'reference' or retrain")
            if chan.effective_events < MIN_EFFECTIVE_EVENTS:
                lines.append(f"channel {chan.channel!r}: the reference sample has an effective size of only "
                             f"{chan.effective_events:.1f} events (Kish)")
            for s in chan.samples:
                where = f"channel {chan.channel!r}, sample {s.sample!r}"
                if abs(s.pull) > PULL_LIMIT:
                    lines.append(f"{where}: the ratio integrates to {s.factor:.6g} ± {s.standard_error:.2g} over "
                                 f"the reference sample ({s.pull:+.1f} standard errors from 1); {fix}")
                if s.effective_events < MIN_EFFECTIVE_EVENTS:
                    lines.append(f"{where}: only {s.effective_events:.1f} effective reference events (Kish, weights "
                                 "w_ref·r); its integrals over the reference sample are imprecise")
                if not applied:  # with 'reference' the likelihood divides g± by these averages
                    lines += _systematic_warnings(where, s.systematics)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"channels": [c.to_dict() for c in self.channels], "warnings": self.warnings()}

    def __str__(self) -> str:
        lines = [f"{'channel':<12} {'sample':<12} {'factor':>10} {'error':>9} {'pull':>7} {'ESS':>10}"]
        for c in self.channels:
            lines.append(f"{c.channel:<12} {'(reference)':<12} {'':>10} {'':>9} {'':>7} {c.effective_events:>10.1f}")
            for s in c.samples:
                lines.append(f"{c.channel:<12} {s.sample:<12} {s.factor:>10.6f} {s.standard_error:>9.2g} "
                             f"{s.pull:>+7.2f} {s.effective_events:>10.1f}")
        return "\n".join(lines)


def _systematic_warnings(where: str, systematics: Sequence[SystematicNormalisation]) -> list[str]:
    """Lines for ratiosys variations g± whose average over the sample differs from one: with
    ``ratio_normalisation: "none"`` they change the sample's yield with α."""
    lines = []
    for m in systematics:
        for side, value, error in (("hi", m.hi, m.hi_error), ("lo", m.lo, m.lo_error)):
            pull = _pull(value, error)
            if abs(pull) > PULL_LIMIT:
                lines.append(f"{where}: ratiosys {m.parameter!r} {side} averages {value:.6g} ± {error:.2g} over "
                             f"the sample ({pull:+.1f} standard errors from 1), so the sample's yield changes with "
                             f"{m.parameter!r}; ratio_normalisation 'reference' divides the variations by their averages")
    return lines


def _sample_normalisation(channel: UnbinnedChannel, j: int) -> SampleNormalisation:
    ref = slice(channel.n_observed, channel.n_events)
    w = channel.reference_weights
    sample = channel.samples[j]
    ratio = sample.ratio[ref]
    factor, error = weighted_mean_and_error(w, ratio)
    systematics = []
    for m in sample.shapesys:
        sample_weights = w * ratio / factor  # the reference events reweighted to p_j
        hi, hi_error = weighted_mean_and_error(sample_weights, m.hi[ref])
        lo, lo_error = weighted_mean_and_error(sample_weights, m.lo[ref])
        systematics.append(SystematicNormalisation(m.parameter, hi, hi_error, lo, lo_error))
    return SampleNormalisation(sample.name, factor, error, kish_effective_size(w * ratio), tuple(systematics))


def channel_normalisation(channel: UnbinnedChannel) -> ChannelNormalisation:
    """The :class:`ChannelNormalisation` of a channel with a reference sample (samples with
    a parameterised ratio r(x | θ) left out: their integral depends on θ)."""
    return ChannelNormalisation(
        channel=channel.name,
        ratio_normalisation=channel.ratio_normalisation,
        shape_normalisation=channel.shape_normalisation,
        reference_events=channel.n_reference,
        effective_events=kish_effective_size(channel.reference_weights),
        samples=tuple(_sample_normalisation(channel, j) for j, sample in enumerate(channel.samples)
                      if sample.parameterised is None),  # r(x | θ) is normalised at every θ
    )


def normalisation_report(model: Any) -> NormalisationReport:
    """The reference-sample normalisation of every unbinned channel of ``model`` that has
    a reference sample (an empty report for other models)."""
    channels = getattr(model, "unbinned_channels", ())
    return NormalisationReport(tuple(channel_normalisation(c) for c in channels if c.n_reference))


def drift_warnings(model: Any, drift: dict[str, dict[str, float]]) -> list[str]:
    """One line per sample of a ``shape_normalisation: "nominal"`` channel whose shape drift
    (:meth:`ratiofactory.model.Model.shape_drift`) is further than :data:`DRIFT_LIMIT` from one."""
    modes = {c.name: c.shape_normalisation for c in getattr(model, "unbinned_channels", ())}
    return [
        f"channel {channel!r}, sample {sample!r}: its shape systematics change its integral over the "
        f"reference sample by a factor {value:.4g} at these parameters, which ν(θ) does not follow "
        "(shape_normalisation 'nominal'); a fit can run towards a bound this way: see docs/schema.md"
        for channel, samples in drift.items() if modes.get(channel) == "nominal"
        for sample, value in samples.items() if abs(value - 1.0) > DRIFT_LIMIT
    ]
