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
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from . import jsontext
from .errors import DigestMismatch, InvalidFile, UnsafePath
from .files import (
    atomic_write,
    default_max_bytes,
    file_references,
    read_text,
    resolve_path,
    sha256_file,
)

__all__ = ["MANIFEST", "pack", "record_digests", "unpack", "unpack_limits", "verify"]

MANIFEST = "MANIFEST.json"
FORMAT = "ratiofactory-bundle"
#: reference events each ONNX model is evaluated on by :func:`verify`
CHECK_EVENTS = 64

MAX_MEMBERS_ENV = "RATIOFACTORY_MAX_BUNDLE_MEMBERS"
MAX_BYTES_ENV = "RATIOFACTORY_MAX_BUNDLE_BYTES"
MAX_RATIO_ENV = "RATIOFACTORY_MAX_BUNDLE_RATIO"
MAX_FILE_BYTES_ENV = "RATIOFACTORY_MAX_FILE_BYTES"
DEFAULT_MAX_MEMBERS = 10_000
"""Most members :func:`unpack` extracts (``$RATIOFACTORY_MAX_BUNDLE_MEMBERS``)."""
DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024**3
"""Most bytes :func:`unpack` writes in all (``$RATIOFACTORY_MAX_BUNDLE_BYTES``, 64 GiB)."""
DEFAULT_MAX_RATIO = 100
"""Most uncompressed bytes per compressed byte (``$RATIOFACTORY_MAX_BUNDLE_RATIO``);
event files and ONNX models compress about 1-3x, a decompression bomb about 1000x."""
SMALL_BUNDLE_BYTES = 64 * 1024**2
"""Uncompressed size below which the ratio limit does not apply (64 MiB)."""
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


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


