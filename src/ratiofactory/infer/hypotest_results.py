"""Hypothesis-test results of :mod:`ratiofactory.infer`: CLs tests, upper limits, significance.

Frozen dataclasses like those of :mod:`ratiofactory.infer.results`: ``str(result)`` is a
plain-text table and ``to_dict()`` gives plain JSON types under stable keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._format import fmt, jsonable, table
from .results import _frozen

__all__ = ["BANDS", "HypoTestResult", "SignificanceResult", "UpperLimitResult"]

#: order of the expected-band entries: the −2σ, −1σ, median, +1σ, +2σ expected limit
BANDS = (-2, -1, 0, 1, 2)


@dataclass(frozen=True)
class HypoTestResult:
    """An asymptotic CLs test of ``poi = poi_value``. ``expected_*`` follow :data:`BANDS`
    (−2σ … +2σ of the expected limit; pyhf's order)."""

    poi: str
    poi_value: float
    test_stat: str
    teststat: float
    teststat_asimov: float
    cls: float
    clsb: float
    clb: float
    expected_cls: tuple[float, ...]
    expected_clsb: tuple[float, ...]
    expected_clb: tuple[float, ...]
    bestfit_poi: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys."""
        return jsonable(self.__dict__)

    def __str__(self) -> str:
        title = (f"Hypothesis test {self.poi} = {fmt(self.poi_value)} ({self.test_stat}: "
                 f"observed {fmt(self.teststat)}, Asimov {fmt(self.teststat_asimov)})")
        rows = [["observed", self.cls, self.clsb, self.clb]]
        rows += [[f"expected {b:+d} sigma", *v] for b, *v in
                 zip(BANDS, self.expected_cls, self.expected_clsb, self.expected_clb, strict=True)]
        return table(["", "CLs", "CLs+b", "CLb"], rows, title)


@dataclass(frozen=True, eq=False)
class UpperLimitResult:
    """Upper limits at CLs = ``level`` (observed and expected bands, :data:`BANDS` order),
    with the CLs values of every tested POI value.

    ``excluded`` (observed) and ``expected_excluded`` (one per band) are the excluded sets
    ``{poi : CLs < level}`` within the search range as tuples of (lower, upper) intervals;
    each limit is the lower edge of the last interval. More than one interval means CLs is
    not monotone in the POI (:meth:`non_monotone_message`)."""

    poi: str
    level: float
    test_stat: str
    method: str
    observed: float
    expected: tuple[float, ...]
    poi_values: np.ndarray
    cls_observed: np.ndarray
    cls_expected: np.ndarray
    excluded: tuple[tuple[float, float], ...] = ()
    expected_excluded: tuple[tuple[tuple[float, float], ...], ...] = ()

    def __post_init__(self) -> None:
        _frozen(self, "poi_values", "cls_observed", "cls_expected")

    @property
    def monotone(self) -> bool:
        """Whether every excluded set (observed and expected) is one interval."""
        return all(len(pieces) <= 1 for pieces in (self.excluded, *self.expected_excluded))

    def non_monotone_message(self) -> str:
        """One line naming the excluded sets with more than one piece ("" when monotone)."""
        labels = ["observed", *(f"expected {b:+d} sigma" for b in BANDS)]
        parts = [f"{label} {_union(pieces)}" for label, pieces in
                 zip(labels, (self.excluded, *self.expected_excluded), strict=False) if len(pieces) > 1]
        if not parts:
            return ""
        return (f"CLs({self.poi}) is not monotone: the excluded set {{CLs < {fmt(self.level)}}} has several"
                f" pieces ({'; '.join(parts)}); each limit is where the exclusion reaches the end of the"
                f" search range")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys."""
        return jsonable({**self.__dict__, "monotone": self.monotone})

    def __str__(self) -> str:
        title = f"Upper limits on {self.poi} at CLs = {fmt(self.level)} ({self.test_stat}, {self.method})"
        sets = (self.excluded, *self.expected_excluded) if self.expected_excluded else ((),) * 6
        rows = [["observed", self.observed, _union(sets[0])]]
        rows += [[f"expected {b:+d} sigma", v, _union(pieces)]
                 for b, v, pieces in zip(BANDS, self.expected, sets[1:], strict=True)]
        return table(["", "limit", f"excluded (CLs < {fmt(self.level)})"], rows, title)


def _union(pieces: tuple[tuple[float, float], ...]) -> str:
    return " ∪ ".join(f"[{fmt(lo, 4)}, {fmt(hi, 4)}]" for lo, hi in pieces) or "-"


@dataclass(frozen=True)
class SignificanceResult:
    """Discovery test with ``q₀``: observed and expected (at ``poi = poi_alt``) p-values and
    significances; ``expected_pvalues`` follow :data:`BANDS`."""

    poi: str
    poi_alt: float
    q0: float
    q0_asimov: float
    pvalue: float
    significance: float
    expected_pvalue: float
    expected_significance: float
    expected_pvalues: tuple[float, ...]
    bestfit_poi: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary with stable keys."""
        return jsonable(self.__dict__)

    def __str__(self) -> str:
        rows = [["observed", self.q0, self.pvalue, self.significance],
                [f"expected ({self.poi}={fmt(self.poi_alt)})", self.q0_asimov,
                 self.expected_pvalue, self.expected_significance]]
        return table(["", "q0", "p0", "Z"], rows, f"Discovery significance ({self.poi} = 0 rejected?)")
