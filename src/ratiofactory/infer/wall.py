"""The minimiser's objective: ``−2 ln L`` with a finite wall where it is not finite.

An unbinned likelihood is +∞ wherever an event has s(x; θ) ≤ 0 (interference
coefficients such as ``1 − √μ`` make that region reachable inside the bounds). MIGRAD
cannot work with +∞: its line searches and numerical derivatives produce nonsense, and it
wanders (the conditional Asimov fit at μ = 10 on the off-shell example took ~20 000 calls,
two thirds of them at +∞). RooFit's minimiser replaces such evaluation errors by a finite
value above everything it has seen, growing with how far the point lies in the forbidden
region, so the minimiser steps back. :class:`WalledObjective` does the same for the fits of
:mod:`ratiofactory.infer`:

``wall(θ) = f_max + WALL_HEIGHT · (1 + d(θ))``

with ``f_max`` the highest finite ``−2 ln L`` this minimisation has seen and ``d`` the
distance from the last point where ``−2 ln L`` was finite, in units of ``WALL_SCALE`` of
each parameter's bound width (of ``max(1, |θ|)`` when unbounded). The wall is only what the
minimiser sees: :class:`~ratiofactory.infer.objective.Objective`, ``model.logpdf`` and every
reported ``−2 ln L`` keep +∞ there, and a minimum that ends on the wall is a failed fit
(:func:`on_wall`), never a result.

>>> import numpy as np
>>> walled = WalledObjective(lambda p: float(p[0] ** 2) if p[0] < 1 else np.inf,
...                          np.array([[-2.0, 2.0]]), np.array([False]))
>>> walled(np.array([0.5])), walled(np.array([0.9]))   # finite: unchanged
(0.25, 0.81)
>>> round(walled(np.array([1.0])), 6)   # 0.1 beyond the last finite point, 25 wall units
260.81
>>> walled.wall_calls, on_wall(walled.objective, np.array([1.0]))
(1, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["WALL_HEIGHT", "WALL_SCALE", "WalledObjective", "foot_of_wall", "on_wall"]

#: the wall's height above the highest finite −2 ln L seen, and its rise per distance unit
WALL_HEIGHT = 10.0
#: the wall's distance unit: this fraction of each parameter's bound width
WALL_SCALE = 1e-3


class WalledObjective:
    """``objective(pars)`` where finite, else the wall (module docstring); with
    ``objective.grad`` (jax) :meth:`grad` is the exact gradient or the wall's."""

    def __init__(self, objective: Callable[[np.ndarray], float], bounds: np.ndarray, fixed: np.ndarray) -> None:
        self.objective = objective
        self.free = ~np.asarray(fixed, dtype=bool)
        width = np.asarray(bounds, dtype=float)[:, 1] - np.asarray(bounds, dtype=float)[:, 0]
        self._width = width
        self.highest = -np.inf
        self.inside: np.ndarray | None = None
        self.wall_calls = 0
        self.walls: list[np.ndarray] = []  # where the wall was returned

    def _unit(self, pars: np.ndarray) -> np.ndarray:
        scale = np.where(np.isfinite(self._width), self._width, np.maximum(1.0, np.abs(pars)))
        return WALL_SCALE * scale

    def _distance(self, pars: np.ndarray) -> tuple[float, np.ndarray]:
        """Distance from the last finite point (wall units) and its gradient."""
        if self.inside is None:
            return 0.0, np.zeros(pars.size)
        unit = self._unit(pars)
        step = np.where(self.free, (pars - self.inside) / unit, 0.0)
        d = float(np.sqrt(step @ step))
        return d, (step / unit / d if d > 0 else np.zeros(pars.size))

    def wall(self, pars: np.ndarray) -> float:
        """The wall's value at ``pars``."""
        base = self.highest if np.isfinite(self.highest) else 0.0
        return base + WALL_HEIGHT * (1.0 + self._distance(np.asarray(pars, dtype=float))[0])

    def __call__(self, pars: Any) -> float:
        pars = np.array(pars, dtype=float)
        value = float(self.objective(pars))
        if np.isfinite(value):
            self.highest = max(self.highest, value)
            self.inside = pars
            return value
        self.wall_calls += 1
        self.walls.append(pars)
        return self.wall(pars)

    def grad(self, pars: Any) -> np.ndarray:
        """The objective's gradient where it is finite, else the wall's."""
        pars = np.array(pars, dtype=float)
        value = float(self.objective(pars))
        gradient: Any = getattr(self.objective, "grad")  # noqa: B009 (only objectives with exact gradients)
        grad = np.asarray(gradient(pars), dtype=float)
        if np.isfinite(value) and np.all(np.isfinite(grad)):
            return grad
        return WALL_HEIGHT * self._distance(pars)[1]


