"""Compile an unbinned channel into per-event arrays, evaluating every network once.

The per-event quantities of the likelihood do not depend on the parameters: the
nominal ratios r_j(x_i) and the shape-systematic ratios g_jk^±(x_i). They are evaluated
here with onnxruntime (cached by content digest) on the channel's event set, which is
the observed events followed by the reference events, and stored as plain numpy arrays.
Everything that depends on θ lives in :mod:`ratiofactory.likelihood`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidEvents, InvalidModel, InvalidONNXModel
from .events import EventSet, load_events
from .expressions import Expression, parse_expression
from .files import read_file_ref
from .onnx_check import check_operators
from .onnx_eval import evaluate_ratio
from .parameterised import ParameterisedRatio
from .ratio_cache import RatioCache
from .spurious_signal import SpuriousSignal, spurious_signal_of

__all__ = ["CompiledSample", "ShapeSystematic", "UnbinnedChannel", "compile_unbinned_channel"]

DEFAULT_INTERPOLATION = "code4"


@dataclass(frozen=True)
class ShapeSystematic:
    """A per-event shape systematic of one sample: g^±(x_i) on the channel's event set."""

    parameter: str
    code: str
    hi: np.ndarray
    lo: np.ndarray


@dataclass(frozen=True)
class NormSystematic:
    """A normalisation systematic (normsys) of one sample."""

    parameter: str
    code: str
    hi: float
    lo: float


@dataclass(frozen=True)
class CompiledSample:
    """One sample: nominal yield, its θ-dependent factors, and r_j(x_i) on the event set."""

    name: str
    nominal_yield: float
    ratio: np.ndarray
    ratio_members: np.ndarray
    formulas: tuple[Expression, ...]
    normfactors: tuple[str, ...]
    lumi: str | None
    normsys: tuple[NormSystematic, ...]
    shapesys: tuple[ShapeSystematic, ...]
    spurious: SpuriousSignal | None = None  # shifts `spurious.parameter` in the coefficients
    parameterised: ParameterisedRatio | None = None
    """The network of a ratio r(x | θ) (:mod:`ratiofactory.parameterised`); ``ratio`` and
    ``ratio_members`` are then NaN: the likelihood evaluates the network at every θ."""


@dataclass(frozen=True)
class UnbinnedChannel:
    """An unbinned channel compiled to arrays.

    The event set is ``n_observed`` observed events followed by ``n_reference``
    reference events; ``reference_weights`` sum to one. ``ratio_normalisation`` and
    ``shape_normalisation`` are the channel's settings with their defaults resolved
    (``"reference"`` for both when the channel has a reference sample, else ``"none"``
    and ``"nominal"``); the arrays here are the networks' raw outputs either way.
    """

    name: str
    observables: tuple[str, ...]
    samples: tuple[CompiledSample, ...]
    observed: EventSet
    reference: EventSet | None
    observed_weights: np.ndarray
    reference_weights: np.ndarray
    shape_normalisation: str
    ratio_normalisation: str = "none"
    spurious_signal: SpuriousSignal | None = None

    @property
    def n_observed(self) -> int:
        return len(self.observed_weights)

    @property
    def n_reference(self) -> int:
        return len(self.reference_weights)

    @property
    def n_events(self) -> int:
        return self.n_observed + self.n_reference

    @property
    def parameters(self) -> frozenset[str]:
        names: set[str] = set()
        for sample in self.samples:
            for expr in sample.formulas:
                names |= expr.parameters
            names.update(sample.normfactors)
            names.update(m.parameter for m in sample.normsys)
            names.update(m.parameter for m in sample.shapesys)
            names.update(sample.parameterised.parameters if sample.parameterised else ())
            if sample.lumi:
                names.add(sample.lumi)
        if self.spurious_signal is not None:
            names.add(self.spurious_signal.name)
        return frozenset(names)


