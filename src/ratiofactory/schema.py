"""The versioned workspace JSON schemas and validation of a workspace specification.

The schemas live in ``ratiofactory/schemas/<version>/`` and are read through
:mod:`importlib.resources`, so they are found from an installed wheel too. The binned
parts refer to pyhf's own installed schema by its ``$id``: every valid pyhf workspace is
a valid ratiofactory workspace by construction.

:func:`validate` checks a spec against the schema and raises
:class:`~ratiofactory.errors.InvalidSpecification` naming the JSON pointer (RFC 6901) of
the offending value; :mod:`ratiofactory.consistency` checks the rules a JSON schema
cannot express.

>>> spec = {
...     "version": "1.0.0",
...     "channels": [{"name": "CR", "samples": [
...         {"name": "bkg", "data": [50.0, 60.0], "modifiers": []}]}],
...     "observations": [{"name": "CR", "data": [52, 58]}],
...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
... }
>>> validate(spec)
>>> spec["observations"][0]["data"] = ["52"]
>>> validate(spec)
Traceback (most recent call last):
    ...
ratiofactory.errors.InvalidSpecification: ...
"""

from __future__ import annotations

import copy
import functools
import json
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeGuard

import jsonschema
import numpy as np
import referencing
from jsonschema.exceptions import ValidationError, best_match

from ratiofactory.errors import InvalidSpecification

__all__ = [
    "SCHEMA_VERSION",
    "json_pointer",
    "load_schema",
    "plain_value",
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


def is_array(instance: Any) -> TypeGuard[Sequence[Any]]:
    """JSON arrays, and also tuples and numpy arrays in specs built in Python (as pyhf)."""
    return isinstance(instance, (list, tuple)) or (
        isinstance(instance, np.ndarray) and instance.ndim > 0
    )


def _is_array(checker: Any, instance: Any) -> bool:
    """:func:`is_array` as a jsonschema type check."""
    return is_array(instance)


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
            return f"{_SHORT.repr(plain_value(value))} is not one of {expected!r}", path
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
    if full in message:
        plain = plain_value(error.instance)
        message = message.replace(full, _SHORT.repr(plain) if len(repr(plain)) > 80 else repr(plain))
    return " ".join(message.split())


def plain_value(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists and tuples as
    lists: what JSON would give, so that pyhf, ``json.dumps`` and messages (``1.5``, not
    ``np.float64(1.5)``) see one kind of spec.

    >>> plain_value({"a": [np.float64(1.5), np.array([1, 2])], "b": (np.True_,)})
    {'a': [1.5, [1, 2]], 'b': [True]}
    """
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {key: plain_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    return value