def _limit(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidFile(f"${name}={text!r} is not an integer") from None
    if value < 1:
        raise InvalidFile(f"${name}={text!r} must be a positive integer")
    return value


def unpack_limits(bundle_bytes: int) -> dict[str, int]:
    """The limits :func:`unpack` applies to a bundle of ``bundle_bytes`` (compressed):
    members, bytes of one member, total bytes (the smaller of
    ``$RATIOFACTORY_MAX_BUNDLE_BYTES`` and ``$RATIOFACTORY_MAX_BUNDLE_RATIO`` times the
    bundle's size, but at least :data:`SMALL_BUNDLE_BYTES`).

    >>> unpack_limits(10 * 1024**2)["total_bytes"] == 100 * 10 * 1024**2
    True
    """
    ratio = _limit(MAX_RATIO_ENV, DEFAULT_MAX_RATIO)
    total = min(_limit(MAX_BYTES_ENV, DEFAULT_MAX_BUNDLE_BYTES), max(ratio * bundle_bytes, SMALL_BUNDLE_BYTES))
    return {"members": _limit(MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS), "member_bytes": default_max_bytes(),
            "total_bytes": total, "ratio": ratio}


def _check_member(member: tarfile.TarInfo, bundle: Path, seen: set[str]) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(f"{bundle}: member {name!r} has an absolute path; refusing to unpack")
    if ".." in parts or "\\" in name:
        raise UnsafePath(f"{bundle}: member {name!r} would land outside the target directory; refusing to unpack")
    if not (member.isfile() or member.isdir()) or member.issparse():
        kind = "a link" if member.issym() or member.islnk() else "a special file"
        raise UnsafePath(f"{bundle}: member {name!r} is {kind}; bundles hold regular files only")
    normal = PurePosixPath(*parts).as_posix() if parts else "."
    if member.isfile() and normal in seen:
        raise UnsafePath(f"{bundle}: member {name!r} appears twice; the second copy would replace the first")
    seen.add(normal)


def _checked_members(tar: tarfile.TarFile, bundle: Path) -> list[tarfile.TarInfo]:
    """Every member, checked one by one as the archive is read, so that a bomb is refused
    from its headers before its data are decompressed."""
    limits = unpack_limits(bundle.stat().st_size)
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    total = 0
    for member in tar:
        members.append(member)
        if len(members) > limits["members"]:
            raise InvalidFile(f"{bundle}: more than {limits['members']} members; refusing to unpack "
                              f"(raise ${MAX_MEMBERS_ENV} if it is intended)")
        _check_member(member, bundle, seen)
        if member.size > limits["member_bytes"]:
            raise InvalidFile(f"{bundle}: member {member.name!r} has {member.size} bytes, above the limit of "
                              f"{limits['member_bytes']} (raise ${MAX_FILE_BYTES_ENV} if it is intended)")
        total += member.size
        if total > limits["total_bytes"]:
            raise InvalidFile(
                f"{bundle}: members hold more than {limits['total_bytes']} bytes uncompressed "
                f"({limits['ratio']}x the bundle's {bundle.stat().st_size} bytes, or "
                f"${MAX_BYTES_ENV}); refusing a possible decompression bomb (at member {member.name!r}; "
                f"raise ${MAX_RATIO_ENV} or ${MAX_BYTES_ENV} if it is intended)")
    return members


def unpack(bundle: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Extract ``bundle`` into ``target`` (created; must be empty if it exists) after
    checking every member and the limits of :func:`unpack_limits`; returns ``target``.

    Nothing is written unless every member passes; extraction goes to a temporary
    directory next to ``target`` that is renamed at the end.
    """
    bundle, target = Path(bundle), Path(target)
    if target.exists() and not target.is_dir():
        raise InvalidFile(f"{target}: the target exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise InvalidFile(f"{target}: the target directory is not empty")
    try:
        with tarfile.open(bundle, "r:*") as tar:
            members = _checked_members(tar, bundle)
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                umask = os.umask(0)
                os.umask(umask)
                staging.chmod(0o777 & ~umask)
                tar.extractall(staging, members=members, filter="data")
                if target.is_dir():
                    target.rmdir()
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except (OSError, tarfile.TarError, EOFError, zlib.error) as err:
        if isinstance(err, InvalidFile):
            raise
        raise InvalidFile(f"{bundle}: not a readable bundle ({err})") from None
    return target


def _manifest(directory: Path) -> dict[str, Any]:
    """The manifest, checked as untrusted input: its fields, types and file names."""
    path = directory / MANIFEST
    if path.is_symlink() or not path.is_file():
        raise InvalidFile(f"{path}: no manifest (is this a bundle made by 'ratiofactory pack'?)")
    manifest = jsontext.loads(read_text(path, "the manifest"), str(path))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidFile(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != 1:
        raise InvalidFile(f"{path}: manifest version {manifest.get('version')!r}; this ratiofactory reads 1")
    files, workspace = manifest.get("files"), manifest.get("workspace")
    if not isinstance(files, dict) or not files:
        raise InvalidFile(f"{path}: 'files' must be an object of file name → sha256")
    for name, digest in files.items():
        _check_manifest_name(name, path)
        if not (isinstance(digest, str) and _SHA256.match(digest)):
            raise InvalidFile(f"{path}: files/{name}: {digest!r} is not a sha256 (64 hexadecimal digits)")
    if not isinstance(workspace, str) or workspace not in files:
        raise InvalidFile(f"{path}: 'workspace' must name one of the files it lists, got {workspace!r}")
    return manifest


def _check_manifest_name(name: str, manifest: Path) -> None:
    """A manifest entry names a file inside the bundle: relative, normalised, no ``..``."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or PureWindowsPath(name).drive or "\\" in name:
        raise UnsafePath(f"{manifest}: entry {name!r} is not a relative path inside the bundle")
    if ".." in pure.parts or pure.as_posix() != name or "." in name.split("/"):
        raise UnsafePath(f"{manifest}: entry {name!r} is not a normalised path inside the bundle (no '..', '.', '//')")
    if name == MANIFEST:
        raise InvalidFile(f"{manifest}: the manifest may not list itself")


def _held_files(directory: Path) -> set[str]:
    """Relative posix paths of the regular files under ``directory`` (the manifest aside);
    a link or special file anywhere is refused."""
    held = set()
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if path.is_symlink():
                raise UnsafePath(f"{directory}: {relative} is a symbolic link; bundles hold regular files only")
            if name in files and not path.is_file():
                raise UnsafePath(f"{directory}: {relative} is a special file; bundles hold regular files only")
            if name in files:
                held.add(relative)
    held.discard(MANIFEST)
    return held


def _check_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """The manifest lists exactly the files the bundle holds, each with its digest."""
    listed, held = set(manifest["files"]), _held_files(directory)
    if held - listed:
        raise InvalidFile(f"{min(held - listed)}: in the bundle but not in {MANIFEST}; "
                          "every file of a bundle must be listed with its sha256")
    if listed - held:
        raise InvalidFile(f"{min(listed - held)}: listed in {MANIFEST} but not in the bundle")
    for relative, expected in manifest["files"].items():
        actual = sha256_file(directory / relative)
        if actual != expected.lower():
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

    spec, checked = ws.spec, 0
    samples: dict[int, EventSet | None] = {}
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
        sample = samples[c]
        if sample is not None and len(sample.values):
            evaluate_ratio(ratio_spec, sample, ws.base_dir, pointer=pointer, cache=None)
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

    directory = directory.resolve()
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
