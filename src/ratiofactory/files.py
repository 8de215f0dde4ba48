"""Safe resolution of the files a workspace refers to, and their sha256 digests.

A published workspace is untrusted input: every path is relative to the workspace
directory and must stay inside it (no absolute paths, no ``..`` escapes, no symlinks
pointing out), files are bounded in size, and a recorded sha256 digest is verified.

>>> import tempfile
>>> base = Path(tempfile.mkdtemp())
>>> _ = (base / "ref.txt").write_text("hello")
>>> resolve_path(base, "ref.txt", pointer="/x").name
'ref.txt'
>>> sha256_file(base / "ref.txt")[:12]
'2cf24dba5fb0'
>>> resolve_path(base, "../outside.txt", pointer="/x")
Traceback (most recent call last):
...
ratiofactory.errors.UnsafePath: /x: path '../outside.txt' escapes the workspace directory; use a path inside it
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ratiofactory.errors import DigestMismatch, InvalidFile, InvalidSpecification, UnsafePath

__all__ = [
    "DEFAULT_MAX_BYTES",
    "at",
    "atomic_write",
    "decode_utf8",
    "default_max_bytes",
    "file_references",
    "open_file_ref",
    "read_file_ref",
    "read_text",
    "resolve_path",
    "sha256_bytes",
    "sha256_file",
]

DEFAULT_MAX_BYTES = 4 * 1024**3
"""Largest file (bytes) read from a workspace unless configured otherwise (4 GiB)."""

_MAX_BYTES_ENV = "RATIOFACTORY_MAX_FILE_BYTES"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 1 << 20
_digest_memo: dict[tuple[str, int, int, int], str] = {}


def at(pointer: str, message: str) -> str:
    """Prefix ``message`` with the JSON pointer of the place it concerns.

    >>> at("/unbinned_channels/0", "bad")
    '/unbinned_channels/0: bad'
    """
    return f"{pointer or '/'}: {message}"


def default_max_bytes() -> int:
    """The file-size limit: ``$RATIOFACTORY_MAX_FILE_BYTES`` if set, else 4 GiB."""
    text = os.environ.get(_MAX_BYTES_ENV)
    if text is None:
        return DEFAULT_MAX_BYTES
    try:
        return int(text)
    except ValueError:
        raise InvalidFile(f"${_MAX_BYTES_ENV}={text!r} is not an integer number of bytes") from None


def resolve_path(
    base_dir: Path, relative: object, *, pointer: str, max_bytes: int | None = None
) -> Path:
    """Resolve ``relative`` (a path string from untrusted JSON) inside ``base_dir`` and return the absolute, real path.

    Raises :class:`UnsafePath` for absolute paths, ``..`` escapes and symlinks that
    resolve outside ``base_dir``; :class:`InvalidFile` for missing files, directories and
    files larger than ``max_bytes`` (default :func:`default_max_bytes`).
    """
    if not isinstance(relative, str) or not relative:
        raise InvalidSpecification(f"expected a relative file path, got {relative!r}", pointer)
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        raise UnsafePath(
            at(
                pointer,
                f"path {relative!r} is absolute; use a path relative to the workspace directory",
            )
        )
    base = Path(base_dir).resolve()
    lexical = Path(os.path.normpath(base / relative))
    if not _is_inside(lexical, base):
        raise UnsafePath(
            at(pointer, f"path {relative!r} escapes the workspace directory; use a path inside it")
        )
    real = lexical.resolve()
    if not _is_inside(real, base):
        raise UnsafePath(
            at(
                pointer,
                f"path {relative!r} is a symlink resolving to {real}, "
                "outside the workspace directory",
            )
        )
    if not real.exists():
        raise InvalidFile(at(pointer, f"file {relative!r} does not exist in {base}"))
    if not real.is_file():
        raise InvalidFile(at(pointer, f"{relative!r} is not a regular file"))
    limit = default_max_bytes() if max_bytes is None else max_bytes
    size = real.stat().st_size
    if size > limit:
        raise InvalidFile(
            at(
                pointer,
                f"file {relative!r} has {size} bytes, above the limit of "
                f"{limit} (raise ${_MAX_BYTES_ENV} if it is intended)",
            )
        )
    return real


def read_text(path: str | os.PathLike[str], what: str, *, max_bytes: int | None = None) -> str:
    """The UTF-8 text of a file the user named (a workspace, a manifest); one-line errors
    for a missing or unreadable file, one above the size limit and bytes that are not UTF-8.
    """
    path = Path(path)
    limit = default_max_bytes() if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
        if size > limit:
            raise InvalidFile(
                f"{path}: {what} has {size} bytes, above the limit of {limit} "
                f"(raise ${_MAX_BYTES_ENV} if it is intended)"
            )
        content = path.read_bytes()
    except InvalidFile:
        raise
    except OSError as err:
        raise InvalidFile(f"{path}: cannot read {what} ({err.strerror or err})") from None
    return decode_utf8(content, str(path))


def decode_utf8(content: bytes, source: str) -> str:
    """``content`` as text (a UTF-8 byte-order mark is dropped), or :class:`InvalidFile`
    naming the line and byte of the first byte that is not UTF-8."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = content.count(b"\n", 0, err.start) + 1
        raise InvalidFile(
            f"{source}: not UTF-8 text (byte {err.start}, line {line}: "
            f"{content[err.start:err.start + 1]!r}); save it as UTF-8"
        ) from None


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 digest of ``data``.

    >>> sha256_bytes(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB chunks (memoised per file state)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digest_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        _digest_memo[key] = digest.hexdigest()
    return _digest_memo[key]


def open_file_ref(
    base_dir: Path, ref: object, *, pointer: str, max_bytes: int | None = None
) -> Path:
    """Resolve a file reference ``{"path": ..., "sha256": ...optional}``; verify the digest.

    Raises :class:`DigestMismatch` when the file's sha256 differs from the recorded one.
    """
    relative, expected = _unpack_ref(ref, pointer)
    path = resolve_path(base_dir, relative, pointer=pointer, max_bytes=max_bytes)
    if expected is not None:
        _check_digest(sha256_file(path), expected, relative, pointer)
    return path


def read_file_ref(
    base_dir: Path, ref: object, *, pointer: str, max_bytes: int | None = None
) -> tuple[bytes, str]:
    """Read a referenced file into memory; return ``(content, sha256 of content)``.

    The digest is that of the very bytes returned, so what is verified is what is used.
    """
    relative, expected = _unpack_ref(ref, pointer)
    path = resolve_path(base_dir, relative, pointer=pointer, max_bytes=max_bytes)
    content = path.read_bytes()
    digest = sha256_bytes(content)
    if expected is not None:
        _check_digest(digest, expected, relative, pointer)
    return content, digest


def _unpack_ref(ref: object, pointer: str) -> tuple[str, str | None]:
    if not isinstance(ref, Mapping) or "path" not in ref:
        raise InvalidSpecification(
            f"expected a file reference {{'path': ...}}, got {ref!r}", pointer
        )
    expected = ref.get("sha256")
    if expected is not None and not (isinstance(expected, str) and _SHA256.match(expected)):
        raise InvalidSpecification(
            f"sha256 must be 64 hexadecimal digits, got {expected!r}", f"{pointer}/sha256"
        )
    return ref["path"], expected


def _check_digest(actual: str, expected: str, relative: str, pointer: str) -> None:
    if actual != expected.lower():
        raise DigestMismatch(
            at(
                pointer,
                f"sha256 of {relative} is {actual}, the workspace "
                f"records {expected.lower()}; the file changed "
                "since the workspace was packed",
            )
        )


def _is_inside(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; on success it replaces ``path`` in one
    rename (readers never see a partial file), on error it is removed and ``path`` untouched.

    >>> target = Path(tempfile.mkdtemp()) / "out" / "result.json"
    >>> with atomic_write(target) as tmp:
    ...     _ = tmp.write_text("{}")
    >>> target.read_text()
    '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_references(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every file reference (a dict with a ``path``) in ``spec``, with its JSON pointer."""

    def walk(node: Any, pointer: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        if isinstance(node, Mapping):
            if isinstance(node.get("path"), str):
                yield pointer, node
            for key, value in node.items():
                yield from walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{pointer}/{index}")

    for key in ("unbinned_channels", "observations"):
        yield from walk(spec.get(key, []), f"/{key}")
