"""The versioned workspace JSON schemas and validation of a workspace specification.

The schemas live in ``ratiofactory/schemas/<version>/`` and are read through
:mod:`importlib.resources`, so they are found from an installed wheel too. The binned
parts refer to pyhf's own installed schema by its ``$id``: every valid pyhf workspace is
a valid ratiofactory workspace by construction.

:func:`validate` checks a spec against the schema; :func:`check_consistency` checks the
rules a JSON schema cannot express (unique names, one observation per channel, bin
counts...). Both raise :class:`~ratiofactory.errors.InvalidSpecification` naming the JSON
pointer (RFC 6901) of the offending value.

>>> spec = {
...     "version": "1.0.0",
...     "channels": [{"name": "CR", "samples": [
...         {"name": "bkg", "data": [50.0, 60.0], "modifiers": []}]}],
...     "observations": [{"name": "CR", "data": [52, 58]}],
...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
... }
>>> validate(spec)
>>> check_consistency(spec)
>>> spec["observations"][0]["data"] = [52]
>>> check_consistency(spec)
Traceback (most recent call last):
    ...
ratiofactory.errors.InvalidSpecification: /observations/0/data: 1 bins observed, but channel 'CR' (/channels/0) has 2 bins
"""

from __future__ import annotations

import copy
import functools
import json
import math
import numbers
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import referencing
from jsonschema.exceptions import ValidationError, best_match

from ratiofactory.errors import InvalidSpecification

__all__ = [
    "SCHEMA_VERSION",
    "check_consistency",
    "json_pointer",
    "load_schema",
    "schema_versions",
    "validate",
]

SCHEMA_VERSION = "1.0.0"
"""The schema version written by this ratiofactory (and assumed when a spec has none)."""

_PYHF_SCHEMA_VERSION = {"1.0.0": "1.0.0"}
"""The pyhf schema version each of our versions builds on."""

_NO_CHANNEL = "a workspace needs at least one channel in 'channels' (binned) or 'unbinned_channels'"


# --- loading -------------------------------------------------------------------------


def schema_versions() -> tuple[str, ...]:
    """The schema versions shipped with this installation.

    >>> "1.0.0" in schema_versions()
    True
    """
    root = resources.files("ratiofactory") / "schemas"
    return tuple(sorted(entry.name for entry in root.iterdir() if entry.is_dir()))


def load_schema(name: str = "workspace.json", version: str = SCHEMA_VERSION) -> dict:
    """Return the schema ``name`` of ``version`` as a fresh dict.

    >>> load_schema()["$id"]
    'https://ratiofactory.readthedocs.io/schemas/1.0.0/workspace.json'
    """
    files = _schema_files(version)
    if name not in files:
        known = ", ".join(sorted(files))
        raise FileNotFoundError(f"no schema {name!r} in version {version}; there are {known}")
    return copy.deepcopy(files[name])


@functools.cache
def _schema_files(version: str) -> dict[str, dict]:
    """All schema files of a version, by file name (cached; do not mutate)."""
    if version not in schema_versions():
        known = ", ".join(schema_versions())
        raise InvalidSpecification(
            f"unknown workspace version {version!r}; this ratiofactory reads {known}", "/version"
        )
    return _read_json_files("ratiofactory", version)


def _read_json_files(package: str, version: str) -> dict[str, dict]:
    """The ``*.json`` files in ``<package>/schemas/<version>/``, by file name."""
    entries = (resources.files(package) / "schemas" / version).iterdir()
    return {e.name: json.loads(e.read_text("utf-8")) for e in entries if e.name.endswith(".json")}


@functools.cache
def _validator(version: str) -> jsonschema.protocols.Validator:
    """The compiled validator of a version: ours and pyhf's schemas in one registry."""
    pyhf_files = _read_json_files("pyhf", _PYHF_SCHEMA_VERSION[version])
    registry = referencing.Registry().with_resources(
        (schema["$id"], referencing.Resource.from_contents(schema))
        for schema in [*_schema_files(version).values(), *pyhf_files.values()]
    )
    return _Validator(_schema_files(version)["workspace.json"], registry=registry.crawl())


def _is_array(checker: Any, instance: Any) -> bool:
    """JSON arrays, and also tuples and numpy arrays in specs built in Python (as pyhf)."""
    return isinstance(instance, (list, tuple)) or (
        isinstance(instance, np.ndarray) and instance.ndim > 0
    )


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("array", _is_array),
)


# --- schema validation ---------------------------------------------------------------


