"""pyhf patchsets and JSON patches on ratiofactory workspaces (signal grids).

A search publishes a background-only workspace and a *patchset*: one JSON patch
(RFC 6902) per signal point, with the point's name and coordinates (``values``, one per
``labels`` entry) and the digest of the workspace it applies to. The format is pyhf's
(``pyhf.PatchSet``, schema ``patchset.json``); here a patch may also touch unbinned
channels (yields, ratio-model references, whole samples). Every patched result is
validated with ratiofactory's schema, and an error names the patch, the failing
operation and the JSON pointer.

>>> import ratiofactory
>>> ws = ratiofactory.Workspace({
...     "version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [{"name": "bkg", "data": [50.0], "modifiers": []}]}],
...     "observations": [{"name": "SR", "data": [52.0]}],
...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}]})
>>> signal = {"name": "signal", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}
>>> patchset = PatchSet.from_patches(ws.spec, {"sig_100": [{"op": "add", "path": "/channels/0/samples/0",
...                                   "value": signal}]}, labels=["m"], values={"sig_100": [100]})
>>> patchset.names, patchset["sig_100"].values
(['sig_100'], (100.0,))
>>> patched = patchset.apply(ws, "sig_100")
>>> [s["name"] for s in patched.spec["channels"][0]["samples"]]
['signal', 'bkg']
>>> apply_patch(ws, [{"op": "replace", "path": "/channels/0/samples/0/data", "value": "x"}], name="bad")
Traceback (most recent call last):
...
ratiofactory.errors.InvalidSpecification: patch 'bad': /channels/0/samples/0/data: 'x' is not of type 'array'
>>> apply_patch(ws, [{"op": "remove", "path": "/channels/0/samples/3"}], name="bad")
Traceback (most recent call last):
...
ratiofactory.errors.InvalidSpecification: patch 'bad': /0: operation 0 (remove /channels/0/samples/3) does not apply to the workspace: can't remove a non-existent object '3'

"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer
import pyhf

from . import jsontext
from .errors import InvalidSpecification, RatiofactoryError
from .files import read_text

__all__ = ["Patch", "PatchSet", "apply_patch", "load_patch_operations", "values_from_name"]

PATCHSET_VERSION = "1.0.0"


@dataclass(frozen=True)
class Patch:
    """One signal point: its ``name``, coordinates ``values`` and JSON-patch ``operations``."""

    name: str
    values: tuple[float, ...]
    operations: tuple[Mapping[str, Any], ...]
    pointer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"metadata": {"name": self.name, "values": list(self.values)},
                "patch": [dict(op) for op in self.operations]}


def _pointer(path: Sequence[Any]) -> str:
    return "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in path)


def _validate(instance: Any, schema_name: str, what: str, source: str) -> None:
    """pyhf's schema ``schema_name``; errors as :class:`InvalidSpecification` with a pointer."""
    import jsonschema

    try:
        pyhf.schema.validate(instance, schema_name, version=PATCHSET_VERSION)
    except pyhf.exceptions.InvalidSpecification as err:
        cause = err.__context__
        if isinstance(cause, jsonschema.ValidationError):
            message, pointer = cause.message, _pointer(cause.absolute_path)
        else:
            message, pointer = str(err).splitlines()[0], ""
        raise InvalidSpecification(f"not a {what}: {message}", pointer=pointer, source=source) from None


def apply_patch(workspace: Any, operations: Sequence[Any], *, name: str = "patch",
                pointer: str = "") -> Any:
    """A new :class:`~ratiofactory.Workspace` (same directory for file references): ``workspace``
    with the JSON-patch ``operations`` applied, validated by ratiofactory's schema and
    consistency rules. Errors name the patch, the operation and the JSON pointer."""
    from .workspace import Workspace

    spec = workspace.spec
    where = f"patch '{name}'" + (f" ({pointer})" if pointer else "")
    for index, operation in enumerate(operations):
        try:
            spec = jsonpatch.JsonPatch([dict(operation)]).apply(spec)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as err:
            op = f"{operation.get('op')} {operation.get('path')}" if isinstance(operation, Mapping) else "?"
            raise InvalidSpecification(
                f"operation {index} ({op}) does not apply to the workspace: {err}",
                pointer=f"{pointer}/patch/{index}" if pointer else f"/{index}", source=where) from None
    try:
        return Workspace(spec, base_dir=workspace.base_dir)
    except InvalidSpecification as err:
        raise InvalidSpecification(err.message, pointer=err.pointer, source=where) from None
    except RatiofactoryError as err:
        raise type(err)(f"{where}: {err}") from None


def load_patch_operations(path: str | Path) -> list[dict[str, Any]]:
    """The operations of a JSON-patch file (pyhf's ``--patch`` files: a JSON list)."""
    operations = jsontext.loads(read_text(path, "the patch file"), str(path))
    _validate(operations, "jsonpatch.json", "JSON patch", str(path))
    return operations


def values_from_name(name: str) -> list[float]:
    """The numbers in a signal point's name, e.g. the masses of ``sbottom_1300_850_60``.

    >>> values_from_name("patch.sbottom_1300_850_60")
    [1300.0, 850.0, 60.0]
    """
    return [float(v) for v in re.findall(r"\d+(?:\.\d+)?", name)]


