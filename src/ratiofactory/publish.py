"""Publishing a likelihood: bundles with a sha256 manifest, verification, safe unpacking.

A bundle is a ``.tar.gz`` holding the workspace JSON, every file it references (ONNX
models, event files) at their relative paths, and ``MANIFEST.json``::

    {"format": "ratiofactory-bundle", "version": 1, "workspace": "workspace.json",
     "files": {"workspace.json": "<sha256>", "models/S.onnx": "<sha256>", ...}}

:func:`verify` checks a bundle or an unpacked directory without running a fit: every
digest against the manifest and against the sha256 recorded in the workspace, the
schema, and every ONNX ratio model on a few reference events. :func:`unpack` refuses
members with absolute paths, ``..`` components, links and special files.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import DigestMismatch, InvalidFile, UnsafePath
from .files import atomic_write, file_references, resolve_path, sha256_file

__all__ = ["MANIFEST", "pack", "record_digests", "unpack", "verify"]

MANIFEST = "MANIFEST.json"
FORMAT = "ratiofactory-bundle"
#: reference events each ONNX model is evaluated on by :func:`verify`
CHECK_EVENTS = 64


def _ref_paths(ws: Any) -> dict[str, str]:
    """Relative path (posix, normalised) → JSON pointer of every file reference."""
    paths: dict[str, str] = {}
    for pointer, ref in file_references(ws.spec):
        path = resolve_path(ws.base_dir, ref["path"], pointer=pointer)
        paths.setdefault(path.relative_to(ws.base_dir).as_posix(), pointer)
    return paths


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(content), 0o644, 0
    tar.addfile(info, io.BytesIO(content))


def pack(workspace_path: str | os.PathLike[str], bundle_path: str | os.PathLike[str]) -> dict[str, str]:
    """Write ``bundle_path`` (.tar.gz) from a workspace file; returns the manifest's files.

    The workspace is validated and every referenced file's recorded sha256 checked first.
    """
    from .workspace import Workspace

    source = Path(workspace_path)
    ws = Workspace.load(source)
    ws.digest()  # checks the recorded digests of every referenced file
    name = source.name
    files = {name: sha256_file(source)}
    for relative in sorted(_ref_paths(ws)):
        if relative == MANIFEST:
            raise InvalidFile(f"{relative}: a referenced file may not be named {MANIFEST}")
        files[relative] = sha256_file(ws.base_dir / relative)
    manifest = {"format": FORMAT, "version": 1, "workspace": name, "files": files}
    target = Path(bundle_path)
    with atomic_write(target) as tmp, tarfile.open(tmp, "w:gz") as tar:
        _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        for relative in files:
            _add_bytes(tar, relative, (ws.base_dir / relative).read_bytes() if relative != name
                       else source.read_bytes())
    return files


def _check_member(member: tarfile.TarInfo, bundle: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(f"{bundle}: member {name!r} has an absolute path; refusing to unpack")
    if ".." in parts or "\\" in name:
        raise UnsafePath(f"{bundle}: member {name!r} would land outside the target directory; refusing to unpack")
    if not (member.isfile() or member.isdir()):
        kind = "a link" if member.issym() or member.islnk() else "a special file"
        raise UnsafePath(f"{bundle}: member {name!r} is {kind}; bundles hold regular files only")


def unpack(bundle: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Extract ``bundle`` into ``target`` (created; must be empty if it exists) after
    checking every member; returns ``target``."""
    bundle, target = Path(bundle), Path(target)
    try:
        with tarfile.open(bundle, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, bundle)
            if target.exists() and any(target.iterdir()):
                raise InvalidFile(f"{target}: the target directory is not empty")
            target.mkdir(parents=True, exist_ok=True)
            tar.extractall(target, members=members, filter="data")
    except (OSError, tarfile.TarError) as err:
        if isinstance(err, InvalidFile):
            raise
        raise InvalidFile(f"{bundle}: not a readable bundle ({err})") from None
    return target


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise InvalidFile(f"{path}: no manifest (is this a bundle made by 'ratiofactory pack'?)") from None
    except json.JSONDecodeError as err:
        raise InvalidFile(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise InvalidFile(f"{path}: not a {FORMAT} manifest")
    return manifest


def _check_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    for relative, expected in manifest["files"].items():
        path = resolve_path(directory, relative, pointer=f"{MANIFEST}/files")
        actual = sha256_file(path)
        if actual != expected:
            raise DigestMismatch(f"{relative}: sha256 is {actual}, the manifest records {expected}; "
                                 "the file was modified after packing")


def _ratio_specs(spec: dict[str, Any]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(channel index, pointer, ratio spec) of every ratio and ratiosys variation."""
    for c, channel in enumerate(spec.get("unbinned_channels", [])):
        for s, sample in enumerate(channel["samples"]):
            where = f"/unbinned_channels/{c}/samples/{s}"
            yield c, f"{where}/ratio", sample["ratio"]
            for m, modifier in enumerate(sample.get("modifiers", [])):
                if modifier["type"] == "ratiosys":
                    for side in ("hi", "lo"):
                        yield c, f"{where}/modifiers/{m}/data/{side}", modifier["data"][side]


def _check_onnx(ws: Any) -> int:
    """Evaluate every ratio spec on the first :data:`CHECK_EVENTS` events of its channel."""
    from .events import EventSet, load_events
    from .onnx_eval import evaluate_ratio

    spec, checked, samples = ws.spec, 0, {}
    for c, pointer, ratio_spec in _ratio_specs(spec):
        if c not in samples:
            channel = spec["unbinned_channels"][c]
            observables = [o["name"] for o in channel["observables"]]
            source = channel.get("reference", {}).get("events")
            where = f"/unbinned_channels/{c}/reference/events"
            if source is None:
                obs = {o["name"]: o for o in spec["observations"]}.get(channel["name"], {})
                source, where = obs.get("events"), "/observations"
            if source is None:
                samples[c] = None
                continue
            events = load_events(ws.base_dir, source, observables, pointer=where)
            samples[c] = EventSet(events.values[:CHECK_EVENTS], None, events.observables, events.source)
        if samples[c] is not None and len(samples[c].values):
            evaluate_ratio(ratio_spec, samples[c], ws.base_dir, pointer=pointer, cache=None)
            checked += 1
    return checked


def verify(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify a bundle (.tar.gz) or an unpacked bundle directory; raise on the first
    failure (naming the file), return a summary otherwise."""
    path = Path(path)
    if path.is_dir():
        return _verify_directory(path, str(path))
    with tempfile.TemporaryDirectory(prefix="ratiofactory-verify-") as tmp:
        return _verify_directory(unpack(path, Path(tmp) / "bundle"), str(path))


def _verify_directory(directory: Path, label: str) -> dict[str, Any]:
    from .workspace import Workspace

    manifest = _manifest(directory)
    _check_manifest(directory, manifest)
    ws = Workspace.load(directory / manifest["workspace"])
    missing = sorted(set(_ref_paths(ws)) - set(manifest["files"]))
    if missing:
        raise InvalidFile(f"{missing[0]}: referenced by the workspace but not listed in {MANIFEST}")
    digest = ws.digest()  # sha256 recorded in the workspace
    checked = _check_onnx(ws)
    return {"bundle": label, "workspace": manifest["workspace"], "files": len(manifest["files"]),
            "onnx_checked": checked, "digest": digest, "valid": True}


def record_digests(workspace_path: str | os.PathLike[str], *, update: bool = False) -> tuple[dict[str, Any], int]:
    """The workspace spec with ``sha256`` set on every file reference, and how many were added.

    A recorded digest that differs from the file raises :class:`DigestMismatch`
    unless ``update``.
    """
    from .workspace import Workspace

    ws = Workspace.load(workspace_path)
    spec = copy.deepcopy(ws.spec)
    added = 0
    for pointer, ref in file_references(spec):
        actual = sha256_file(resolve_path(ws.base_dir, ref["path"], pointer=pointer))
        recorded = ref.get("sha256")
        if recorded is not None and recorded.lower() != actual and not update:
            raise DigestMismatch(f"{pointer}: sha256 of {ref['path']} is {actual}, the workspace records "
                                 f"{recorded}; use --update to overwrite")
        if recorded is None or recorded.lower() != actual:
            ref["sha256"] = actual  # type: ignore[index]
            added += 1
    return spec, added
