"""Evaluating ONNX density-ratio models on an :class:`~ratiofactory.events.EventSet`.

A ratio spec is ``{"onnx": {"path", "sha256"?}, "output": KIND}`` with KIND one of
``ratio`` (r), ``log_ratio`` (ln r), ``probability`` (a balanced-class classifier output
s, r = s/(1-s)) or ``logit`` (ln r); or an ensemble ``{"ensemble": [specs],
"aggregate": "mean"}`` whose ratio is the mean of the members' ratios.

Models run once per event set with onnxruntime (on the CPU, or with CUDA: see
:mod:`ratiofactory.onnx_providers`), in batches of bounded memory, and
are checked before and after use: one input [N, D] with D the number of observables,
one number per event out, finite values, ratios > 0. Results are cached by content
digest, in memory and on disk (:class:`~ratiofactory.ratio_cache.RatioCache`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ratiofactory.errors import InvalidONNXModel, InvalidSpecification
from ratiofactory.events import EventSet
from ratiofactory.files import at, read_file_ref
from ratiofactory.onnx_check import SECONDS_ENV, check_operators, run_seconds
from ratiofactory.onnx_providers import execution_providers
from ratiofactory.ratio_cache import RatioCache

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "OUTPUT_KINDS",
    "RatioCache",
    "RatioValues",
    "evaluate_ratio",
]

OUTPUT_KINDS = ("ratio", "log_ratio", "probability", "logit")
DEFAULT_BATCH_SIZE = 65536
_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}
_OUTPUT_TYPES = ("tensor(float)", "tensor(double)", "tensor(float16)")
_PARALLEL_MIN = 1 << 18  # events from which the exp() transform is spread over threads


@dataclass(frozen=True, eq=False)
class RatioValues:
    """Per-event ratios: ``members`` (K, N), one row per ensemble member; ``mean`` (N,)."""

    members: np.ndarray

    @cached_property
    def mean(self) -> np.ndarray:
        """The ensemble mean r(x_i) (the single model's ratios when K = 1)."""
        if self.members.shape[0] == 1:
            return self.members[0]
        mean = self.members.mean(axis=0)
        mean.flags.writeable = False
        return mean


def evaluate_ratio(
    ratio_spec: Mapping[str, Any],
    events: EventSet,
    base_dir: Path,
    *,
    pointer: str,
    cache: RatioCache | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    providers: str | Sequence[str] | None = None,
) -> RatioValues:
    """Evaluate a single or ensemble ratio spec on ``events``; ``cache=None`` disables caching.

    ``providers`` chooses onnxruntime's execution providers (default
    ``$RATIOFACTORY_ONNX_PROVIDERS``, else ``auto``: CUDA with onnxruntime-gpu and a GPU,
    the CPU otherwise; see :mod:`ratiofactory.onnx_providers`).

    Errors are :class:`InvalidONNXModel` naming ``pointer``, the model file and the first
    bad event.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    chosen = execution_providers(providers)
    members = [
        _evaluate_single(spec, where, events, base_dir, cache, batch_size, chosen)
        for spec, where in _single_specs(ratio_spec, pointer)
    ]
    stacked = members[0][np.newaxis] if len(members) == 1 else np.stack(members)
    stacked.flags.writeable = False
    return RatioValues(stacked)


def _single_specs(spec: Mapping[str, Any], pointer: str) -> list[tuple[Mapping[str, Any], str]]:
    if not isinstance(spec, dict):
        raise InvalidSpecification(f"expected a ratio specification, got {spec!r}", pointer)
    if "ensemble" not in spec:
        return [(spec, pointer)]
    members, aggregate = spec["ensemble"], spec.get("aggregate", "mean")
    if aggregate != "mean":
        raise InvalidSpecification(
            f"unknown aggregate {aggregate!r}; expected 'mean'", f"{pointer}/aggregate"
        )
    if not isinstance(members, list) or not members:
        raise InvalidSpecification(
            "an ensemble needs a non-empty list of models", f"{pointer}/ensemble"
        )
    singles = [(member, f"{pointer}/ensemble/{i}") for i, member in enumerate(members)]
    for member, where in singles:
        if not isinstance(member, dict) or "onnx" not in member:
            raise InvalidSpecification("ensemble members must be single ONNX ratio models", where)
    return singles


def _evaluate_single(
    spec: Mapping[str, Any],
    pointer: str,
    events: EventSet,
    base_dir: Path,
    cache: RatioCache | None,
    batch_size: int,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> np.ndarray:
    output = spec.get("output")
    if output not in OUTPUT_KINDS:
        raise InvalidSpecification(
            f"output must be one of {', '.join(OUTPUT_KINDS)}, got {output!r}", f"{pointer}/output"
        )
    content, model_digest = read_file_ref(base_dir, spec.get("onnx"), pointer=f"{pointer}/onnx")
    shown = spec["onnx"]["path"]
    key = None
    if cache is not None:
        key = RatioCache.key(model_digest, events.digest, output, provider=providers[0])
        hit = cache.get(key, len(events))
        if hit is not None:
            return hit
    model = _RatioModel(content, shown, pointer, events.observables, providers)
    if cache is not None and model.provider != providers[0]:  # onnxruntime fell back
        key = RatioCache.key(model_digest, events.digest, output, provider=model.provider)
    ratios = _to_ratio(model.run(events.values, batch_size), output, model.fail)
    ratios.flags.writeable = False
    if cache is not None and key is not None:
        cache.put(key, ratios)
    return ratios


class _RatioModel:
    """An onnxruntime session checked against the ratio-model contract."""

    def __init__(
        self,
        content: bytes,
        shown: str,
        pointer: str,
        observables: Sequence[str],
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        self.shown, self.pointer, self.observables = shown, pointer, tuple(observables)
        try:
            refused = check_operators(content)
        except ValueError as err:
            raise self.fail(f"not a valid ONNX model (malformed protobuf: {err})") from None
        if refused:
            raise self.fail(refused)
        self.seconds = run_seconds()
        options = ort.SessionOptions()
        options.log_severity_level = 4  # errors are re-raised as one line, not logged
        try:
            self.session = ort.InferenceSession(
                content, sess_options=options, providers=list(providers)
            )
        except Exception as err:  # noqa: BLE001 (third-party errors, one line)
            raise self.fail(f"not a valid ONNX model ({_first_line(err)})") from None
        self.provider = self.session.get_providers()[0]
        self._check_input()
        self._check_output()

    def fail(self, message: str) -> InvalidONNXModel:
        return InvalidONNXModel(at(self.pointer, f"{self.shown}: {message}"))

    def _check_input(self) -> None:
        inputs = self.session.get_inputs()
        width = len(self.observables)
        expected = f"[N, {width}] (one column per observable: {', '.join(self.observables)})"
        if len(inputs) != 1:
            raise self.fail(
                f"has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                f"a ratio model takes one tensor {expected}"
            )
        tensor = inputs[0]
        if tensor.type not in _INPUT_DTYPES:
            raise self.fail(
                f"input {tensor.name!r} has type {tensor.type}; expected "
                "tensor(float) or tensor(double)"
            )
        shape = tensor.shape
        if len(shape) != 2:
            raise self.fail(f"input {tensor.name!r} has shape {shape}; expected {expected}")
        if isinstance(shape[1], int) and shape[1] != width:
            raise self.fail(
                f"input {tensor.name!r} takes {shape[1]} columns but the channel "
                f"has {width} observables ({', '.join(self.observables)})"
            )
        if isinstance(shape[0], int):
            raise self.fail(
                f"input {tensor.name!r} has a fixed batch size {shape[0]}; export "
                "it with a dynamic first axis (any number of events)"
            )
        self.input_name, self.input_dtype = tensor.name, _INPUT_DTYPES[tensor.type]

    def _check_output(self) -> None:
        outputs = self.session.get_outputs()
        if len(outputs) != 1:
            raise self.fail(
                f"has {len(outputs)} outputs ({', '.join(o.name for o in outputs)}"
                "); a ratio model has one output, one number per event"
            )
        tensor = outputs[0]
        if tensor.type not in _OUTPUT_TYPES:
            raise self.fail(
                f"output {tensor.name!r} has type {tensor.type}; expected a floating-point tensor"
            )
        shape = tensor.shape
        per_event = (
            len(shape) == 1
            or (len(shape) == 2 and shape[1] in (1, None))
            or (len(shape) == 2 and isinstance(shape[1], str))
        )
        if not per_event:
            raise self.fail(
                f"output {tensor.name!r} has shape {shape}; expected one number "
                "per event ([N] or [N, 1])"
            )
        self.output_name = tensor.name

    def run(self, values: np.ndarray, batch_size: int) -> np.ndarray:
        """Raw model outputs (N,) in float64, computed batch by batch."""
        n_events = values.shape[0]
        raw = np.empty(n_events, dtype=np.float64)
        cast = values.dtype != self.input_dtype
        if cast:  # one reused buffer: casting into fresh arrays costs more than the copy
            shape = (min(batch_size, n_events), values.shape[1])
            buffer = np.empty(shape, dtype=self.input_dtype)
        for start in range(0, n_events, batch_size):
            batch = values[start : start + batch_size]
            if cast:
                np.copyto(buffer[: batch.shape[0]], batch, casting="same_kind")
                batch = buffer[: batch.shape[0]]
            self._run_batch(batch, start, raw)
        return raw

    def _run_batch(self, batch: np.ndarray, start: int, raw: np.ndarray) -> None:
        stop = start + batch.shape[0]
        run_options = ort.RunOptions()
        run_options.log_severity_level = 4
        watchdog = threading.Timer(self.seconds, setattr, (run_options, "terminate", True))
        watchdog.daemon = True
        watchdog.start()
        try:
            (output,) = self.session.run([self.output_name], {self.input_name: batch}, run_options)
        except Exception as err:  # noqa: BLE001 (third-party errors, one line)
            if run_options.terminate:
                raise self.fail(
                    f"evaluation of events {start}..{stop - 1} stopped after the time limit of "
                    f"{self.seconds:g} s (raise ${SECONDS_ENV} if the model is that slow)"
                ) from None
            raise self.fail(
                f"onnxruntime refused events {start}..{stop - 1} ({_first_line(err)}); "
                f"the model must take [N, {len(self.observables)}] inputs"
            ) from None
        finally:
            watchdog.cancel()
        raw[start:stop] = self._one_per_event(output, stop - start, start)

    def _one_per_event(self, output: Any, count: int, start: int) -> np.ndarray:
        output = np.asarray(output)
        if output.shape not in ((count,), (count, 1)) or output.dtype.kind not in "fiu":
            raise self.fail(
                f"output has shape {output.shape} and type {output.dtype} for "
                f"events {start}..{start + count - 1}; expected one number per "
                "event ([N] or [N, 1])"
            )
        return output.reshape(count)


def _to_ratio(raw: np.ndarray, output: str, fail: Any) -> np.ndarray:
    """Check the raw outputs and transform them to ratios 0 < r < inf (float64)."""
    if output == "ratio":
        ratios = raw
    elif output == "probability":
        if not _within(raw, 0.0, 1.0):
            _diagnose(raw, raw, output, fail)
        ratios = 1.0 - raw
        np.divide(raw, ratios, out=ratios)
    else:
        ratios = _parallel_exp(raw)
    if not _within(ratios, 0.0, np.inf):  # also false for NaN: min/max propagate it
        _diagnose(raw, ratios, output, fail)
    return ratios


def _parallel_exp(values: np.ndarray) -> np.ndarray:
    """exp of a large array in chunks on several threads (numpy releases the GIL)."""
    result = np.empty_like(values)
    workers = min(os.cpu_count() or 1, 8) if values.size >= _PARALLEL_MIN else 1
    bounds = np.linspace(0, values.size, workers + 1).astype(int)

    def chunk(k: int) -> None:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            np.exp(values[bounds[k] : bounds[k + 1]], out=result[bounds[k] : bounds[k + 1]])

    if workers == 1:
        chunk(0)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(chunk, range(workers)))
    return result


def _within(values: np.ndarray, lo: float, hi: float) -> bool:
    """lo < values < hi everywhere (two reductions, no temporaries; False for NaN)."""
    return values.size == 0 or bool(values.min() > lo and values.max() < hi)


def _diagnose(raw: np.ndarray, ratios: np.ndarray, output: str, fail: Any) -> None:
    """Raise for the first event that breaks a rule, checking the rules in order."""
    with np.errstate(invalid="ignore"):
        _first_bad(~np.isfinite(raw), raw, f"{output} output", "must be finite", fail)
        if output == "probability":
            _first_bad((raw <= 0) | (raw >= 1), raw, "probability", "must lie in (0, 1)", fail)
        if output in ("log_ratio", "logit"):
            _first_bad(~np.isfinite(ratios), raw, output, "overflows exp()", fail)
        _first_bad(ratios <= 0, ratios, "ratio", "must be > 0", fail)
    raise fail("ratios outside (0, inf)")  # unreachable: the rules above cover every case


def _first_bad(bad: np.ndarray, values: np.ndarray, what: str, rule: str, fail: Any) -> None:
    if bad.any():
        event = int(np.argmax(bad))
        raise fail(
            f"event {event}: {what} is {float(values[event])!r}, which {rule} "
            f"({int(bad.sum())} events affected)"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
