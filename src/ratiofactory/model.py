"""The compiled model: a likelihood that is a pure array function of the parameters.

The backend follows pyhf's (``pyhf.set_backend("numpy")`` or ``("jax")``), so one switch
serves binned and unbinned channels. The data vector is flat, like pyhf's:

    [binned counts (pyhf's channel order) | per-event weights of each unbinned channel
     (observed events, then reference events) | auxdata (pyhf's, then unbinned-only)]

Observed data weighs the observed events 1 and the reference events 0; Asimov data
(``expected_data``) weighs the reference events w_i^ref · s(x_i;θ).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyhf

from .binned_formulas import BinnedParameters
from .compile import UnbinnedChannel
from .config import ModelConfig
from .errors import InvalidModel, NegativeAsimovWeights
from .likelihood import (
    ChannelTensors,
    _sample_terms,
    channel_nll,
    event_densities,
    register_pytrees,
    shape_drift,
)

__all__ = ["BACKEND_LOCK", "Model", "array_namespace", "backend_task", "numpy_backend", "traceable_logpdf"]

_LOG_2PI = float(np.log(2 * np.pi))


def _eager(xp: Any) -> Any:
    """A context in which array operations run eagerly, also inside a jax trace."""
    if xp is np:
        return contextlib.nullcontext()
    import jax

    return jax.ensure_compile_time_eval()


def array_namespace() -> Any:
    """numpy or jax.numpy, following pyhf's current backend."""
    tensorlib, _ = pyhf.get_backend()
    if tensorlib.name == "jax":
        import jax.numpy as jnp

        return jnp
    if tensorlib.name == "numpy":
        return np
    raise InvalidModel(f"ratiofactory runs on the numpy and jax backends, not on {tensorlib.name!r}")


BACKEND_LOCK = threading.RLock()
"""Held while pyhf's backend, one per process, is switched or relied on by a task: tasks on
threads of one process (a Dask cluster with ``processes=False``, several threads per
worker) run one at a time instead of one switching the backend under another's jax trace."""


@contextlib.contextmanager
def numpy_backend() -> Iterator[None]:
    """pyhf's numpy backend (64 bit) inside the block, the previous one after it: for work
    done once (Asimov data, toys' expected data) that on jax would run op by op, each
    operation its own small compiled program.

    >>> pyhf.set_backend("jax")
    >>> with numpy_backend():
    ...     pyhf.get_backend()[0].name
    'numpy'
    >>> pyhf.get_backend()[0].name
    'jax'
    >>> pyhf.set_backend("numpy")
    """
    with BACKEND_LOCK:
        previous = pyhf.get_backend()
        switch = previous[0].name != "numpy"
        if switch:
            pyhf.set_backend("numpy", precision="64b")
        try:
            yield
        finally:
            if switch:
                pyhf.set_backend(*previous)


@contextlib.contextmanager
def backend_task(backend: str) -> Iterator[None]:
    """The body of a task an executor runs (a batch of toys, a signal point): ``backend``
    (64 bit) set in this process, and :data:`BACKEND_LOCK` held, so that concurrent tasks
    in one process cannot switch the backend under each other.

    >>> with backend_task("numpy"):
    ...     pyhf.get_backend()[0].name
    'numpy'
    """
    with BACKEND_LOCK:
        if pyhf.get_backend()[0].name != backend:
            pyhf.set_backend(backend, precision="64b")
        yield


