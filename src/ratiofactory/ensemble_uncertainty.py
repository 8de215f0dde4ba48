"""Ratio-model uncertainty from ensembles: the per-event spread and the spurious-signal table.

An ensemble of K networks, each trained on a Poisson(1)-bootstrapped copy of the
training data, estimates a ratio by its mean; the members' spread measures the
finite-training-sample uncertainty (ATLAS NSBI, arXiv:2412.01600).

- :func:`ratio_spreads`: per sample, the members' relative spread std_k(r_jk(x_i)) /
  r_j(x_i) per event (median, 95 % quantile) and that of the mean (÷√K).
- :func:`spurious_signal_table`: Δμ̂(μ) on a grid of μ. At each μ, the Asimov data of
  the workspace's model (ensemble means, nuisance parameters nominal) are fitted by
  models whose ratios are the means of B bootstrap resamples of the members (K draws
  with replacement, the same draws for every sample of the channel); Δμ̂(μ) is the standard deviation of the
  B best-fit μ̂ (by default half the width of their central 68.27 %, which is σ for a
  Gaussian and is not dominated by the rare resample whose fit lands in another minimum
  of the likelihood; ``spread="std"`` takes the standard deviation): the spread of the
  *ensemble mean*, which is what the analysis uses.
  ``estimator="members"`` fits each member alone instead (the spread of one network,
  ≈ √K larger).
- :func:`add_spurious_signal`: a new spec with the table as the channel's
  ``spurious_signal`` (see :mod:`ratiofactory.spurious_signal`).

The per-event networks are evaluated once: resamples only average cached member arrays,
and the fits reuse one compiled jax likelihood with the arrays as arguments.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf

from .errors import InvalidModel
from .infer._format import fmt, table
from .spurious_signal import SpuriousSignal

__all__ = ["RatioSpread", "SpuriousSignalTable", "add_spurious_signal", "ratio_spreads", "spurious_signal_table"]

ESTIMATORS = ("mean", "members")
SPREADS = ("central68", "std")


@dataclass(frozen=True)
class RatioSpread:
    """The ensemble spread of one sample's ratio, relative to the mean, over its events."""

    channel: str
    sample: str
    members: int
    median: float | None
    quantile_95: float | None
    of_mean_median: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ratio_spreads(model: Any) -> list[RatioSpread]:
    """Per unbinned sample: median and 95 % quantile over the channel's events (observed
    and reference) of std_k(r_k)/r̄ (ddof 1), and the median of the mean's, ÷√K
    (``None`` for a single model)."""
    spreads = []
    for channel in model.unbinned_channels:
        for sample in channel.samples:
            members = np.asarray(sample.ratio_members)
            k = members.shape[0]
            if k < 2 or members.shape[1] == 0 or getattr(sample, "parameterised", None) is not None:
                spreads.append(RatioSpread(channel.name, sample.name, k, None, None, None))
                continue
            relative = members.std(axis=0, ddof=1) / members.mean(axis=0)
            median = float(np.median(relative))
            spreads.append(RatioSpread(channel.name, sample.name, k, median,
                                       float(np.quantile(relative, 0.95)), float(median / np.sqrt(k))))
    return spreads


@dataclass(frozen=True)
class SpuriousSignalTable:
    """Δμ̂ on a grid of the POI, with what it was computed from.

    ``bias``: mean of the resamples' μ̂ minus the ensemble mean's μ̂; ``closure``: the
    ensemble mean's μ̂ minus μ (0 when the Asimov fit returns its input); ``at_bound``:
    resample fits whose μ̂ sits on a bound of the POI (their spread is truncated there).
    """

    channel: str
    parameter: str
    grid: tuple[float, ...]
    delta: tuple[float, ...]
    bias: tuple[float, ...]
    at_bound: tuple[int, ...]
    fits: int
    members: int
    estimator: str
    seed: int
    closure: tuple[float, ...] = ()
    spread: str = "central68"
    fitted: tuple[tuple[float, ...], ...] = ()

    def spurious_signal(self, name: str = "alpha_ss") -> SpuriousSignal:
        """The table as a :class:`SpuriousSignal` with nuisance parameter ``name``."""
        return SpuriousSignal(name, self.parameter, self.grid, self.delta)

    def provenance(self) -> dict[str, Any]:
        return {"method": "Asimov fits with ratio models varied within their ensemble",
                "estimator": self.estimator, "fits_per_point": self.fits, "members": self.members,
                "spread": self.spread, "seed": self.seed, "bias": list(self.bias),
                "closure": list(self.closure), "at_bound": list(self.at_bound),
                "std": [float(np.std(f, ddof=1)) for f in self.fitted]}

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "parameter": self.parameter, "grid": list(self.grid),
                "delta": list(self.delta), **self.provenance()}

    def __str__(self) -> str:
        rows = [[fmt(m), fmt(d), fmt(b), fmt(c), str(n)] for m, d, b, c, n in
                zip(self.grid, self.delta, self.bias, self.closure, self.at_bound, strict=True)]
        what = "bootstrap resamples of the mean" if self.estimator == "mean" else "single members"
        return table([self.parameter, "delta mu_hat", "bias", "closure", "at bound"], rows,
                     f"Spurious signal of {self.channel}: {self.fits} fits per point ({what}, K = {self.members})")