def validate(spec: Mapping[str, Any], version: str | None = None) -> None:
    """Check ``spec`` against the workspace schema of ``version``.

    ``version`` defaults to the spec's own ``"version"`` (or :data:`SCHEMA_VERSION`).
    Raises :class:`InvalidSpecification` with the JSON pointer of the first problem and
    what was expected there.
    """
    validator = _validator(version or _version_of(spec))
    error = best_match(validator.iter_errors(spec))
    if error is not None:
        message, path = _explain(error)
        raise InvalidSpecification(message, json_pointer(path))


def _version_of(spec: Any) -> str:
    version = spec.get("version") if isinstance(spec, Mapping) else None
    if isinstance(version, str) and version not in schema_versions():
        _schema_files(version)  # raises: unknown version
    return version if isinstance(version, str) else SCHEMA_VERSION


def json_pointer(path: Iterable[str | int]) -> str:
    """The RFC 6901 JSON pointer of a path of keys and indices.

    >>> json_pointer(["unbinned_channels", 0, "a/b~c"])
    '/unbinned_channels/0/a~1b~0c'
    >>> json_pointer([])
    ''
    """
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 60, 60, 4, 4, 2


def _explain(error: ValidationError) -> tuple[str, Sequence[str | int]]:
    """A one-line message and the path of the most useful error under ``error``.

    For anyOf/oneOf (pyhf's binned modifiers), follow the one alternative whose
    discriminator (the ``type`` const) matched; if none matched, say which types exist.
    """
    while error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        matching = [errs for errs in branches.values() if not _const_errors(errs)]
        if len(matching) == 1:
            error = best_match(matching[0])
            continue
        shared = set.intersection(
            *({(e.message, tuple(e.absolute_path)) for e in errs} for errs in branches.values())
        )
        if len(shared) == 1:  # e.g. every alternative says "is not of type 'object'"
            ((message, path),) = shared
            return _message(next(e for e in error.context if e.message == message)), path
        expected = [e.validator_value for errs in branches.values() for e in _const_errors(errs)]
        paths = {tuple(e.absolute_path) for errs in branches.values() for e in _const_errors(errs)}
        if not matching and len(paths) == 1 and len(expected) == len(branches):
            (path,) = paths
            value = next(e.instance for e in error.context if tuple(e.absolute_path) == path)
            return f"{_SHORT.repr(value)} is not one of {expected!r}", path
        break
    return _message(error), error.absolute_path


def _const_errors(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """The errors of a mismatched discriminator: ``{"type": {"const": ...}}``."""
    return [
        e
        for e in errors
        if e.validator == "const" and e.absolute_path and e.absolute_path[-1] == "type"
    ]


def _message(error: ValidationError) -> str:
    """jsonschema's message, on one line, with long values abbreviated."""
    if (
        error.absolute_schema_path
        and error.absolute_schema_path[0] == "then"
        and len(error.absolute_path) <= 1
    ):
        return _NO_CHANNEL
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and description:
        return f"{_SHORT.repr(error.instance)} is not {description}"
    message = error.message
    full = repr(error.instance)
    if len(full) > 80 and full in message:
        message = message.replace(full, _SHORT.repr(error.instance))
    return " ".join(message.split())


# --- consistency -----------------------------------------------------------------------


def check_consistency(spec: Mapping[str, Any]) -> None:
    """Check the rules of a schema-valid spec that a JSON schema cannot express.

    Finite numbers; unique channel (binned and unbinned together), sample, observable,
    measurement names; one observation per channel, of the channel's kind (``data`` for
    binned, ``events`` for unbinned) and bin count; no modifier (name, type) twice on a
    sample; observable bounds lower < upper; ``shape_normalisation: "reference"`` only
    with a reference sample. Data only: no file is opened. Call it on a spec that passed
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


def _check_finite(value: Any, path: list[str | int]) -> None:
    if isinstance(value, numbers.Real) and not math.isfinite(value):
        raise InvalidSpecification(f"{value} is not a finite number", json_pointer(path))
    items: Iterable[tuple[str | int, Any]] = ()
    if isinstance(value, Mapping):
        items = value.items()
    elif _is_array(None, value):
        items = enumerate(value)
    for key, item in items:
        _check_finite(item, [*path, key])


def _channels(spec: Mapping[str, Any]) -> list[tuple[str, str, int | None]]:
    """(name, pointer, number of bins or None if unbinned) of every channel."""
    binned = [
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
            if _is_array(None, data):
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
    if channel.get("shape_normalisation") == "reference" and "reference" not in channel:
        raise InvalidSpecification(
            "shape_normalisation 'reference' needs a reference sample: add "
            '"reference": {"events": {"path": ...}} to the channel',
            f"{pointer}/shape_normalisation",
        )


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