def on_wall(objective: Callable[[np.ndarray], float], pars: Any) -> bool:
    """Whether ``objective`` (−2 ln L) is not finite at ``pars``: a minimiser that ends
    there ended on the wall, and its point is no minimum."""
    return not np.isfinite(float(objective(np.array(pars, dtype=float))))


#: relative round-off of −2 ln L below which two values count as equal in :func:`foot_of_wall`
_ROUNDOFF = 1e-10


def foot_of_wall(walled: WalledObjective, pars: Any, value: float) -> bool:
    """Whether ``pars`` (where the minimiser stopped, ``−2 ln L = value``) lies at the foot
    of the wall instead of at a minimum: ``−2 ln L`` is still lower at a finite point between
    ``pars`` and the nearest point where the wall was returned (probed at 1/2, 1/10, 1/100 of
    the way, at most one wall unit away).

    With a numerical gradient MIGRAD can stop right in front of the wall where −2 ln L is
    still falling (its derivative steps straddle the wall, its EDM looks small): that point is
    no minimum. A minimum just inside a log barrier (an event's s(x;θ) → 0⁺ with a small
    Asimov weight, as at μ = 10 in the off-shell example) is one: −2 ln L rises towards the
    wall there, and it is kept.

    >>> import numpy as np
    >>> cliff = WalledObjective(lambda p: float((p[0] - 2) ** 2) if p[0] < 1 else np.inf,
    ...                         np.array([[-5.0, 5.0]]), np.array([False]))
    >>> _ = cliff(np.array([1.0 + 1e-6]))      # the minimiser met the wall here
    >>> foot_of_wall(cliff, np.array([1.0 - 1e-6]), (1.0 - 1e-6 - 2) ** 2)   # still falling: no minimum
    True
    >>> barrier = lambda p: float((p[0] - 2) ** 2 - 0.02 * np.log(1 - p[0])) if p[0] < 1 else np.inf
    >>> walled = WalledObjective(barrier, np.array([[-5.0, 5.0]]), np.array([False]))
    >>> _ = walled(np.array([1.001]))
    >>> x = np.array([1.5 - np.sqrt(0.25 + 0.01)])  # where the derivative vanishes
    >>> foot_of_wall(walled, x, barrier(x))
    False
    """
    if not walled.walls:
        return False
    pars = np.asarray(pars, dtype=float)
    unit = walled._unit(pars)
    offsets = np.where(walled.free, (np.asarray(walled.walls) - pars) / unit, 0.0)
    distances = np.sqrt(np.sum(offsets**2, axis=1))
    nearest = int(np.argmin(distances))
    if not distances[nearest] > 0:
        return True
    direction = offsets[nearest] / distances[nearest]
    reach = min(float(distances[nearest]), 1.0)
    tolerance = _ROUNDOFF * max(1.0, abs(value))
    for fraction in (0.5, 0.1, 0.01):
        probe = pars + fraction * reach * direction * unit
        there = float(walled.objective(probe))
        if np.isfinite(there) and there < value - tolerance:
            return True
    return False