def spurious_signal_table(
    workspace: Any,
    grid: Sequence[float],
    *,
    channel: str | None = None,
    measurement: str | None = None,
    n_bootstrap: int = 40,
    estimator: str = "mean",
    seed: int = 0,
    spread: str = "central68",
) -> SpuriousSignalTable:
    """Δμ̂(μ) of ``channel``'s ensembles on ``grid`` (see the module doc).

    Runs on jax (float64). The model's POI is the parameter; a ``spurious_signal``
    already in the channel is held at α = 0.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if n_bootstrap < 2 and estimator == "mean":
        raise ValueError(f"n_bootstrap must be at least 2, got {n_bootstrap}")
    previous = pyhf.get_backend()
    pyhf.set_backend("jax", precision="64b")
    try:
        model = workspace.model(measurement)
        index, target = _ensemble_channel(model, channel)
        fitter = _AsimovFitter(model, target)
        rng = np.random.default_rng(seed)
        members = [np.asarray(s.ratio_members) for s in target.samples]
        k = max(m.shape[0] for m in members)
        deltas, biases, at_bound, closure, fits = [], [], [], [], []
        for mu in grid:
            data = fitter.asimov(float(mu))
            if estimator == "mean":
                draws = [_resample(members, rng) for _ in range(n_bootstrap)]
            else:
                draws = [[np.array([j % m.shape[0]]) for m in members] for j in range(k)]
            nominal = fitter.fit(data, [m.mean(axis=0) for m in members], index, float(mu))
            fitted = np.array([fitter.fit(data, [m[i].mean(axis=0) for m, i in zip(members, d, strict=True)],
                                          index, float(mu)) for d in draws])
            fits.append(tuple(float(v) for v in fitted))
            deltas.append(_spread(fitted, spread))
            biases.append(float(np.mean(fitted) - nominal))
            closure.append(nominal - float(mu))
            lo, hi = fitter.poi_bounds
            at_bound.append(int(np.sum((fitted <= lo + 1e-6) | (fitted >= hi - 1e-6))))
    finally:
        pyhf.set_backend(*previous)
    return SpuriousSignalTable(target.name, model.config.poi_name, tuple(float(m) for m in grid), tuple(deltas),
                               tuple(biases), tuple(at_bound), len(draws), k, estimator, seed, tuple(closure),
                               spread, tuple(fits))


def _spread(values: np.ndarray, how: str) -> float:
    """``central68``: half the width of the central 68.27 % of the values (σ for a
    Gaussian, insensitive to rare fits in another minimum); ``std``: standard deviation."""
    if how == "std":
        return float(np.std(values, ddof=1))
    lo, hi = np.quantile(values, [0.158655, 0.841345])
    return float(0.5 * (hi - lo))


def _resample(members: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Member indices of one bootstrap resample per sample: K draws with replacement, the
    same draws for every sample when their ensembles have one size (member k of every
    sample is then one replica of the training, and the correlations between the
    samples' networks, e.g. a shared denominator network, are kept)."""
    sizes = {m.shape[0] for m in members}
    if len(sizes) == 1:
        draw = rng.integers(0, sizes.pop(), next(iter(members)).shape[0])
        return [draw] * len(members)
    return [np.asarray(rng.integers(0, m.shape[0], m.shape[0])) for m in members]


