"""The parameter configuration of a fit: names, start point, bounds, fixed flags, POI.

:func:`make_setup` resolves what a user writes (``init``, ``fixed``, ``bounds``, ``poi``,
by parameter name or as full vectors) into a checked :class:`FitSetup`; every fit in
:mod:`ratiofactory.infer` starts from one. (Also importable from
:mod:`ratiofactory.infer.objective`, where it lived before.)

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> setup = make_setup(model, fixed={"mu": 0.0})
>>> float(setup.init[0]), bool(setup.fixed[0]), setup.names
(0.0, True, ('mu', 'uncorr_bkguncrt[0]'))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import InvalidFitSetup

__all__ = ["FitSetup", "make_setup", "parameter_indices"]

# ----------------------------------------------------------------------------- names


def _par_names(config: Any) -> list[str]:
    names = config.par_names
    return list(names() if callable(names) else names)


def parameter_indices(config: Any) -> dict[str, list[int]]:
    """Indices into the parameter vector for every name a user may write: the expanded
    names (``'uncorr[0]'``) and the parameter-set names (``'uncorr'``)."""
    indices: dict[str, list[int]] = {}
    for name in config.par_order:
        sl = config.par_slice(name)
        indices[name] = list(range(sl.start, sl.stop))
    for i, name in enumerate(_par_names(config)):
        indices.setdefault(name, [i])
    return indices


def _unknown(name: str, known: Iterable[str], what: str = "parameter") -> InvalidFitSetup:
    listed = ", ".join(known)
    return InvalidFitSetup(f"unknown {what} {name!r}; the model's parameters are: {listed}")


def _lookup(indices: Mapping[str, list[int]], config: Any, name: str) -> list[int]:
    if name not in indices:
        raise _unknown(name, config.par_order)
    return indices[name]


def _per_component(value: Any, n: int, name: str, what: str) -> list[Any]:
    if np.ndim(value) == 0 or (what == "bounds" and np.ndim(value) == 1):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise InvalidFitSetup(f"{what} for {name!r}: expected {n} values, got {len(values)}")
    return values


# ----------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class FitSetup:
    """Starting point, bounds, fixed flags and POI of a fit (full parameter vector).

    ``origin`` is the user's (or the model's) initial point; warm starts
    (:meth:`with_init`) keep it, so that a global search can also start from there.
    ``unconstrained`` lists the scalar parameters without a constraint term (normfactors,
    formula parameters) and ``interpolated`` the scalar nuisance parameters constrained
    around 0 (normsys, histosys, ratiosys: the ones entering through interpolation):
    with the POI, the directions a global search scans.
    """

    names: tuple[str, ...]
    init: np.ndarray
    bounds: np.ndarray
    fixed: np.ndarray
    poi_index: int | None
    poi_name: str | None
    origin: np.ndarray | None = None
    unconstrained: tuple[int, ...] = ()
    interpolated: tuple[int, ...] = ()

    def start_points(self) -> np.ndarray:
        """The origin with the fixed parameters at their fixed values, inside the bounds."""
        origin = self.init if self.origin is None else self.origin
        return np.where(self.fixed, self.init, np.clip(origin, self.bounds[:, 0], self.bounds[:, 1]))

    def index(self, name: str) -> int:
        """Position of an expanded parameter name in the parameter vector."""
        try:
            return self.names.index(name)
        except ValueError:
            raise _unknown(name, self.names) from None

    def with_poi_fixed(self, value: float) -> FitSetup:
        """The same setup with the POI fixed at ``value``."""
        return self.with_fixed(self._require_poi(), value)

    def with_fixed(self, index: int, value: float) -> FitSetup:
        """The same setup with parameter ``index`` fixed at ``value`` (checked against its bounds)."""
        lo, hi = self.bounds[index]
        if not lo <= value <= hi:
            raise InvalidFitSetup(
                f"fixed value of {self.names[index]!r} = {value:g} lies outside its bounds"
                f" [{lo:g}, {hi:g}]; fix it inside them or widen its bounds"
            )
        init = self.init.copy()
        init[index] = value
        fixed = self.fixed.copy()
        fixed[index] = True
        return replace(self, init=init, fixed=fixed)

    def with_init(self, values: np.ndarray) -> FitSetup:
        """Warm start: free parameters from ``values`` (clipped into the bounds), fixed
        ones keep their values."""
        init = np.where(self.fixed, self.init, np.clip(values, self.bounds[:, 0], self.bounds[:, 1]))
        return replace(self, init=init)

    def with_bounds(self, index: int, lo: float, hi: float) -> FitSetup:
        """The same setup with new bounds for one parameter (the init is clipped into them)."""
        bounds = self.bounds.copy()
        bounds[index] = (lo, hi)
        init = self.init.copy()
        init[index] = np.clip(init[index], lo, hi)
        return replace(self, bounds=bounds, init=init)

    def _require_poi(self) -> int:
        return self.require_poi()[0]

    def require_poi(self) -> tuple[int, str]:
        """(index, name) of the parameter of interest; a clear error when there is none."""
        if self.poi_index is None or self.poi_name is None:
            raise InvalidFitSetup('the model has no parameter of interest (measurement with "poi": "",'
                                  " or poi_name=None): set the measurement's \"poi\", or pass poi='name'")
        return self.poi_index, self.poi_name


def make_setup(
    model: Any,
    *,
    init: Mapping[str, Any] | Sequence[float] | None = None,
    fixed: Mapping[str, Any] | Sequence[bool] | Iterable[str] | None = None,
    bounds: Mapping[str, Any] | Sequence[Sequence[float]] | None = None,
    poi: str | None = None,
) -> FitSetup:
    """Resolve user-facing ``init``/``fixed``/``bounds``/``poi`` into a checked :class:`FitSetup`.

    Dictionaries are keyed by parameter name (expanded ``'uncorr[1]'`` or the whole
    set ``'uncorr'``) and override the model's suggestions; sequences give the full vector.
    ``fixed`` may also be a list of booleans (full vector) or of names (fixed at their init).
    """
    config = model.config
    names = tuple(_par_names(config))
    indices = parameter_indices(config)
    values = _resolve_vector(config, indices, init, config.suggested_init(), "init")
    limits = _resolve_bounds(config, indices, bounds)
    flags = np.asarray(config.suggested_fixed(), dtype=bool).copy()
    if fixed is not None:
        _apply_fixed(config, indices, fixed, flags, values)
    poi_index, poi_name = _resolve_poi(config, indices, poi)
    setup = FitSetup(names, values, limits, flags, poi_index, poi_name, values.copy(), *_search_axes(config))
    _check_inside_bounds(setup)
    return setup


def _resolve_vector(config: Any, indices: Mapping, given: Any, default: Sequence[float], what: str) -> np.ndarray:
    values = np.asarray(default, dtype=float).copy()
    if given is None:
        return values
    if isinstance(given, Mapping):
        for name, value in given.items():
            idx = _lookup(indices, config, name)
            values[idx] = _per_component(value, len(idx), name, what)
        return values
    given = np.asarray(given, dtype=float)
    if given.shape != values.shape:
        raise InvalidFitSetup(f"{what}: expected {values.size} values (one per parameter), got shape {given.shape}")
    return given.copy()


def _resolve_bounds(config: Any, indices: Mapping, given: Any) -> np.ndarray:
    limits = np.asarray(config.suggested_bounds(), dtype=float).copy()
    if given is None:
        pass
    elif isinstance(given, Mapping):
        for name, value in given.items():
            idx = _lookup(indices, config, name)
            limits[idx] = _per_component(value, len(idx), name, "bounds")
    else:
        given = np.asarray(given, dtype=float)
        if given.shape != limits.shape:
            raise InvalidFitSetup(f"bounds: expected shape {limits.shape}, got {given.shape}")
        limits = given.copy()
    names = _par_names(config)
    for i, (lo, hi) in enumerate(limits):
        if not lo < hi:
            raise InvalidFitSetup(f"bounds of {names[i]!r} = [{lo:g}, {hi:g}] are empty; need lower < upper")
    return limits


def _apply_fixed(config: Any, indices: Mapping, fixed: Any, flags: np.ndarray, values: np.ndarray) -> None:
    if isinstance(fixed, Mapping):
        for name, value in fixed.items():
            idx = _lookup(indices, config, name)
            flags[idx] = True
            if value is not None:
                values[idx] = _per_component(value, len(idx), name, "fixed value")
        return
    items = list(fixed)
    if all(isinstance(item, str) for item in items):
        for name in items:
            flags[_lookup(indices, config, name)] = True
        return
    if len(items) != flags.size or not all(isinstance(item, (bool, np.bool_)) for item in items):
        raise InvalidFitSetup(
            f"fixed: expected a dict name -> value, a list of names, or {flags.size} booleans"
        )
    flags[:] = items


def _resolve_poi(config: Any, indices: Mapping, poi: str | None) -> tuple[int | None, str | None]:
    if poi is None:
        index = config.poi_index
        return (None, None) if index is None else (int(index), _par_names(config)[index])
    idx = _lookup(indices, config, poi)
    if len(idx) != 1:
        raise InvalidFitSetup(f"POI {poi!r} has {len(idx)} components; a POI must be a single number")
    return idx[0], _par_names(config)[idx[0]]


def _search_axes(config: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indices of the scalar parameters without a constraint term, and of the scalar
    parameters constrained around 0 (auxdata 0: interpolated normsys/histosys/ratiosys)."""
    constrained = set(getattr(config, "auxdata_order", ()))
    free, interpolated = [], []
    for name in config.par_order:
        sl = config.par_slice(name)
        if sl.stop - sl.start != 1:
            continue
        if name not in constrained:
            free.append(sl.start)
            continue
        auxdata = getattr(config.param_set(name), "auxdata", None)
        if auxdata is not None and len(auxdata) == 1 and float(auxdata[0]) == 0.0:
            interpolated.append(sl.start)
    return tuple(free), tuple(interpolated)


def _check_inside_bounds(setup: FitSetup) -> None:
    for i, name in enumerate(setup.names):
        lo, hi = setup.bounds[i]
        value = setup.init[i]
        if not lo <= value <= hi:
            what = "fixed value" if setup.fixed[i] else "init"
            raise InvalidFitSetup(
                f"{what} of {name!r} = {value:g} lies outside its bounds [{lo:g}, {hi:g}];"
                f" change its {'fixed value' if setup.fixed[i] else 'initial value'} or its bounds"
            )
