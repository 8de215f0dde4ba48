"""Limits over a signal grid: one CLs test (and optionally an upper limit) per patch.

For every patch of a :class:`~ratiofactory.patchset.PatchSet` the background-only
workspace is patched, compiled, and tested at ``POI = test_poi`` (asymptotic CLs,
observed and expected bands, as ``ratiofactory cls``); with ``upper_limit=True`` the CLs
upper limits on the POI are computed too. Points run one after the other or on a Dask
cluster (:class:`ratiofactory.toys.executors.DaskExecutor`); each point is computed from
the workspace spec, its directory and the patch alone, so the result does not depend on
the executor. A point whose patch or fit fails is reported with its error, the others
still run.

>>> import ratiofactory
>>> from ratiofactory.patchset import PatchSet
>>> ws = ratiofactory.Workspace({
...     "version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [{"name": "bkg", "data": [50.0], "modifiers": []}]}],
...     "observations": [{"name": "SR", "data": [52.0]}],
...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}]})
>>> def signal(n):
...     return [{"op": "add", "path": "/channels/0/samples/0", "value": {"name": "signal", "data": [n],
...              "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}}]
>>> patchset = PatchSet.from_patches(ws.spec, {"m100": signal(30.0), "m200": signal(5.0)}, labels=["m"])
>>> result = run_grid(ws, patchset)
>>> [(p.name, p.excluded) for p in result.points]
[('m100', True), ('m200', False)]
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RatiofactoryError
from .files import atomic_write
from .infer._format import fmt, jsonable, table
from .infer.hypotest_results import BANDS

__all__ = ["GridPoint", "GridResult", "run_grid"]


@dataclass(frozen=True)
class GridPoint:
    """The tests of one signal point. ``expected_cls`` and ``expected_limits`` follow
    :data:`~ratiofactory.infer.BANDS` (−2σ … +2σ); ``error`` is set when the point failed."""

    name: str
    values: tuple[float, ...]
    cls: float = math.nan
    expected_cls: tuple[float, ...] = ()
    upper_limit: float | None = None
    expected_limits: tuple[float, ...] | None = None
    error: str = ""
    level: float = 0.05

    @property
    def excluded(self) -> bool:
        """Observed CLs below the level (False for a failed point)."""
        return bool(self.cls < self.level) if not self.error else False


@dataclass(frozen=True)
class GridResult:
    """CLs at ``test_poi`` (and upper limits) of every signal point of a patchset."""

    labels: tuple[str, ...]
    poi: str
    test_poi: float
    level: float
    test_stat: str
    points: tuple[GridPoint, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[GridPoint]:
        return [p for p in self.points if p.error]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the settings and one entry per point."""
        return jsonable({
            "labels": list(self.labels), "poi": self.poi, "test_poi": self.test_poi, "level": self.level,
            "test_stat": self.test_stat, "bands": list(BANDS),
            "points": [{"name": p.name, "values": list(p.values), "cls": p.cls,
                        "expected_cls": list(p.expected_cls), "excluded": p.excluded,
                        "upper_limit": p.upper_limit,
                        "expected_limits": None if p.expected_limits is None else list(p.expected_limits),
                        "error": p.error or None} for p in self.points],
        })

    def rows(self) -> list[list[Any]]:
        """One row per point: name, values, CLs observed and expected bands, limits."""
        out = []
        for p in self.points:
            band = list(p.expected_cls) or [math.nan] * len(BANDS)
            limits = [p.upper_limit, *(p.expected_limits or [None] * len(BANDS))]
            out.append([p.name, *p.values, p.cls, *band, *limits, p.error])
        return out

    def header(self) -> list[str]:
        return ["name", *self.labels, "CLs obs", *[f"CLs exp {b:+d}σ" for b in BANDS],
                "limit obs", *[f"limit exp {b:+d}σ" for b in BANDS], "error"]

    def write_csv(self, path: str | Path) -> Path:
        """The table as CSV (written atomically)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.header())
        writer.writerows([["" if v is None else v for v in row] for row in self.rows()])
        with atomic_write(path) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
        return Path(path)

    def __str__(self) -> str:
        with_limits = any(p.upper_limit is not None for p in self.points)
        header = ["point", *self.labels, "CLs obs", "CLs exp", "exp -1σ", "exp +1σ", "excluded"]
        header += ["limit obs", "limit exp"] if with_limits else []
        rows: list[list[Any]] = []
        for p in self.points:
            if p.error:
                rows.append([p.name, *p.values, "failed: " + p.error] + [""] * (len(header) - len(self.labels) - 2))
                continue
            row: list[Any] = [p.name, *p.values, p.cls, p.expected_cls[2], p.expected_cls[1], p.expected_cls[3],
                   "yes" if p.excluded else "no"]
            if with_limits:
                row += [p.upper_limit, p.expected_limits[2] if p.expected_limits else None]
            rows.append(row)
        n_excluded = sum(p.excluded for p in self.points)
        title = (f"CLs of {self.poi} = {fmt(self.test_poi)} ({self.test_stat}) over {len(self.points)} signal "
                 f"points: {n_excluded} excluded at CLs < {fmt(self.level)}"
                 + (f", {len(self.failed)} failed" if self.failed else ""))
        return table(header, rows, title)


def _test_point(task: tuple[Any, ...]) -> GridPoint:
    """Patch, compile and test one point (a module-level function: Dask pickles it)."""
    spec, base_dir, name, values, operations, settings = task
    from .model import backend_task

    with backend_task(settings["backend"]):
        try:
            test, limit = _hypotest_and_limit(spec, base_dir, name, operations, settings)
        except (RatiofactoryError, OSError, ValueError) as err:
            return GridPoint(name, values, error=str(err).splitlines()[0], level=settings["level"])
    return GridPoint(
        name, values, cls=float(test.cls), expected_cls=tuple(float(v) for v in test.expected_cls),
        upper_limit=None if limit is None else float(limit.observed),
        expected_limits=None if limit is None else tuple(float(v) for v in limit.expected),
        level=settings["level"])


def _hypotest_and_limit(spec: Any, base_dir: Any, name: str, operations: Any,
                        settings: dict[str, Any]) -> tuple[Any, Any]:
    from . import infer
    from .patchset import apply_patch
    from .workspace import Workspace

    ws = apply_patch(Workspace(spec, base_dir=base_dir, validate=False), operations, name=name)
    model = ws.model(settings["measurement"])
    data = ws.data(model)
    options = settings["options"]
    test = infer.hypotest(model, data, settings["test_poi"], test_stat=settings["test_stat"], options=options)
    limit = None
    if settings["upper_limit"]:
        limit = infer.upper_limit(model, data, level=settings["level"], test_stat=settings["test_stat"],
                                  options=options)
    return test, limit


def run_grid(
    workspace: Any,
    patchset: Any,
    *,
    test_poi: float = 1.0,
    test_stat: str = "qtilde",
    level: float = 0.05,
    upper_limit: bool = False,
    measurement: str | None = None,
    names: Sequence[str] | None = None,
    select: Mapping[str, float] | None = None,
    executor: Any = None,
    verify: bool = True,
    backend: str = "numpy",
    options: Any = None,
) -> GridResult:
    """CLs at ``POI = test_poi`` (and, with ``upper_limit``, the CLs upper limits at
    ``level``) for every patch of ``patchset`` applied to ``workspace``.

    ``names`` restricts the run to those patches; ``select`` to the patches whose values
    equal the given ones (``{"m_n1": 60}``). ``executor`` is a
    :class:`~ratiofactory.toys.executors.LocalExecutor` (default) or ``DaskExecutor``.
    ``verify`` checks the patchset's digest of the workspace first; ``options`` (a
    :class:`~ratiofactory.infer.FitOptions`) go to every fit.
    """
    from .toys.executors import LocalExecutor

    if verify:
        patchset.verify(workspace)
    patches = list(patchset)
    if names is not None:
        patches = [patchset[name] for name in names]
    for label, value in (select or {}).items():
        if label not in patchset.labels:
            raise RatiofactoryError(f"select: no label {label!r}; labels: {', '.join(patchset.labels)}")
        k = patchset.labels.index(label)
        patches = [p for p in patches if p.values[k] == float(value)]
    poi = _poi(workspace, measurement)
    settings = {"backend": backend, "measurement": measurement, "test_poi": float(test_poi),
                "test_stat": test_stat, "upper_limit": bool(upper_limit), "level": float(level),
                "options": options}
    spec, base_dir = workspace.spec, workspace.base_dir
    tasks = [(spec, base_dir, p.name, p.values, [dict(op) for op in p.operations], settings) for p in patches]
    runner = executor or LocalExecutor()
    points = runner.map(_test_point, tasks, desc="signal points")
    return GridResult(tuple(patchset.labels), poi or "", float(test_poi), float(level), test_stat, tuple(points))


def _poi(workspace: Any, measurement: str | None) -> str | None:
    spec = workspace.spec
    for entry in spec["measurements"]:
        if measurement is None or entry["name"] == measurement:
            return entry["config"].get("poi")
    return None