def _ensemble_channel(model: Any, name: str | None) -> tuple[int, Any]:
    channels = list(model.unbinned_channels)
    with_ensembles = [c for c in channels if any(np.asarray(s.ratio_members).shape[0] > 1 for s in c.samples)]
    if name is None:
        if not with_ensembles:
            raise InvalidModel('the workspace has no ensemble ratio models (a sample ratio with an "ensemble" of'
                               " more than one member) to vary: the spurious signal is the spread of the fit over"
                               " the ensembles' members")
        if len(with_ensembles) > 1:
            found = ", ".join(c.name for c in with_ensembles)
            raise InvalidModel(f"several unbinned channels have ensemble ratio models ({found}): name the channel"
                               " whose ensembles to vary")
        target = with_ensembles[0]
    else:
        matches = [c for c in channels if c.name == name]
        if not matches:
            raise InvalidModel(f"no unbinned channel '{name}'; unbinned channels: {', '.join(c.name for c in channels)}")
        target = matches[0]
        if target not in with_ensembles:
            raise InvalidModel(f"channel '{name}' has no ensemble of ratio models to vary")
    if any(getattr(s, "parameterised", None) is not None for s in target.samples):
        raise InvalidModel(f"channel '{target.name}' has a parameterised ratio r(x | θ): its ensembles "
                           "cannot be resampled from cached arrays")
    if model.config.poi_name is None:
        raise InvalidModel("the measurement has no POI: the spurious signal is a spread of the POI's fit")
    return channels.index(target), target


class _AsimovFitter:
    """Fits of one model's Asimov data with the ratio arrays of one channel replaced."""

    def __init__(self, model: Any, channel: Any) -> None:
        import jax
        import jax.numpy as jnp

        from .model import traceable_logpdf

        self.model, self.channel = model, channel
        config = model.config
        self.poi = config.poi_index
        self.init = np.asarray(config.suggested_init(), float)
        bounds = np.asarray(config.suggested_bounds(), float)
        self.fixed = np.asarray(config.suggested_fixed(), bool)
        shift = channel.spurious_signal
        if shift is not None:  # the table is computed without the spurious signal
            where = config.par_slice(shift.name).start
            self.init[where], self.fixed[where] = 0.0, True
        self.free = ~self.fixed
        self.bounds = [tuple(b) for b in bounds[self.free]]
        self.poi_bounds = tuple(bounds[self.poi])
        logpdf, arrays = traceable_logpdf(model)
        self._treedef = jax.tree_util.tree_structure(arrays)
        self._arrays = arrays
        self._value_and_grad = jax.jit(jax.value_and_grad(lambda p, d, a: -logpdf(p, d, a)[0]))
        self._jnp = jnp

    def asimov(self, mu: float) -> Any:
        pars = self.init.copy()
        pars[self.poi] = mu
        return self.model.expected_data(self._jnp.asarray(pars))

    def _arrays_with(self, ratios: Sequence[np.ndarray], index: int) -> Any:
        import jax

        from .model import Model

        samples = tuple(dataclasses.replace(s, ratio=r) for s, r in zip(self.channel.samples, ratios, strict=True))
        channels = list(self.model.unbinned_channels)
        channels[index] = dataclasses.replace(self.channel, samples=samples)
        variant = Model(config=self.model.config, binned=self.model.binned, channels=channels,
                        binned_parameters=self.model._binned_parameters)
        leaves = jax.tree_util.tree_leaves(variant._channel_tensors(self._jnp))
        return jax.tree_util.tree_unflatten(self._treedef, leaves)

    def fit(self, data: Any, ratios: Sequence[np.ndarray], index: int, mu: float) -> float:
        """μ̂ of ``data`` with the channel's ratios replaced by ``ratios``."""
        from scipy.optimize import minimize

        arrays = self._arrays_with(ratios, index)
        start = self.init.copy()
        start[self.poi] = mu

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            pars = start.copy()
            pars[self.free] = x
            value, grad = self._value_and_grad(self._jnp.asarray(pars), data, arrays)
            return float(value), np.asarray(grad)[self.free]

        lo, hi = self.poi_bounds
        best = None
        for guess in (mu, lo + 0.25 * (mu - lo), min(hi, 2 * mu + 0.5)):  # the best of 3 starts in mu:
            x0 = start.copy()  # the likelihood may have a second minimum along the POI
            x0[self.poi] = guess
            result = minimize(objective, x0[self.free], jac=True, method="L-BFGS-B", bounds=self.bounds,
                              options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 500})
            if result.success and np.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
        if best is None:
            raise InvalidModel(f"the Asimov fits at {self.model.config.poi_name} = {mu} failed: {result.message}")
        pars = start.copy()
        pars[self.free] = best.x
        return float(pars[self.poi])


def add_spurious_signal(spec: Mapping[str, Any], table: SpuriousSignalTable, name: str = "alpha_ss") -> dict[str, Any]:
    """A copy of ``spec`` whose channel ``table.channel`` has the table as its
    ``spurious_signal`` (nuisance parameter ``name``); ``spec`` is not modified."""
    out = copy.deepcopy(dict(spec))
    for channel in out.get("unbinned_channels", []):
        if channel["name"] == table.channel:
            channel["spurious_signal"] = {**table.spurious_signal(name).to_spec(), "provenance": table.provenance()}
            return out
    raise InvalidModel(f"no unbinned channel '{table.channel}' in the workspace")