class Model:
    """A workspace measurement compiled into ``logpdf(pars, data)``.

    Build it with :meth:`ratiofactory.Workspace.model`. It has ``pyhf.Model``'s interface,
    so ``pyhf.infer`` and cabinetry run on it directly: ``logpdf`` returns ln L with
    pyhf's shape ``(1,)`` (constant terms of the unbinned channels dropped; binned channels
    contribute pyhf's logpdf unchanged) and ``nll`` the scalar −ln L that fits minimise.

    >>> import pyhf, ratiofactory
    >>> spec = {"version": "1.0.0", "channels": [{"name": "SR", "samples": [
    ...     {"name": "signal", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
    ...     {"name": "background", "data": [50.0], "modifiers": [{"name": "bkg", "type": "shapesys", "data": [5.0]}]}]}],
    ...     "observations": [{"name": "SR", "data": [62.0]}],
    ...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}]}
    >>> ws = ratiofactory.Workspace(spec)
    >>> model, reference = ws.model(), pyhf.Workspace(spec).model()
    >>> model.config.par_names
    ['mu', 'bkg[0]']
    >>> data = ws.data(model)  # main data, then auxdata (50/5)² = 100
    >>> data.tolist(), model.expected_data([1.0, 1.0]).tolist()
    ([62.0, 100.0], [55.0, 100.0])
    >>> round(float(model.nll([1.0, 1.0], data)), 6)
    6.633881
    >>> bool(model.logpdf([1.0, 1.0], data)[0] == reference.logpdf([1.0, 1.0], data)[0])
    True
    """

    def __init__(
        self,
        *,
        config: ModelConfig,
        binned: pyhf.Model | None,
        channels: Sequence[UnbinnedChannel],
        binned_parameters: BinnedParameters | None = None,
    ) -> None:
        self.config = config
        self.binned = binned
        if binned is not None and binned_parameters is None:
            order = binned.config.par_order
            slices = {n: binned.config.par_slice(n) for n in order}
            binned_parameters = BinnedParameters(order, slices, slices, ())
        self._binned_parameters = binned_parameters
        self.unbinned_channels = tuple(channels)
        self._tensors: dict[str, list[ChannelTensors]] = {}
        n_binned_main = binned.config.nmaindata if binned else 0
        n_binned_aux = binned.config.nauxdata if binned else 0
        self._binned_main = slice(0, n_binned_main)
        self._event_slices = []
        start = n_binned_main
        for channel in self.unbinned_channels:
            self._event_slices.append(slice(start, start + channel.n_events))
            start += channel.n_events
        self._binned_aux = slice(start, start + n_binned_aux)
        self._constraints = self._unbinned_constraints(start + n_binned_aux)

    def _unbinned_constraints(self, aux_start: int) -> list[tuple[int, int, float]]:
        """(parameter index, auxdata index, σ) of the Gaussian constraints pyhf does not own."""
        owned = set(self.binned.config.par_order) if self.binned else set()
        constraints, position = [], aux_start
        for name in self.config.auxdata_order:
            if name in owned:
                continue
            paramset = self.config.param_set(name)
            sigma = paramset.width()[0]
            constraints.append((self.config.par_slice(name).start, position, float(sigma)))
            position += 1
        return constraints

    def _channel_tensors(self, xp: Any) -> list[ChannelTensors]:
        key = xp.__name__
        if key not in self._tensors:
            index = {name: self.config.par_slice(name).start for name in self.config.par_order}
            with _eager(xp):  # built once as concrete arrays, even when first called under jit
                self._tensors[key] = [ChannelTensors.build(c, index, xp) for c in self.unbinned_channels]
        return self._tensors[key]

    def _prepare(self, pars: Any, xp: Any) -> Any:
        pars = xp.asarray(pars, dtype=xp.float64)
        if pars.shape != (self.config.npars,):
            raise InvalidModel(f"expected {self.config.npars} parameters, got an array of shape {pars.shape}")
        return pars

    def logpdf(self, pars: Any, data: Any) -> Any:
        """ln L(θ) of ``data`` (a flat data vector) as a tensor of shape ``(1,)``, like
        ``pyhf.Model.logpdf``; :meth:`nll` is the scalar −ln L."""
        xp = array_namespace()
        return xp.reshape(self._logpdf(pars, data, self._channel_tensors(xp)), (1,))

    def _logpdf(self, pars: Any, data: Any, channel_tensors: Sequence[ChannelTensors]) -> Any:
        xp = array_namespace()
        pars = self._prepare(pars, xp)
        data = xp.asarray(data, dtype=xp.float64)
        if data.shape != (self.config.nmaindata + self.config.nauxdata,):
            raise InvalidModel(
                f"expected a data vector of {self.config.nmaindata} main and {self.config.nauxdata} "
                f"auxiliary entries, got shape {data.shape}"
            )
        total = xp.asarray(0.0)
        if self.binned is not None:
            binned_data = xp.concatenate([data[self._binned_main], data[self._binned_aux]])
            total = total + self.binned_logpdf(pars, binned_data, xp)
        for tensors, events in zip(channel_tensors, self._event_slices, strict=True):
            total = total - channel_nll(tensors, pars, data[events], xp)
        for par_index, aux_index, sigma in self._constraints:
            pull = (data[aux_index] - pars[par_index]) / sigma
            total = total - 0.5 * pull**2 - np.log(sigma) - 0.5 * _LOG_2PI
        return total

    def binned_logpdf(self, pars: Any, binned_data: Any, xp: Any) -> Any:
        """pyhf's scalar logpdf of the binned channels (main counts then auxdata), −∞ where
        pyhf's is NaN at finite ``pars``: a negative expected count (an additive histosys
        or staterror far from nominal) has no Poisson probability, so the likelihood is 0
        there, as where an unbinned density s(x;θ) ≤ 0."""
        if self.binned is None:
            raise InvalidModel("the model has no binned channels")
        value = self.binned.logpdf(self.binned_pars(pars, xp), binned_data)[0]
        return xp.where(xp.isnan(value) & xp.all(xp.isfinite(pars)), -xp.inf, value)

    def binned_pars(self, pars: Any, xp: Any = None) -> Any:
        """pyhf's parameter vector of the binned channels at the model's ``pars``: the
        binned parameters, and each binned formula's value in its hidden placeholder's
        slot (see :mod:`ratiofactory.binned_formulas`)."""
        if self._binned_parameters is None:
            raise InvalidModel("the model has no binned channels")
        xp = array_namespace() if xp is None else xp
        return self._binned_parameters(xp.asarray(pars, dtype=xp.float64), xp)

    def nll(self, pars: Any, data: Any) -> Any:
        """−ln L(θ) as a scalar, the quantity fits minimise."""
        return -self._logpdf(pars, data, self._channel_tensors(array_namespace()))

    def expected_actualdata(self, pars: Any) -> Any:
        """Expected main data: binned counts and per-event Asimov weights."""
        xp = array_namespace()
        pars = self._prepare(pars, xp)
        parts = []
        if self.binned is not None:
            parts.append(self.binned.expected_actualdata(self.binned_pars(pars, xp)))
        for tensors in self._channel_tensors(xp):
            _, s = event_densities(tensors, pars, xp)
            ref = tensors.reference_weights * s[tensors.reference_slice]
            _check_asimov_weights(tensors, pars, ref)
            parts.append(xp.concatenate([xp.zeros(tensors.channel.n_observed), ref]))
        return xp.concatenate(parts) if parts else xp.zeros(0)

    def expected_auxdata(self, pars: Any) -> Any:
        """Expected auxiliary data: the constrained parameters' values."""
        xp = array_namespace()
        pars = self._prepare(pars, xp)
        parts = []
        if self.binned is not None and self.binned.config.nauxdata:
            parts.append(self.binned.expected_auxdata(self.binned_pars(pars, xp)))
        if self._constraints:
            parts.append(pars[xp.asarray([c[0] for c in self._constraints])])
        return xp.concatenate(parts) if parts else xp.zeros(0)

    def expected_data(self, pars: Any, include_auxdata: bool = True) -> Any:
        """Asimov data at ``pars``: expected counts, per-event Asimov weights, auxdata."""
        xp = array_namespace()
        main = self.expected_actualdata(pars)
        return xp.concatenate([main, self.expected_auxdata(pars)]) if include_auxdata else main

    def make_pdf(self, pars: Any) -> Any:
        """The distribution of the data vector at ``pars``: ``.sample(shape)`` draws toys,
        ``.log_prob(data)`` is ``logpdf`` (see :mod:`ratiofactory.sampling`)."""
        from .sampling import make_pdf

        return make_pdf(self, pars)

    def event_densities(self, pars: Any, channel: str) -> tuple[Any, Any]:
        """(ν(θ), s(x_i;θ)) of unbinned channel ``channel`` over its event set."""
        xp = array_namespace()
        pars = self._prepare(pars, xp)
        names = [c.name for c in self.unbinned_channels]
        if channel not in names:
            raise InvalidModel(f"no unbinned channel '{channel}'; unbinned channels: {', '.join(names)}")
        return event_densities(self._channel_tensors(xp)[names.index(channel)], pars, xp)

    def shape_drift(self, pars: Any) -> dict[str, dict[str, float]]:
        """Per unbinned channel (with a reference sample) and sample with shape systematics,
        ∫ p_j Π_k g_jk(α) relative to nominal over the reference sample,
        Σ_i w_i^ref r_j Π_k g_jk(x_i, α) / Σ_i w_i^ref r_j (1 at α = 0).

        With ``shape_normalisation: "nominal"`` a drift away from 1 is a yield the density
        carries and ν(θ) does not (docs/schema.md); with ``"reference"`` the likelihood
        divides it out. ``{channel: {sample: drift}}``.
        """
        pars = self._prepare(pars, np)
        return {t.channel.name: {name: float(v) for name, v in shape_drift(t, pars, np).items()}
                for t in self._channel_tensors(np) if t.channel.n_reference}

    def normalisation(self) -> Any:
        """The reference-sample normalisation of every sample, with its Monte Carlo error and
        the Kish effective sample sizes (:func:`ratiofactory.normalisation.normalisation_report`)."""
        from .normalisation import normalisation_report

        return normalisation_report(self)

    def nonpositive_events(self, pars: Any, data: Any | None = None) -> list[dict[str, Any]]:
        """The events whose density s(x_i;θ) ≤ 0 at ``pars`` (and, with ``data``, only
        those with a positive weight there): what makes the likelihood +∞.

        Each entry names the channel, whether the event is observed or from the
        reference sample, its index in that file, and s.
        """
        entries = []
        pars = np.asarray(pars, dtype=float)
        pieces = zip(self.unbinned_channels, self._channel_tensors(np), self._event_slices, strict=True)
        for channel, tensors, events in pieces:
            _, s = event_densities(tensors, pars, np)
            bad = s <= 0
            if data is not None:
                bad &= np.asarray(data, dtype=float)[events] > 0
            for i in np.flatnonzero(bad):
                observed = i < channel.n_observed
                entries.append({
                    "channel": channel.name,
                    "set": "observed" if observed else "reference",
                    "event": int(i if observed else i - channel.n_observed),
                    "s": float(s[i]),
                })
        return entries

    def __repr__(self) -> str:
        return f"Model({self.config!r})"