def _check_bounds(events: EventSet, observables: list[Mapping[str, Any]], pointer: str) -> None:
    for column, observable in enumerate(observables):
        if "bounds" not in observable:
            continue
        lo, hi = observable["bounds"]
        values = events.values[:, column]
        outside = np.flatnonzero((values < lo) | (values > hi))
        if outside.size:
            first = int(outside[0])
            raise InvalidEvents(
                f"{pointer}: {outside.size} events of {events.source} lie outside the bounds "
                f"[{lo}, {hi}] of observable '{observable['name']}' (first: event {first}, "
                f"{observable['name']} = {float(values[first])!r}); select events inside the bounds"
            )


def _empty_events(observables: tuple[str, ...]) -> EventSet:
    return EventSet(
        values=np.zeros((0, len(observables))),
        weights=None,
        observables=observables,
        source="(no reference sample)",
    )


def _reference_weights(reference: EventSet, pointer: str) -> np.ndarray:
    if reference.weights is None:
        return np.full(len(reference.values), 1.0 / max(len(reference.values), 1))
    total = float(np.sum(reference.weights))
    if not total > 0:
        raise InvalidEvents(f"{pointer}: the weights of {reference.source} sum to {total}, not > 0")
    if np.any(reference.weights <= 0):
        first = int(np.flatnonzero(reference.weights <= 0)[0])
        raise InvalidEvents(
            f"{pointer}: reference event {first} of {reference.source} has weight "
            f"{float(reference.weights[first])!r}; reference weights must be positive"
        )
    return reference.weights / total


class _Evaluator:
    """Evaluates ratio specs on the observed and the reference events of one channel."""

    def __init__(self, base_dir: Path, sets: tuple[EventSet, ...], cache: RatioCache | None):
        self.base_dir, self.sets, self.cache = base_dir, sets, cache

    def __call__(self, ratio_spec: Mapping[str, Any], pointer: str) -> tuple[np.ndarray, np.ndarray]:
        parts = [
            evaluate_ratio(ratio_spec, events, self.base_dir, pointer=pointer, cache=self.cache)
            for events in self.sets
            if len(events.values)
        ]
        if not parts:
            return np.zeros(0), np.zeros((1, 0))
        mean = np.concatenate([p.mean for p in parts])
        members = np.concatenate([p.members for p in parts], axis=1)
        return mean, members


def _parameterised(spec: Mapping[str, Any], pointer: str, base_dir: Path) -> ParameterisedRatio:
    """A ratio model with parameter inputs: read (digest checked), operators allow-listed."""
    content, _ = read_file_ref(base_dir, spec["onnx"], pointer=f"{pointer}/onnx")
    try:
        refused = check_operators(content)
    except ValueError:
        refused = "not an ONNX model"
    if refused:
        raise InvalidONNXModel(f"{pointer}: {spec['onnx']['path']}: {refused}")
    return ParameterisedRatio(content, spec["output"], tuple(spec["parameters"]), spec["onnx"]["path"], pointer)


