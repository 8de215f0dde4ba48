"""Parameterised ratio models r(x | θ): networks that take model parameters as inputs.

MadMiner-style and mass- or EFT-parameterised networks learn one ratio for a family of
hypotheses. A ratio spec declares the parameters its network reads::

    "ratio": {"onnx": {"path": "models/S_mass.onnx"}, "output": "log_ratio",
              "parameters": ["m_H"]}

The network gets the observables followed by the parameter values as its input columns
([N, D + P]), or, when its graph has two inputs, the observables [N, D] and the parameter
values [N, P]. Such a ratio depends on θ, so it is evaluated in the likelihood at every
θ: with onnxruntime on the numpy backend, and on jax through the graph's translation
(:class:`~ratiofactory.onnx_graph.GraphFunction`), jit-compiled with exact gradients in θ.
The parameters are free parameters of the model (bounds and inits from the measurement,
like a normfactor's). With ``ratio_normalisation: "reference"`` the ratio is divided by
its reference-sample integral at every θ.

Limits (each refused with a located error): a parameterised ratio is a sample's own ratio
(not an ensemble member, not a ratiosys variation), and a sample with one has no ratiosys
modifiers; toys use the dense likelihood; RooFit export needs fixed per-event ratios.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .errors import InvalidONNXModel

__all__ = ["CHECK_EVENTS", "ParameterisedRatio", "check_parameterised"]

#: events on which the jax translation is compared with onnxruntime when a model is built
CHECK_EVENTS = 64
_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


@dataclass(frozen=True, eq=False)
class ParameterisedRatio:
    """One parameterised ratio network of a sample: its bytes, output kind and the names
    of the parameters it reads (in input order)."""

    content: bytes = field(repr=False)
    output: str
    parameters: tuple[str, ...]
    source: str
    pointer: str

    @cached_property
    def session(self) -> Any:
        """The onnxruntime session (numpy backend), checked against the input contract."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            session = ort.InferenceSession(self.content, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 (onnxruntime's own errors, one line)
            raise self.fail(f"not a valid ONNX model ({str(err).splitlines()[0]})") from None
        if len(session.get_inputs()) not in (1, 2) or len(session.get_outputs()) != 1:
            raise self.fail("a parameterised ratio model has one or two inputs and one output")
        for item in session.get_inputs():
            if item.type not in _INPUT_DTYPES:
                raise self.fail(f"input {item.name!r} is {item.type}; use float or double")
        return session

    @cached_property
    def graph(self) -> Any:
        """The graph as a jax-traceable function (:class:`~ratiofactory.onnx_graph.GraphFunction`)."""
        from .onnx_graph import GraphFunction

        return GraphFunction(self.content, source=f"{self.pointer}: {self.source}")

    @cached_property
    def _dtype(self) -> Any:
        return _INPUT_DTYPES[self.session.get_inputs()[0].type]

    def _run(self, feeds: dict[str, np.ndarray]) -> Any:
        """One onnxruntime call under the time limit of :func:`~ratiofactory.onnx_check.run_seconds`."""
        import onnxruntime as ort

        from .onnx_check import SECONDS_ENV, run_seconds

        seconds = run_seconds()
        options = ort.RunOptions()
        options.log_severity_level = 4
        watchdog = threading.Timer(seconds, setattr, (options, "terminate", True))
        watchdog.daemon = True
        watchdog.start()
        try:
            return self.session.run(None, feeds, options)[0]
        except Exception as err:  # noqa: BLE001 (onnxruntime's own errors, one line)
            if options.terminate:
                raise self.fail(f"evaluation stopped after the time limit of {seconds:g} s (raise"
                                f" ${SECONDS_ENV} if the model is that slow)") from None
            raise self.fail(f"onnxruntime refused the inputs ({str(err).splitlines()[0]})") from None
        finally:
            watchdog.cancel()

    def fail(self, message: str) -> InvalidONNXModel:
        return InvalidONNXModel(f"{self.pointer}: {self.source}: {message}")

    def _inputs(self, events: Any, theta: Any, xp: Any) -> list[Any]:
        n = events.shape[0]
        columns = xp.broadcast_to(xp.reshape(theta, (1, -1)), (n, len(self.parameters)))
        if len(self.session.get_inputs()) == 2:
            return [events.astype(self._dtype), columns.astype(self._dtype)]
        return [xp.concatenate([events, columns], axis=1).astype(self._dtype)]

    def ratio(self, events: Any, theta: Any, xp: Any) -> Any:
        """r(x_i | θ) on ``events`` [N, D] at the parameter values ``theta`` [P] (float64)."""
        if xp is np:
            feeds = dict(zip((i.name for i in self.session.get_inputs()),
                             self._inputs(np.asarray(events), np.asarray(theta, dtype=float), np), strict=True))
            raw = np.asarray(self._run(feeds), dtype=float).reshape(-1)
        else:
            raw = xp.reshape(self.graph(xp, *self._inputs(events, theta, xp))[0], (-1,)).astype(xp.float64)
        return _to_ratio(raw, self.output, xp)


def _to_ratio(raw: Any, output: str, xp: Any) -> Any:
    if output in ("log_ratio", "logit"):
        return xp.exp(raw)
    if output == "probability":
        return raw / (1.0 - raw)
    return raw


def check_parameterised(channels: Sequence[Any], values: Mapping[str, Sequence[float]]) -> None:
    """At each parameter point of ``values`` (name → values to try, e.g. init and bounds):
    every parameterised ratio is finite and positive on all events of its channel
    (onnxruntime), and, when the ``onnx`` package is installed, its jax translation equals
    onnxruntime on the first :data:`CHECK_EVENTS` events. Errors name the sample, the file
    and the first bad event."""
    for channel in channels:
        events = _events(channel)
        for sample in channel.samples:
            model = sample.parameterised
            if model is None:
                continue
            for theta in _points(model.parameters, values):
                ratio = model.ratio(events, theta, np)
                bad = np.flatnonzero(~(np.isfinite(ratio) & (ratio > 0)))
                if bad.size:
                    at = ", ".join(f"{n}={v:g}" for n, v in zip(model.parameters, theta, strict=True))
                    raise model.fail(f"ratio {float(ratio[bad[0]])!s} at event {int(bad[0])} of the channel's"
                                     f" event set at {at} ({bad.size} events not finite and > 0)")
                if _has_onnx():
                    model.graph.check(*model._inputs(events[:CHECK_EVENTS], theta, np))


def _events(channel: Any) -> np.ndarray:
    sets = [channel.observed.values] + ([channel.reference.values] if channel.reference is not None else [])
    return np.concatenate(sets, axis=0)


def _points(names: Sequence[str], values: Mapping[str, Sequence[float]]) -> list[np.ndarray]:
    """The first value of every parameter, then each further value of one parameter at a time."""
    base = np.array([values[n][0] for n in names], dtype=float)
    points = [base]
    for k, name in enumerate(names):
        for v in values[name][1:]:
            point = base.copy()
            point[k] = v
            points.append(point)
    return points


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True