def _check_asimov_weights(tensors: ChannelTensors, pars: Any, weights: Any) -> None:
    """Refuse negative Asimov weights w_i^ref s(x_i;θ) (where the values are concrete)."""
    try:
        weights = np.asarray(weights)
        pars = np.asarray(pars)
    except TypeError:  # a jax tracer (TracerArrayConversionError): nothing to check at trace time
        return
    negative = np.flatnonzero(weights < 0)
    if not negative.size:
        return
    channel = tensors.channel
    first = negative[:3]
    events = ", ".join(f"{i} (w_ref s = {weights[i]:.4g})" for i in first)
    # the sample whose term is most negative at the first such event
    index = channel.n_observed + int(first[0])
    terms = [(float(density_coef) * float(np.asarray(factor)[index]), compiled.name, float(coef))
             for compiled, (coef, density_coef, factor) in zip(channel.samples, _sample_terms(tensors, pars, np),
                                                               strict=True)]
    _, name, coef = min(terms)
    raise NegativeAsimovWeights(
        f"unbinned channel {channel.name!r}: s(x;θ) < 0 on {negative.size} of {channel.n_reference} "
        f"reference events at θ = [{', '.join(f'{v:.6g}' for v in pars)}] (first: reference events {events}), "
        f"so no Asimov data exists there; sample {name!r} (coefficient {coef:.6g}) makes the density negative: "
        "keep the parameters where every sample's sum stays positive (bounds), or retrain the ratio models",
        channel=channel.name, sample=name, events=[int(i) for i in negative[:10]],
    )


