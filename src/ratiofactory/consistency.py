"""Rules of a schema-valid workspace spec that a JSON schema cannot express.

Unique names, one observation per channel of the channel's kind and bin count, finite
numbers, sensible observable bounds. Data only: no file is opened. Errors are
:class:`~ratiofactory.errors.InvalidSpecification` naming the JSON pointer.

>>> spec = {
...     "version": "1.0.0",
...     "channels": [{"name": "CR", "samples": [
...         {"name": "bkg", "data": [50.0, 60.0], "modifiers": []}]}],
...     "observations": [{"name": "CR", "data": [52, 58]}],
...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
... }
>>> check_consistency(spec)
>>> spec["observations"][0]["data"] = [52]
>>> check_consistency(spec)
Traceback (most recent call last):
    ...
ratiofactory.errors.InvalidSpecification: /observations/0/data: 1 bins observed, but channel 'CR' (/channels/0) has 2 bins
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ratiofactory.binned_formulas import PLACEHOLDER_PREFIX
from ratiofactory.errors import InvalidSpecification
from ratiofactory.expressions import parse_expression
from ratiofactory.schema import is_array, json_pointer, plain_value
from ratiofactory.spurious_signal import spurious_signal_of

__all__ = ["check_consistency"]


def check_consistency(spec: Mapping[str, Any]) -> None:
    """Check the rules of a schema-valid spec that a JSON schema cannot express.

    Finite numbers; unique channel (binned and unbinned together), sample, observable,
    measurement names; one observation per channel, of the channel's kind (``data`` for
    binned, ``events`` for unbinned) and bin count; no modifier (name, type) twice on a
    sample; formula expressions in the formula language (binned and unbinned samples);
    no modifier name with the reserved placeholder prefix; observable bounds lower < upper;
    ``shape_normalisation`` or ``ratio_normalisation`` ``"reference"`` only with a
    reference sample. Data only: no file is opened. Call it on a spec that passed
    :func:`validate`.

    A binned (``data``) observation of a channel that does not exist is ignored, as pyhf
    does: published pyhf patches remove channels and keep their observations. An
    ``events`` observation of an unknown channel is an error.
    """
    _check_finite(spec, [])
    channels = _channels(spec)
    _check_unique(((name, f"{ptr}/name") for name, ptr, _ in channels), "channel")
    for index, channel in enumerate(spec.get("channels", [])):
        _check_binned_channel(channel, f"/channels/{index}")
    for index, channel in enumerate(spec.get("unbinned_channels", [])):
        _check_unbinned_channel(channel, f"/unbinned_channels/{index}")
    _check_observations(spec, channels)
    measurements = spec.get("measurements", [])
    _check_unique(
        ((m["name"], f"/measurements/{i}/name") for i, m in enumerate(measurements)),
        "measurement",
    )
    for index, measurement in enumerate(measurements):
        _check_parameter_settings(measurement["config"].get("parameters", []), f"/measurements/{index}/config")


def _check_finite(value: Any, path: list[str | int]) -> None:
    if isinstance(value, numbers.Real) and not math.isfinite(value):
        raise InvalidSpecification(f"{plain_value(value)} is not a finite number", json_pointer(path))
    items: Iterable[tuple[str | int, Any]] = ()
    if isinstance(value, Mapping):
        items = value.items()
    elif is_array(value):
        items = enumerate(value)
    for key, item in items:
        _check_finite(item, [*path, key])


def _check_parameter_settings(parameters: Sequence[Mapping[str, Any]], pointer: str) -> None:
    """Each bound is a pair lower < upper (pyhf's schema lets ``[[2.0]]`` through), each
    init lies inside the bounds given beside it, and constraint widths (``sigmas``) and
    Poisson scale factors (``factors``) are positive (pyhf's schema allows 0 and negative
    numbers; its likelihood is then NaN, with numpy's divide-by-zero warnings)."""
    for index, entry in enumerate(parameters):
        where = f"{pointer}/parameters/{index}"
        _check_positive(entry, "sigmas", "the width of its Gaussian constraint", where)
        _check_positive(entry, "factors", "the scale factor of its Poisson constraint", where)
        bounds = entry.get("bounds")
        for k, pair in enumerate(bounds if is_array(bounds) else []):
            if not (is_array(pair) and len(pair) == 2):
                raise InvalidSpecification(
                    f"a bound is a pair [lower, upper], got {plain_value(pair)!r}", f"{where}/bounds/{k}"
                )
            if not pair[0] < pair[1]:
                raise InvalidSpecification(
                    f"lower bound {plain_value(pair[0])} must be below upper bound {plain_value(pair[1])}",
                    f"{where}/bounds/{k}",
                )
        inits = entry.get("inits")
        if is_array(bounds) and is_array(inits) and len(inits) == len(bounds):
            for k, (init, (lower, upper)) in enumerate(zip(inits, bounds, strict=True)):
                if not lower <= init <= upper:
                    raise InvalidSpecification(
                        f"init {plain_value(init)} lies outside the bounds [{plain_value(lower)}, {plain_value(upper)}] "
                        f"of parameter {entry['name']!r}",
                        f"{where}/inits/{k}",
                    )


def _check_positive(entry: Mapping[str, Any], key: str, what: str, where: str) -> None:
    values = entry.get(key)
    for k, value in enumerate(values if is_array(values) else []):
        if isinstance(value, numbers.Real) and not float(value) > 0:
            raise InvalidSpecification(
                f"{key[:-1]} {plain_value(value)} of parameter {entry['name']!r} must be positive ({what})",
                f"{where}/{key}/{k}",
            )


def _channels(spec: Mapping[str, Any]) -> list[tuple[str, str, int | None]]:
    """(name, pointer, number of bins or None if unbinned) of every channel."""
    binned: list[tuple[str, str, int | None]] = [
        (channel["name"], f"/channels/{i}", len(channel["samples"][0]["data"]))
        for i, channel in enumerate(spec.get("channels", []))
    ]
    unbinned = [
        (channel["name"], f"/unbinned_channels/{i}", None)
        for i, channel in enumerate(spec.get("unbinned_channels", []))
    ]
    return binned + unbinned


def _check_unique(names: Iterable[tuple[Any, str]], what: str) -> None:
    """Raise at the second occurrence of a name, saying where the first one is."""
    first: dict[Any, str] = {}
    for name, pointer in names:
        if name in first:
            raise InvalidSpecification(
                f"duplicate {what} name {name!r}: already used at {first[name]}", pointer
            )
        first[name] = pointer


def _check_samples(samples: Sequence[Mapping[str, Any]], pointer: str) -> None:
    _check_unique(
        ((s["name"], f"{pointer}/samples/{i}/name") for i, s in enumerate(samples)), "sample"
    )
    for i, sample in enumerate(samples):
        _check_modifiers(sample.get("modifiers", []), f"{pointer}/samples/{i}/modifiers")


def _check_modifiers(modifiers: Sequence[Mapping[str, Any]], pointer: str) -> None:
    first: dict[tuple[str, str], int] = {}
    for i, modifier in enumerate(modifiers):
        if modifier["name"].startswith(PLACEHOLDER_PREFIX):
            raise InvalidSpecification(
                f"modifier names starting with {PLACEHOLDER_PREFIX!r} are reserved (the hidden "
                "placeholders of binned formulas)",
                f"{pointer}/{i}/name",
            )
        if modifier["type"] == "formula":
            parse_expression(modifier["data"]["expression"], pointer=f"{pointer}/{i}/data/expression")
        key = (modifier["name"], modifier["type"])
        if key in first:
            raise InvalidSpecification(
                f"modifier {key[0]!r} of type {key[1]!r} appears twice on this sample "
                f"(first at {pointer}/{first[key]})",
                f"{pointer}/{i}",
            )
        first[key] = i


def _check_binned_channel(channel: Mapping[str, Any], pointer: str) -> None:
    _check_samples(channel["samples"], pointer)
    nbins = len(channel["samples"][0]["data"])
    for place, values in _binned_arrays(channel, pointer):
        if len(values) != nbins:
            raise InvalidSpecification(
                f"{len(values)} bins, but the first sample of channel {channel['name']!r} "
                f"has {nbins}",
                place,
            )


def _binned_arrays(channel: Mapping[str, Any], pointer: str) -> Iterator[tuple[str, Any]]:
    """Every per-bin array of a binned channel with its pointer."""
    for i, sample in enumerate(channel["samples"]):
        yield f"{pointer}/samples/{i}/data", sample["data"]
        for k, modifier in enumerate(sample["modifiers"]):
            place = f"{pointer}/samples/{i}/modifiers/{k}/data"
            data = modifier["data"]
            if is_array(data):
                yield place, data
            elif isinstance(data, Mapping) and "hi_data" in data:
                yield f"{place}/hi_data", data["hi_data"]
                yield f"{place}/lo_data", data["lo_data"]


def _check_unbinned_channel(channel: Mapping[str, Any], pointer: str) -> None:
    observables = channel["observables"]
    _check_unique(
        ((o["name"], f"{pointer}/observables/{i}/name") for i, o in enumerate(observables)),
        "observable",
    )
    for i, observable in enumerate(observables):
        lower, upper = observable.get("bounds", (-math.inf, math.inf))
        if not lower < upper:
            raise InvalidSpecification(
                f"lower bound {lower} must be below upper bound {upper}",
                f"{pointer}/observables/{i}/bounds",
            )
    _check_samples(channel["samples"], pointer)
    spurious_signal_of(channel, pointer)  # grid strictly increasing, one delta per point
    for j, sample in enumerate(channel["samples"]):
        _check_parameterised_ratios(sample, f"{pointer}/samples/{j}")
    for key in ("shape_normalisation", "ratio_normalisation"):
        if channel.get(key) == "reference" and "reference" not in channel:
            raise InvalidSpecification(
                f"{key} 'reference' needs a reference sample: add "
                '"reference": {"events": {"path": ...}} to the channel',
                f"{pointer}/{key}",
            )


def _check_parameterised_ratios(sample: Mapping[str, Any], pointer: str) -> None:
    """Parameter inputs (r(x | θ)) only on a sample's own single ratio, without ratiosys."""
    for i, member in enumerate(sample["ratio"].get("ensemble", [])):
        if "parameters" in member:
            raise InvalidSpecification("ensemble members cannot take parameter inputs; use one"
                                       " parameterised model", f"{pointer}/ratio/ensemble/{i}/parameters")
    for m, modifier in enumerate(sample.get("modifiers", [])):
        if modifier["type"] != "ratiosys":
            continue
        if "parameters" in sample["ratio"]:
            raise InvalidSpecification("a sample with a parameterised ratio cannot have ratiosys"
                                       " modifiers (the shape variations of r(x | θ) are not defined)",
                                       f"{pointer}/modifiers/{m}")
        for side in ("hi", "lo"):
            if "parameters" in modifier["data"][side]:
                raise InvalidSpecification("ratiosys variations cannot take parameter inputs",
                                           f"{pointer}/modifiers/{m}/data/{side}/parameters")


def _check_observations(
    spec: Mapping[str, Any], channels: list[tuple[str, str, int | None]]
) -> None:
    by_name = {name: (pointer, nbins) for name, pointer, nbins in channels}
    seen: dict[str, str] = {}
    for i, observation in enumerate(spec["observations"]):
        name, pointer = observation["name"], f"/observations/{i}"
        if name not in by_name and "data" in observation:
            continue  # as pyhf: published patches remove channels and keep their data
        if name not in by_name:
            known = ", ".join(repr(n) for n in by_name)
            raise InvalidSpecification(
                f"observation of unknown channel {name!r}; the channels are {known}",
                f"{pointer}/name",
            )
        if name in seen:
            raise InvalidSpecification(
                f"second observation of channel {name!r} (first at {seen[name]})",
                f"{pointer}/name",
            )
        seen[name] = pointer
        _check_observation_kind(observation, pointer, *by_name[name])
    for name, (channel_pointer, _) in by_name.items():
        if name not in seen:
            raise InvalidSpecification(
                f"no observation of channel {name!r} ({channel_pointer})", "/observations"
            )


def _check_observation_kind(
    observation: Mapping[str, Any], pointer: str, channel_pointer: str, nbins: int | None
) -> None:
    name = observation["name"]
    if nbins is None and "data" in observation:
        raise InvalidSpecification(
            f"channel {name!r} ({channel_pointer}) is unbinned: observe it with 'events' "
            "(an event file), not 'data'",
            f"{pointer}/data",
        )
    if nbins is not None and "events" in observation:
        raise InvalidSpecification(
            f"channel {name!r} ({channel_pointer}) is binned: observe it with 'data' "
            "(counts per bin), not 'events'",
            f"{pointer}/events",
        )
    if nbins is not None and len(observation["data"]) != nbins:
        raise InvalidSpecification(
            f"{len(observation['data'])} bins observed, but channel {name!r} "
            f"({channel_pointer}) has {nbins} bins",
            f"{pointer}/data",
        )
