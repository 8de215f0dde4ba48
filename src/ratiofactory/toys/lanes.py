"""Many independent iterative fits in one compiled loop, without waiting for the slowest.

A ``jax.vmap`` of a ``while_loop`` keeps iterating every lane (a toy fit from one start)
until the last lane has finished: toy fits of the off-shell example take 4–6 Newton
iterations typically and 10–17 for a few per cent, so a plain vmapped loop spends most of
its work on lanes that have already finished. :func:`run_lanes` instead steps a window of
a quarter of the lanes at a time, refilled at every iteration with lanes that are not
finished yet (a work queue with static shapes: one compilation, one traced body). Each
lane's iterations are exactly those of its own loop (a finished lane is never updated and
lanes do not interact), so the results do not depend on the window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["WINDOW_FRACTION", "run_lanes", "window_size"]

WINDOW_FRACTION = 4
"""The window holds 1/WINDOW_FRACTION of the lanes (fits take ~4 times fewer iterations on
average than the slowest ones)."""


def window_size(n_lanes: int) -> int:
    """Lanes stepped per iteration: a quarter of them, at least 8 (or all, if fewer).

    >>> window_size(768), window_size(24), window_size(3)
    (192, 8, 3)
    """
    return min(n_lanes, max(8, n_lanes // WINDOW_FRACTION))


def run_lanes(step: Callable[[Any, Any], Any], finished: Callable[[Any], Any], state: Any,
              inputs_of: Callable[[Any], Any], window: bool = True) -> Any:
    """Iterate every lane of ``state`` (a pytree with a leading lane axis) with
    ``step(state_part, inputs_of(lanes))`` (acting on a window of lanes at once) until
    ``finished(state)`` (a boolean per lane) holds for all. ``window=False`` steps all
    lanes at every iteration (a plain vmapped loop). Traced under ``jax.jit``."""
    import jax
    import jax.numpy as jnp

    n_lanes = jax.tree_util.tree_leaves(state)[0].shape[0]
    size = window_size(n_lanes) if window else n_lanes

    def one_step(current: Any) -> Any:
        done = finished(current)
        # the first `size` unfinished lanes; short windows are filled with a finished lane,
        # which the masked update below leaves as it is
        lanes = jnp.nonzero(~done, size=size, fill_value=jnp.argmax(done))[0]
        part = jax.tree_util.tree_map(lambda a: a[lanes], current)
        new = step(part, inputs_of(lanes))
        kept = done[lanes]
        new = jax.tree_util.tree_map(
            lambda n, o: jnp.where(jnp.reshape(kept, kept.shape + (1,) * (n.ndim - 1)), o, n), new, part)
        return jax.tree_util.tree_map(lambda a, b: a.at[lanes].set(b), current, new)

    return jax.lax.while_loop(lambda current: jnp.any(~finished(current)), one_step, state)