def traceable_logpdf(model: Any) -> tuple[Callable[[Any, Any, Any], Any], Any]:
    """``(f, arrays)`` with ``f(pars, data, arrays) == model.logpdf(pars, data)`` on jax.

    Jit ``f`` with ``arrays`` as an argument: the per-event arrays are then inputs of the
    compiled program instead of constants folded into it, which compiles ~10x faster at
    10⁶ events. For models other than ratiofactory's (pyhf's), ``arrays`` is empty.

    >>> import pyhf
    >>> pyhf.set_backend("jax")
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0])
    >>> f, arrays = traceable_logpdf(model)
    >>> float(f([1.0, 1.0], [55.0, 400.0], arrays)[0]) == float(model.logpdf([1.0, 1.0], [55.0, 400.0])[0])
    True
    >>> pyhf.set_backend("numpy")
    """
    model_ref = weakref.ref(model)  # callers cache f per model: no strong reference back
    if not isinstance(model, Model):
        return (lambda pars, data, arrays: _alive(model_ref).logpdf(pars, data)), ()
    import jax.numpy as jnp

    register_pytrees()
    return (
        lambda pars, data, arrays: jnp.reshape(_alive(model_ref)._logpdf(pars, data, arrays), (1,))
    ), model._channel_tensors(jnp)


def _alive(model_ref: weakref.ref[Any]) -> Any:
    model = model_ref()
    if model is None:
        raise InvalidModel("the model of this traceable_logpdf function no longer exists; keep a reference to it")
    return model
