"""How to minimise: :class:`FitOptions` and the default tolerance and number of starts.

>>> FitOptions(global_search=False).curve_points
1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidFitSetup

__all__ = ["DEFAULT_STARTS", "DEFAULT_TOLERANCE", "FitOptions"]

#: MIGRAD stops when the estimated distance to the minimum is below 0.002·tolerance
#: (in units of −2 ln L): 2e-7 by default, so that test statistics, CLs and limits are
#: accurate to ~1e-6 even with numerical gradients (pyhf's default, 0.1, gives ~1e-4).
DEFAULT_TOLERANCE = 1e-4

#: points of the coarse 1-D curve along the POI that seeds the global search
DEFAULT_STARTS = 9

@dataclass(frozen=True)
class FitOptions:
    """How to minimise: ``method`` ``"minuit"`` (MIGRAD) or ``"scipy"`` (L-BFGS-B);
    MINUIT ``strategy`` (None: 0 with exact gradients, 1 without) and ``tolerance``;
    ``maxiter`` bounds the number of function calls of each local fit.

    ``global_search`` (default True) looks for the global minimum inside the bounds
    (:mod:`ratiofactory.infer.minima`): ``starts`` points on a coarse curve along the
    POI (and other free unconstrained scalars) seed extra local fits wherever that curve
    has another minimum. ``global_search=False`` (or ``starts=1``) runs one local fit
    from the start point, as MINUIT alone does.

    >>> import pyhf
    >>> from ratiofactory.infer import FitOptions, hypotest
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> scipy_local = FitOptions(method="scipy", global_search=False)
    >>> cls = hypotest(model, data, 1.0, options=scipy_local).cls
    >>> round(cls, 5) == round(hypotest(model, data, 1.0).cls, 5)  # same as MINUIT's
    True
    """

    method: str = "minuit"
    strategy: int | None = None
    tolerance: float = DEFAULT_TOLERANCE
    maxiter: int = 100_000
    global_search: bool = True
    starts: int = DEFAULT_STARTS

    def __post_init__(self) -> None:
        if self.method not in ("minuit", "scipy"):
            raise InvalidFitSetup(f"unknown fit method {self.method!r}; use 'minuit' or 'scipy'")
        if not self.tolerance > 0:
            raise InvalidFitSetup(f"tolerance must be positive, got {self.tolerance}")
        starts: object = self.starts  # user input: check the type too
        if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
            raise InvalidFitSetup(f"starts must be a positive integer (1: no global search), got {self.starts!r}")

    @property
    def curve_points(self) -> int:
        """Points of the global search's curve; 1 means a single local fit."""
        return int(self.starts) if self.global_search else 1