def _compile_sample(sample: Mapping[str, Any], pointer: str, evaluate: _Evaluator) -> CompiledSample:
    parameterised = None
    if "parameters" in sample["ratio"]:
        parameterised = _parameterised(sample["ratio"], f"{pointer}/ratio", evaluate.base_dir)
        n = sum(len(events.values) for events in evaluate.sets)
        ratio, members = np.full(n, np.nan), np.full((1, n), np.nan)
    else:
        ratio, members = evaluate(sample["ratio"], f"{pointer}/ratio")
    formulas, normfactors, normsys, shapesys, lumi = [], [], [], [], None
    for m_idx, modifier in enumerate(sample.get("modifiers", [])):
        where = f"{pointer}/modifiers/{m_idx}"
        kind, data = modifier["type"], modifier.get("data")
        if kind == "formula":
            formulas.append(parse_expression(data["expression"], pointer=f"{where}/data/expression"))
        elif kind == "normfactor":
            normfactors.append(modifier["name"])
        elif kind == "lumi":
            lumi = modifier["name"]
        elif kind == "normsys":
            code = data.get("interpolation", DEFAULT_INTERPOLATION)
            normsys.append(NormSystematic(modifier["name"], code, float(data["hi"]), float(data["lo"])))
        elif kind == "ratiosys":
            code = data.get("interpolation", DEFAULT_INTERPOLATION)
            hi, _ = evaluate(data["hi"], f"{where}/data/hi")
            lo, _ = evaluate(data["lo"], f"{where}/data/lo")
            shapesys.append(ShapeSystematic(modifier["name"], code, hi, lo))
        else:  # the schema admits no other type
            raise InvalidModel(f"{where}/type: unknown unbinned modifier type {kind!r}")
    return CompiledSample(
        name=sample["name"],
        nominal_yield=float(sample["yield"]),
        ratio=ratio,
        ratio_members=members,
        formulas=tuple(formulas),
        normfactors=tuple(normfactors),
        lumi=lumi,
        normsys=tuple(normsys),
        shapesys=tuple(shapesys),
        parameterised=parameterised,
    )


def compile_unbinned_channel(
    channel: Mapping[str, Any],
    pointer: str,
    observation: Mapping[str, Any] | None,
    observation_pointer: str,
    base_dir: Path,
    cache: RatioCache | None,
) -> UnbinnedChannel:
    """Load the events of ``channel`` and evaluate all its ratio models once."""
    observables = tuple(o["name"] for o in channel["observables"])
    if observation is not None:
        observed = load_events(base_dir, observation["events"], observables, pointer=f"{observation_pointer}/events")
        _check_bounds(observed, channel["observables"], f"{observation_pointer}/events")
    else:
        observed = _empty_events(observables)
    if "reference" in channel:
        ref_pointer = f"{pointer}/reference/events"
        reference = load_events(base_dir, channel["reference"]["events"], observables, pointer=ref_pointer)
        _check_bounds(reference, channel["observables"], ref_pointer)
        reference_weights = _reference_weights(reference, ref_pointer)
    else:
        reference, reference_weights = None, np.zeros(0)
    sets = (observed,) if reference is None else (observed, reference)
    evaluate = _Evaluator(base_dir, sets, cache)
    samples = tuple(
        _compile_sample(sample, f"{pointer}/samples/{j}", evaluate)
        for j, sample in enumerate(channel["samples"])
    )
    spurious = spurious_signal_of(channel, pointer)
    if spurious is not None:
        samples = _with_spurious_signal(samples, spurious, f"{pointer}/spurious_signal/parameter")
    observed_weights = (
        np.ones(len(observed.values)) if observed.weights is None else np.asarray(observed.weights, float)
    )
    return UnbinnedChannel(
        name=channel["name"],
        observables=observables,
        samples=samples,
        observed=observed,
        reference=reference,
        observed_weights=observed_weights,
        reference_weights=reference_weights,
        shape_normalisation=channel.get("shape_normalisation", "nominal" if reference is None else "reference"),
        ratio_normalisation=channel.get("ratio_normalisation", "none" if reference is None else "reference"),
        spurious_signal=spurious,
    )


def _with_spurious_signal(
    samples: tuple[CompiledSample, ...], spurious: SpuriousSignal, pointer: str
) -> tuple[CompiledSample, ...]:
    """The samples whose coefficients use ``spurious.parameter`` get the shift."""
    def uses(sample: CompiledSample) -> bool:
        return spurious.parameter in sample.normfactors or any(
            spurious.parameter in f.parameters for f in sample.formulas)

    if not any(uses(s) for s in samples):
        raise InvalidModel(
            f"{pointer}: no formula or normfactor of the channel uses '{spurious.parameter}'; "
            "the spurious signal shifts that parameter in the channel's coefficients"
        )
    return tuple(dataclasses.replace(s, spurious=spurious) if uses(s) else s for s in samples)
