"""The fit objective −2 ln L(θ) and the parameter configuration of a fit.

Every fit in :mod:`ratiofactory.infer` minimises ``−2 ln L`` (MINUIT ``errordef = 1``),
so differences of the objective are directly ``t_μ``-like test statistics and the
covariance is ``C = 2 H⁻¹`` with ``H`` the Hessian of the objective.

On the jax backend the value-and-gradient and the Hessian are jit-compiled once per
model (and, by jax, per data shape) and reused by every later fit of that model; on numpy
the minimiser differentiates numerically.

>>> import pyhf
>>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
>>> setup = make_setup(model, fixed={"mu": 0.0})
>>> float(setup.init[0]), bool(setup.fixed[0]), setup.names
(0.0, True, ('mu', 'uncorr_bkguncrt[0]'))
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyhf

from ..model import traceable_logpdf
from .errors import InvalidFitSetup

__all__ = ["FitSetup", "Objective", "difference_hessian", "make_setup", "parameter_indices"]


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
                f" [{lo:g}, {hi:g}]; widen bounds={{{self.names[index]!r}: (lo, hi)}}"
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
                f" change init= or bounds= for {name!r}"
            )


# ----------------------------------------------------------------------------- objective

_JAX_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: parameter points per vectorised evaluation of :meth:`Objective.values` on jax
BATCH_POINTS = 32


def _jax_functions(model: Any, pars: Any = None, data: Any = None) -> dict[str, Callable]:
    """jit-compiled value-and-gradient and Hessian of −2 ln L, built once per model.

    Both differentiate one traced function ``twice_nll(pars, data, arrays)`` whose
    per-event arrays are arguments (:func:`~ratiofactory.model.traceable_logpdf`): one
    compilation each per model and data length, shared by every fit, scan point, Asimov
    fit and impact refit of that model (``pars``/``data`` are accepted for callers of the
    earlier signature and unused). The arrays are built eagerly here, outside any trace.
    """
    cached = _JAX_FUNCTIONS.get(model)
    if cached is not None:
        return cached
    import jax
    import jax.numpy as jnp

    logpdf, arrays = traceable_logpdf(model)  # per-event arrays as arguments, not constants

    def twice_nll(pars: Any, data: Any, arrays: Any) -> Any:
        return -2.0 * jnp.reshape(logpdf(pars, data, arrays), (-1,))[0]

    value_and_grad, hessian = jax.jit(jax.value_and_grad(twice_nll)), jax.jit(jax.hessian(twice_nll))
    batch = jax.jit(jax.vmap(twice_nll, in_axes=(0, None, None)))  # compiled on first use only
    functions = {
        "value_and_grad": lambda pars, data: value_and_grad(pars, data, arrays),
        "hessian": lambda pars, data: hessian(pars, data, arrays),
        "values": lambda batch_pars, data: batch(batch_pars, data, arrays),
    }
    _JAX_FUNCTIONS[model] = functions
    return functions


class Objective:
    """``−2 ln L(θ)`` of ``model`` on ``data`` as a function of the full parameter vector.

    Call it with a numpy vector; :meth:`grad` and :meth:`hessian` are exact on jax
    (``has_grad``) and unavailable on numpy.
    """

    def __init__(self, model: Any, data: Any) -> None:
        tensorlib, _ = pyhf.get_backend()
        self.model = model
        self.backend = str(tensorlib.name)
        self.has_grad = self.backend == "jax"
        self.data = tensorlib.astensor(data)
        self._check_data_length(np.shape(self.data))
        self.calls = 0
        self.nonfinite_calls = 0
        self._last: tuple[bytes, float, np.ndarray] | None = None
        if self.has_grad:
            _jax_functions(model, model.config.suggested_init(), self.data)

    def _check_data_length(self, shape: tuple[int, ...]) -> None:
        config = self.model.config
        nmain, naux = getattr(config, "nmaindata", None), getattr(config, "nauxdata", None)
        if nmain is None or naux is None:
            return
        if len(shape) != 1 or shape[0] != nmain + naux:
            raise InvalidFitSetup(
                f"data has shape {shape}; the model expects a flat vector of {nmain + naux} numbers"
                f" ({nmain} main data then {naux} auxiliary data)"
            )

    def __call__(self, pars: np.ndarray) -> float:
        if self.has_grad:
            return self._value_and_grad(pars)[0]
        self.calls += 1
        value = -2.0 * np.reshape(np.asarray(self.model.logpdf(np.asarray(pars, dtype=float), self.data)), (-1,))[0]
        return self._count(float(value))

    def values(self, points: np.ndarray) -> np.ndarray:
        """``−2 ln L`` at each row of ``points`` (+inf where not finite; not counted as fit
        problems). On jax one vectorised call per ``BATCH_POINTS`` rows (padded, so that it
        compiles once per model); on numpy a loop."""
        points = np.asarray(points, dtype=float).reshape(-1, len(self.model.config.suggested_init()))
        if not self.has_grad:
            nonfinite = self.nonfinite_calls
            out = np.array([self(p) for p in points])
            self.nonfinite_calls = nonfinite
        else:
            import jax.numpy as jnp

            batch = _jax_functions(self.model)["values"]
            out = np.empty(len(points))
            for start in range(0, len(points), BATCH_POINTS):
                chunk = points[start:start + BATCH_POINTS]
                padded = np.concatenate([chunk, np.repeat(chunk[-1:], BATCH_POINTS - len(chunk), axis=0)])
                out[start:start + len(chunk)] = np.asarray(batch(jnp.asarray(padded), self.data))[:len(chunk)]
            self.calls += len(points)
        return np.where(np.isfinite(out), out, np.inf)

    def grad(self, pars: np.ndarray) -> np.ndarray:
        """Exact gradient (jax only)."""
        return self._value_and_grad(pars)[1]

    def hessian(self, pars: np.ndarray) -> np.ndarray:
        """Hessian of ``−2 ln L`` (jax only), through the compiled exact gradient.

        Central differences of the exact gradient, Richardson-extrapolated, with steps of
        1 % of each parameter's curvature scale (agrees with forward-over-reverse
        ``jax.hessian`` to ~1e-8 relative; 6 gradients per parameter, no second compiled
        program). Where a step makes the likelihood non-finite (a bound, s(x;θ) ≤ 0), the
        exact ``jax.hessian`` is compiled and used instead.
        """
        x = np.asarray(pars, dtype=float)
        hess = difference_hessian(lambda p: self._value_and_grad(p)[1], x)
        if hess is None:
            import jax.numpy as jnp

            hess = _jax_functions(self.model)["hessian"](jnp.asarray(x, dtype=jnp.float64), self.data)
        return np.asarray(hess, dtype=float)

    def _value_and_grad(self, pars: np.ndarray) -> tuple[float, np.ndarray]:
        pars = np.asarray(pars, dtype=float)
        key = pars.tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        import jax.numpy as jnp

        self.calls += 1
        value, grad = _jax_functions(self.model)["value_and_grad"](jnp.asarray(pars), self.data)
        result = (self._count(float(value)), np.asarray(grad, dtype=float))
        self._last = (key, *result)
        return result

    def _count(self, value: float) -> float:
        if not np.isfinite(value):
            self.nonfinite_calls += 1
        return value


def difference_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                       fraction: float = 0.01) -> np.ndarray | None:
    """Hessian from an exact gradient: ``(4 D(h/2) − D(h)) / 3`` with the central difference
    ``D(h) = (g(x + h e_i) − g(x − h e_i)) / 2h`` (error O(h⁴)), ``h_i`` a ``fraction`` of
    the curvature scale ``√(2/H_ii)`` estimated with a first small step. Where one side is
    not finite (a parameter on a bound where the likelihood ends, e.g. √μ at μ = 0), the
    one-sided ``(−3g(x) + 4g(x ± h) − g(x ± 2h)) / 2h`` on the other side. None where no
    column can be formed.

    >>> hess = difference_hessian(lambda x: np.array([2 * x[0] + x[1], x[0] + 6 * x[1] ** 2]),
    ...                           np.array([1.0, 2.0]))
    >>> np.round(hess, 9).tolist()
    [[2.0, 1.0], [1.0, 24.0]]
    """
    n = x.size
    hess = np.empty((n, n))
    g0: list[np.ndarray] = []

    def at(i: int, h: float) -> np.ndarray:
        step = np.zeros(n)
        step[i] = h
        return grad(x + step)

    def central(i: int, h: float) -> np.ndarray:
        return (at(i, h) - at(i, -h)) / (2.0 * h)

    def one_sided(i: int, h: float) -> np.ndarray:
        if not g0:
            g0.append(grad(x))
        return (-3.0 * g0[0] + 4.0 * at(i, h) - at(i, 2.0 * h)) / (2.0 * h)

    for i in range(n):
        h = 1e-5 * max(1.0, abs(x[i]))
        curvature = central(i, h)[i]
        if np.isfinite(curvature) and curvature > 0:
            h = fraction * np.sqrt(2.0 / curvature)
        hess[i] = (4.0 * central(i, 0.5 * h) - central(i, h)) / 3.0
        for side in (h, -h):
            if np.all(np.isfinite(hess[i])):
                break
            hess[i] = one_sided(i, 0.1 * side)
    if not np.all(np.isfinite(hess)):
        return None
    return 0.5 * (hess + hess.T)
