"""Sparse toy likelihood: a toy's unbinned part read only on the events it drew.

A toy's reference-event weights are Poisson with mean ``w_i^ref · s_i``: with ~1000
expected events on 100 000 reference events ~99 % of them are 0 and do not enter
``Σ_i w_i ln s_i``. Each toy is therefore passed as (indices, weights) of its non-zero
events per unbinned channel (padded with weight 0), and the per-event quantities of those
events — the ratios r_j and the interpolation arrays of the per-event shape systematics
(hi, lo and their logarithms) — are gathered once per toy, before its fit:

    s(x_i;θ) = Σ_j c_j(θ) D_j(α) r_j(x_i) Π_k g_jk(x_i, α_k)   for the toy's events only,

with ``c_j`` the coefficient of the dense likelihood (:mod:`ratiofactory.likelihood`) and
``D_j = 1`` (``shape_normalisation: "nominal"``) or ``N_j(0)/N_j(α)`` (``"reference"``).
``N_j(α)``, the reference-sample integral of the shape factors, does not depend on the toy:
it comes from moments of the reference sample summed once (:mod:`.shape_integrals`), so no
evaluation reads the whole sample. ``ν(θ)``, binned channels and constraints are the
model's own. The result equals the dense ``−2 ln L`` to round-off (tests: 1e-10); vfit
checks it on the first toy of each model and falls back to the dense likelihood if not.

Written once for numpy (one toy at a time, for MIGRAD) and jax (vmapped over toys).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ..errors import InvalidModel
from ..interpolation import PreparedInterpolation
from ..likelihood import _coefficient, expected_yield
from . import shape_integrals
from .generate import SparseToys

__all__ = ["SparseLikelihood"]

_LOG_2PI = float(np.log(2 * np.pi))


def _alpha_bounds(model: Any, bounds: np.ndarray | None) -> dict[int, tuple[float, float]]:
    limits = np.asarray(model.config.suggested_bounds() if bounds is None else bounds, dtype=float)
    return {i: (float(lo), float(hi)) for i, (lo, hi) in enumerate(limits)}


class SparseLikelihood:
    """``−2 ln L`` of a ratiofactory model on toys given as non-zero event lists.

    ``xp`` is numpy or jax.numpy; ``bounds`` (the fit's parameter bounds, default the
    model's) set the α range over which the reference integrals are exact.
    """

    def __init__(self, model: Any, xp: Any = None, bounds: np.ndarray | None = None) -> None:
        if xp is None:
            import jax.numpy as xp
        self.xp = xp
        self._model = weakref.ref(model)  # cached per model by vfit: no strong reference back
        self.tensors = model._channel_tensors(np)  # arrays moved to xp in _arrays (no eager jax ops)
        self.slices = list(model._event_slices)
        self.binned_main, self.binned_aux = model._binned_main, model._binned_aux
        self.aux_start = model.config.nmaindata
        self.widths = [0] * len(self.slices)  # only grow: few shapes, few compilations
        limits = _alpha_bounds(model, bounds)
        self.integrals = [self._integrals(t, limits) for t in self.tensors]
        self.arrays = self._arrays()

    @staticmethod
    def supports(model: Any) -> bool:
        """ratiofactory models with at least one unbinned channel and no parameterised ratio
        (r(x | θ) is evaluated on all events at every θ: those use the dense likelihood)."""
        channels = getattr(model, "unbinned_channels", ())
        if any(getattr(s, "parameterised", None) is not None for c in channels for s in c.samples):
            return False
        return bool(channels) and hasattr(model, "_channel_tensors")

    @staticmethod
    def shape_parameters(model: Any) -> list[int]:
        """Indices of the parameters of per-event shape systematics in ``reference`` mode (their
        bounds set the range of the precomputed integrals)."""
        names = {m.parameter for c in model.unbinned_channels if c.shape_normalisation == "reference"
                 for s in c.samples for m in s.shapesys}
        return sorted(model.config.par_slice(name).start for name in names)

    # ------------------------------------------------------------------ precomputation

    def _integrals(self, tensors: Any, limits: dict[int, tuple[float, float]]) -> list[Any]:
        """Per sample: a :class:`~.shape_integrals.ShapeIntegral`, ``"dense"`` (summed over the
        reference sample at each evaluation) or None (no renormalisation)."""
        channel = tensors.channel
        if channel.shape_normalisation != "reference":
            return [None] * len(channel.samples)
        ref = tensors.reference_slice
        weights = np.asarray(tensors.reference_weights, float)
        found: list[Any] = []
        for sample in tensors.samples:  # the likelihood's own (possibly normalised) arrays
            if not sample.shapesys:
                found.append(None)
                continue
            systematics = [(p.code, [np.asarray(a)[ref] for a in p.arrays], limits[i]) for i, p in sample.shapesys]
            integral = shape_integrals.build(weights * np.asarray(sample.ratio)[ref], systematics, self.xp)
            found.append("dense" if integral is None else integral)
        return found

    def _arrays(self) -> list[dict[str, Any]]:
        """Per channel the per-event arrays (gathered per toy) and the integrals' tensors:
        a pytree passed to the compiled fit as an argument, never folded in as a constant."""
        put = self.xp.asarray
        arrays = []
        for tensors, integrals in zip(self.tensors, self.integrals, strict=True):
            ref = tensors.reference_slice
            arrays.append({
                "ratio": [put(s.ratio) for s in tensors.samples],
                "shapes": [[tuple(put(a) for a in p.arrays) for _, p in s.shapesys] for s in tensors.samples],
                "tensors": [i.tensor if isinstance(i, shape_integrals.ShapeIntegral) else None for i in integrals],
                "reference": [
                    (put(s.ratio[ref]), [tuple(put(a[ref]) for a in p.arrays) for _, p in s.shapesys])
                    if i == "dense" else None
                    for s, i in zip(tensors.samples, integrals, strict=True)],
                "reference_weights": put(tensors.reference_weights),
            })
        return arrays

    # ------------------------------------------------------------------ packing toys

    def pack(self, toys: np.ndarray | SparseToys,
             pad_to: int = 128) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(dense rest: binned counts then auxdata; per channel indices and weights (n, K)),
        from dense toy rows or :class:`SparseToys`."""
        if isinstance(toys, SparseToys):
            return self._pack_sparse(toys, pad_to)
        rest = np.concatenate([toys[:, self.binned_main], toys[:, self.aux_start:]], axis=1)
        indices, weights = [], []
        for c, events in enumerate(self.slices):
            block = toys[:, events]
            rows, cols = np.divmod(np.flatnonzero(block > 0), block.shape[1])  # each row's events in order
            idx, w = self._padded(c, len(toys), rows, cols, block[rows, cols], pad_to)
            indices.append(idx)
            weights.append(w)
        return rest, indices, weights

    def pack_one(self, toy: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """One dense toy row as (rest, indices, weights) without padding (numpy fits)."""
        rest = np.concatenate([toy[self.binned_main], toy[self.aux_start:]])
        chosen = [np.flatnonzero(toy[events] > 0) for events in self.slices]
        return rest, chosen, [toy[events][i] for events, i in zip(self.slices, chosen, strict=True)]

    def _pack_sparse(self, toys: SparseToys, pad_to: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        n_binned = self.binned_main.stop
        rest = np.zeros((len(toys), n_binned + toys.aux.shape[1]))
        rest[:, n_binned:] = toys.aux
        rows = toys.rows
        edges = [n_binned] + [events.stop for events in self.slices[:-1]]
        block = sum((toys.entries >= edge).astype(np.int32) for edge in edges)  # 0: binned, c + 1: channel c
        if n_binned:
            binned = block == 0
            np.add.at(rest, (rows[binned], toys.entries[binned]), toys.counts[binned])
        indices, weights = [], []
        for c, events in enumerate(self.slices):
            mine = block == c + 1
            idx, w = self._padded(c, len(toys), rows[mine], toys.entries[mine] - events.start, toys.counts[mine],
                                  pad_to)
            indices.append(idx)
            weights.append(w)
        return rest, indices, weights

    def _padded(self, channel: int, n: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                pad_to: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, width) event indices and weights from the non-zero ``(row, col, value)``s
        (rows increasing), zero-padded to a width that only grows (few compilations): a
        multiple of ``pad_to`` holding the batch's largest toy and its mean number of
        entries plus 6 standard deviations (so that later batches rarely need a wider one)."""
        counts = np.bincount(rows, minlength=n)
        mean = float(counts.mean()) if n else 0.0
        needed = max(int(counts.max(initial=0)), int(np.ceil(mean + 6.0 * np.sqrt(mean))))
        width = max(pad_to, int(-(-needed // pad_to) * pad_to), self.widths[channel])
        self.widths[channel] = width
        filled = np.arange(width) < counts[:, None]  # row-major order: each row's values in order
        idx = np.zeros((n, width), dtype=np.int32)
        w = np.zeros((n, width))
        idx[filled], w[filled] = cols, values
        return idx, w

    # ------------------------------------------------------------------ the likelihood

    def gather(self, packed: Any, arrays: Any) -> Any:
        """One toy's inputs: (rest, per channel (weights, its events' ratios and shape arrays)).
        Done once per toy; :meth:`twice_nll_gathered` then reads nothing per reference event."""
        rest, indices, weights = packed
        channels = []
        for idx, w, channel in zip(indices, weights, arrays, strict=True):
            ratios = [r[idx] for r in channel["ratio"]]
            shapes = [[tuple(a[idx] for a in arrs) for arrs in sample] for sample in channel["shapes"]]
            channels.append((w, ratios, shapes))
        return rest, channels

    def twice_nll(self, pars: Any, packed: Any, arrays: Any) -> Any:
        """``−2 ln L`` at ``pars`` of the toy ``packed`` by :meth:`pack` (one row) or
        :meth:`pack_one`; ``arrays`` is :attr:`arrays`."""
        return self.twice_nll_gathered(pars, self.gather(packed, arrays), arrays)

    def twice_nll_gathered(self, pars: Any, toy: Any, arrays: Any) -> Any:
        """``−2 ln L`` at ``pars`` of a toy prepared by :meth:`gather` (+∞ where it is
        undefined, e.g. ν(θ) NaN, as the dense likelihood)."""
        rest, channels = toy
        total = self.rest_twice_nll(pars, rest, arrays)
        for c, (w, ratios, shapes) in enumerate(channels):
            s = sum(coef * factor for coef, factor in zip(self.coefficients(c, pars, arrays),
                                                          self.event_factors(c, pars, ratios, shapes), strict=True))
            total = total + self.events_twice_nll(w, s)
        return self.xp.where(self.xp.isnan(total) | (total == -self.xp.inf), self.xp.inf, total)

    def events_twice_nll(self, w: Any, s: Any) -> Any:
        """−2 Σ_i w_i ln s_i over a toy's events (+∞ if an event of weight ≠ 0 has s ≤ 0 or
        s infinite)."""
        xp = self.xp
        positive = (s > 0) & xp.isfinite(s)
        log_s = xp.log(xp.where(positive, s, 1.0))
        invalid = xp.any((w != 0) & ~positive)
        return xp.where(invalid, xp.inf, -2.0 * xp.sum(xp.where(w != 0, w * log_s, 0.0)))

    def rest_twice_nll(self, pars: Any, rest: Any, arrays: Any) -> Any:
        """The part of ``−2 ln L`` that reads no event: binned channels, constraints and
        +2 ν(θ) of each unbinned channel (``rest``: the toy's binned counts and auxdata)."""
        xp = self.xp
        model = self._model()
        if model is None:
            raise InvalidModel("the model of this sparse likelihood no longer exists")
        n_bmain = self.binned_main.stop - self.binned_main.start
        total = xp.asarray(0.0)
        if model.binned is not None:
            n_baux = self.binned_aux.stop - self.binned_aux.start
            total = total + model.binned_logpdf(pars, rest[: n_bmain + n_baux], xp)
        for tensors in self.tensors:
            total = total - expected_yield(tensors, pars, xp)
        for par_index, aux_index, sigma in model._constraints:
            pull = (rest[n_bmain + aux_index - self.aux_start] - pars[par_index]) / sigma
            total = total - 0.5 * pull**2 - np.log(sigma) - 0.5 * _LOG_2PI
        return -2.0 * total

    def coefficients(self, channel: int, pars: Any, arrays: Any) -> list[Any]:
        """C_j(θ) = c_j(θ) D_j(α) of each sample of ``channel``: s(x_i;θ) = Σ_j C_j F_j(x_i; α)."""
        tensors, integrals = self.tensors[channel], self.integrals[channel]
        found = []
        for j, (compiled, sample) in enumerate(zip(tensors.channel.samples, tensors.samples, strict=True)):
            coef = _coefficient(compiled, tensors.index, pars, self.xp)
            if integrals[j] is not None:
                coef = coef * (sample.reference_norm / self._integral(j, integrals[j], sample, arrays[channel], pars))
            found.append(coef)
        return found

    def event_factors(self, channel: int, pars: Any, ratios: list[Any], shapes: list[Any]) -> list[Any]:
        """F_j(x_i; α) = r_j(x_i) Π_k g_jk(x_i, α_k) of each sample on a toy's events."""
        return [self.sample_factor(channel, j, [pars[i] for i, _ in sample.shapesys], ratios[j], shapes[j])
                for j, sample in enumerate(self.tensors[channel].samples)]

    def sample_factor(self, channel: int, j: int, alphas: Any, ratio: Any, shapes: list[Any]) -> Any:
        """F_j for the α of sample ``j``'s own shape systematics (``alphas``, in their order)."""
        factor = ratio
        for k, ((_, prepared), arrs) in enumerate(zip(self.tensors[channel].samples[j].shapesys, shapes, strict=True)):
            factor = factor * PreparedInterpolation(prepared.code, arrs, self.xp)(alphas[k])
        return factor

    def _integral(self, j: int, integral: Any, sample: Any, channel_arrays: dict[str, Any], pars: Any) -> Any:
        """N_j(α) = Σ_ref w r_j Π_k g_jk(α): from the moment tensor, or summed per event."""
        alphas = [pars[i] for i, _ in sample.shapesys]
        if integral != "dense":
            return integral(alphas, channel_arrays["tensors"][j])
        ratio, shapes = channel_arrays["reference"][j]
        factor = ratio
        for (par_index, prepared), arrs in zip(sample.shapesys, shapes, strict=True):
            factor = factor * PreparedInterpolation(prepared.code, arrs, self.xp)(pars[par_index])
        return self.xp.sum(channel_arrays["reference_weights"] * factor)