class PatchSet:
    """A pyhf patchset (``labels``, ``digests``, named patches with ``values``).

    Behaves like a list of :class:`Patch` (iteration, ``len``) and a dict keyed by patch
    name or by the tuple of values. The spec is validated with pyhf's ``patchset.json``
    schema, except that ``metadata.references`` (pyhf requires a HEPData record
    ``{"hepdata": "insNNNNNNN"}``) may be left out for a grid not yet published; names
    and values must be unique.
    """

    def __init__(self, spec: Mapping[str, Any], *, source: str = "") -> None:
        self.source = source
        checked = copy.deepcopy(dict(spec))
        metadata = checked.get("metadata")
        if isinstance(metadata, dict) and "references" not in metadata:
            metadata["references"] = {"hepdata": "ins0000000"}  # optional here; pyhf requires a HEPData record
        _validate(checked, "patchset.json", "pyhf patchset", source)
        self._spec = copy.deepcopy(dict(spec))
        metadata = self._spec["metadata"]
        self.labels: list[str] = list(metadata["labels"])
        self.digests: dict[str, str] = dict(metadata["digests"])
        self.description: str = metadata.get("description", "")
        self.references: dict[str, str] = dict(metadata.get("references", {}))
        self.patches: list[Patch] = []
        by_name: dict[str, Patch] = {}
        by_values: dict[tuple[float, ...], Patch] = {}
        for index, entry in enumerate(self._spec["patches"]):
            pointer = f"/patches/{index}"
            patch = Patch(entry["metadata"]["name"], tuple(float(v) for v in entry["metadata"]["values"]),
                          tuple(entry["patch"]), pointer)
            if len(patch.values) != len(self.labels):
                raise InvalidSpecification(
                    f"patch '{patch.name}' has {len(patch.values)} values for {len(self.labels)} labels "
                    f"{self.labels}", pointer=f"{pointer}/metadata/values", source=source)
            checks: tuple[tuple[Any, dict[Any, Patch], str], ...] = (
                (patch.name, by_name, "name"), (patch.values, by_values, "values"))
            for key, seen, what in checks:
                if key in seen:
                    raise InvalidSpecification(f"patch {what} {key!r} appears twice (also at {seen[key].pointer})",
                                               pointer=f"{pointer}/metadata/{what}", source=source)
                seen[key] = patch
            self.patches.append(patch)
        self._by_name, self._by_values = by_name, by_values

    @classmethod
    def load(cls, path: str | Path) -> PatchSet:
        """Read a patchset JSON file."""
        spec = jsontext.loads(read_text(path, "the patchset file"), str(path))
        if not isinstance(spec, dict):
            raise InvalidSpecification(f"a patchset is a JSON object, got {type(spec).__name__}", source=str(path))
        return cls(spec, source=str(path))

    @classmethod
    def from_patches(cls, background: Mapping[str, Any], patches: Mapping[str, Sequence[Mapping[str, Any]]], *,
                     labels: Sequence[str], values: Mapping[str, Sequence[float]] | None = None,
                     description: str = "", references: Mapping[str, str] | None = None) -> PatchSet:
        """A patchset of the named ``patches`` for the workspace spec ``background``
        (its sha256 digest is recorded); ``values[name]`` defaults to the numbers in the name."""
        entries = []
        for name, operations in patches.items():
            point = list(values[name]) if values is not None else values_from_name(name)
            entries.append({"metadata": {"name": name, "values": point}, "patch": [dict(op) for op in operations]})
        metadata: dict[str, Any] = {
            "description": description or "signal grid", "labels": list(labels),
            "digests": {"sha256": pyhf.utils.digest(dict(background), algorithm="sha256")}}
        if references:
            metadata["references"] = dict(references)
        return cls({"metadata": metadata, "patches": entries, "version": PATCHSET_VERSION})

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.patches]

    def __len__(self) -> int:
        return len(self.patches)

    def __iter__(self) -> Iterator[Patch]:
        return iter(self.patches)

    def __getitem__(self, key: str | Sequence[float]) -> Patch:
        if isinstance(key, str):
            if key in self._by_name:
                return self._by_name[key]
        else:
            values = tuple(float(v) for v in key)
            if values in self._by_values:
                return self._by_values[values]
        known = ", ".join(self.names[:10]) + (" ..." if len(self) > 10 else "")
        raise InvalidSpecification(f"no patch {key!r} in the patchset; patches: {known}", source=self.source)

    def verify(self, workspace: Any, *, hint: str = "pass verify=False to apply it anyway") -> None:
        """Check that ``workspace`` (or a spec) is the one the patchset was made for (its
        digests); ``hint`` ends the error (the command line gives its own option)."""
        spec = workspace.spec if hasattr(workspace, "spec") else dict(workspace)
        for algorithm, expected in self.digests.items():
            try:
                actual = pyhf.utils.digest(spec, algorithm=algorithm)
            except ValueError:
                raise InvalidSpecification(f"unknown digest algorithm {algorithm!r}",
                                           pointer="/metadata/digests", source=self.source) from None
            if actual != expected:
                raise InvalidSpecification(
                    f"the patchset was made for a workspace with {algorithm} {expected}, not this one "
                    f"({actual}); {hint}", pointer="/metadata/digests",
                    source=self.source)

    def apply(self, workspace: Any, key: str | Sequence[float], *, verify: bool = True) -> Any:
        """The workspace with patch ``key`` (name or values) applied (see :func:`apply_patch`)."""
        if verify:
            self.verify(workspace)
        patch = self[key]
        return apply_patch(workspace, patch.operations, name=patch.name,
                           pointer=f"{self.source}{patch.pointer}" if self.source else patch.pointer)

    def to_dict(self) -> dict[str, Any]:
        """The patchset as pyhf's JSON."""
        return copy.deepcopy(self._spec)

    def __repr__(self) -> str:
        return f"PatchSet({len(self)} patches, labels={self.labels})"
