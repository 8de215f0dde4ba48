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
    not monotone in the POI (:meth:`non_monotone_message`).

    ``outside_range`` (observed, then the bands) is None for a line whose limit lies within
    ``search_range`` (the scan's or search's ends), ``"above"`` where CLs stays above the
    level up to the upper end (the limit is larger: printed ``> hi``) and ``"below"`` where
    it is already below it at the lower end (``< lo``); such a limit is NaN (null in JSON)."""

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
    outside_range: tuple[str | None, ...] = (None,) * (len(BANDS) + 1)
    search_range: tuple[float, float] = (float("nan"), float("nan"))

    def __post_init__(self) -> None:
        _frozen(self, "poi_values", "cls_observed", "cls_expected")

    @property
    def monotone(self) -> bool:
        """Whether every excluded set (observed and expected) is one interval."""
        return all(len(pieces) <= 1 for pieces in (self.excluded, *self.expected_excluded))

    @staticmethod
    def labels() -> list[str]:
        """The lines in the order of ``outside_range``: observed, then the expected bands."""
        return ["observed", *(f"expected {b:+d} sigma" for b in BANDS)]

    def shown_limits(self) -> list[str]:
        """Each line's limit as text: the number, or ``> hi`` / ``< lo`` outside the range."""
        lo, hi = self.search_range
        shown = {"above": f"> {fmt(hi)}", "below": f"< {fmt(lo)}"}
        return [shown[where] if where else fmt(limit) for limit, where in
                zip((self.observed, *self.expected), self.outside_range, strict=True)]

    def outside_range_message(self, hint: str | None = None) -> str:
        """One line naming the lines whose CLs does not cross the level within the range
        ("" when all do), with ``hint`` (by default one in terms of ``upper_limit``'s
        arguments) on what to change."""
        lo, hi = self.search_range
        what = "scan" if self.method == "scan" else "search range"
        parts = []
        for where, end, edge in (("above", hi, "still above"), ("below", lo, "already below")):
            names = [label for label, w in zip(self.labels(), self.outside_range, strict=True) if w == where]
            if names:
                sign = ">" if where == "above" else "<"
                parts.append(f"CLs of {', '.join(names)} is {edge} {fmt(self.level)} at {self.poi}={fmt(end)},"
                             f" the {'end' if where == 'above' else 'start'} of the {what}: limit {sign} {fmt(end)}")
        if not parts:
            return ""
        if hint is None:
            hint = ("extend the scan" if self.method == "scan"
                    else "widen search= or the POI's bounds (bounds=), or pass strict=True to raise")
        return f"{'; '.join(parts)} ({hint})"

    def non_monotone_message(self) -> str:
        """One line naming the excluded sets with more than one piece ("" when monotone)."""
        parts = [f"{label} {_union(pieces)}" for label, pieces in
                 zip(self.labels(), (self.excluded, *self.expected_excluded), strict=False) if len(pieces) > 1]
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
        rows = [[label, limit, _union(pieces)]
                for label, limit, pieces in zip(self.labels(), self.shown_limits(), sets, strict=True)]
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
