"""Sparse toy likelihood: evaluate s(x;θ) only on the events a toy actually weighs.

A toy's reference-event weights are Poisson with mean ``w_i^ref · s_i``: with 2000
expected events on 50 000 reference events ~96 % of them are 0 and do not enter
``Σ_i w_i ln s_i``. For unbinned channels without per-event shape systematics,
``s(x_i;θ) = Σ_j c_j(θ) r_j(x_i)`` needs only the ratios of the selected events, so each
toy is passed as (indices, weights) of its non-zero events (padded with weight 0) and
the fit reads ~25x fewer numbers. ``ν(θ)``, binned channels and constraints are the
model's own. The sparse ``−2 ln L`` is checked against the model's on the first toy;
any model it does not cover falls back to the dense likelihood.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ..likelihood import _coefficient, expected_yield
from .generate import SparseToys

__all__ = ["SparseLikelihood"]

_LOG_2PI = float(np.log(2 * np.pi))


class SparseLikelihood:
    """``−2 ln L`` of a ratiofactory model on toys given as non-zero event lists."""

    def __init__(self, model: Any) -> None:
        import jax.numpy as jnp

        self._model = weakref.ref(model)  # cached per model by vfit: no strong reference back
        self.tensors = model._channel_tensors(jnp)
        self.ratios = [jnp.stack([s.ratio for s in t.samples]) for t in self.tensors]
        self.slices = list(model._event_slices)
        self.binned_main, self.binned_aux = model._binned_main, model._binned_aux
        self.aux_start = model.config.nmaindata
        self.widths = [0] * len(self.slices)  # only grow: few shapes, few compilations

    @staticmethod
    def supports(model: Any) -> bool:
        """Unbinned ratiofactory models whose samples have no per-event shape systematics."""
        channels = getattr(model, "unbinned_channels", ())
        return bool(channels) and all(not s.shapesys for c in channels for s in c.samples) and hasattr(
            model, "_channel_tensors")

    def pack(self, toys: np.ndarray | SparseToys,
             pad_to: int = 512) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
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
        (rows increasing), zero-padded to a width that only grows (few compilations)."""
        counts = np.bincount(rows, minlength=n)
        width = max(pad_to, int(-(-counts.max(initial=0) // pad_to) * pad_to), self.widths[channel])
        self.widths[channel] = width
        filled = np.arange(width) < counts[:, None]  # row-major order: each row's values in order
        idx = np.zeros((n, width), dtype=np.int32)
        w = np.zeros((n, width))
        idx[filled], w[filled] = cols, values
        return idx, w

    def twice_nll(self, pars: Any, packed: Any, ratios: Any) -> Any:
        """``−2 ln L`` at ``pars`` of toys ``packed`` by :meth:`pack`; ``ratios`` is
        :attr:`ratios` (an argument so that jit does not fold it in as a constant)."""
        import jax.numpy as jnp

        rest, indices, weights = packed
        model = self._model()
        n_bmain = self.binned_main.stop - self.binned_main.start
        total = jnp.asarray(0.0)
        if model.binned is not None:
            n_baux = self.binned_aux.stop - self.binned_aux.start
            binned_data = rest[: n_bmain + n_baux]
            total = total + model.binned_logpdf(pars, binned_data, jnp)
        for tensors, channel_ratios, idx, w in zip(self.tensors, ratios, indices, weights, strict=True):
            coefs = jnp.stack([_coefficient(c, tensors.index, pars, jnp) for c in tensors.channel.samples])
            s = coefs @ channel_ratios[:, idx]
            positive = s > 0
            log_s = jnp.log(jnp.where(positive, s, 1.0))
            invalid = jnp.any((w > 0) & ~positive)
            nll = expected_yield(tensors, pars, jnp) - jnp.sum(jnp.where(w > 0, w * log_s, 0.0))
            total = total - jnp.where(invalid, jnp.inf, nll)
        for par_index, aux_index, sigma in model._constraints:
            pull = (rest[n_bmain + aux_index - self.aux_start] - pars[par_index]) / sigma
            total = total - 0.5 * pull**2 - np.log(sigma) - 0.5 * _LOG_2PI
        return -2.0 * total
