"""Event file readers, one per format, each within the limits on untrusted files.

Every reader gets the resolved path and a :class:`Context` (the file as shown in messages,
the JSON pointer, the wanted columns, the ROOT tree) and returns ``{column: float64 array}``.
Before anything is allocated it checks what the file claims: the array headers of
``.npz``/``.npy`` files (events, bytes, and that the file holds those bytes), parquet
metadata and ROOT tree sizes; a CSV is read up to the limit. The limits:
:func:`max_events` (``$RATIOFACTORY_MAX_EVENTS``, 10⁹) and the file-size limit
(``$RATIOFACTORY_MAX_FILE_BYTES``). Pickled (object) arrays are never loaded.
"""

from __future__ import annotations

import csv
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ratiofactory.errors import InvalidEvents, InvalidFile
from ratiofactory.files import at, decode_utf8, default_max_bytes

__all__ = ["DEFAULT_MAX_EVENTS", "READERS", "Context", "max_events"]

MAX_EVENTS_ENV = "RATIOFACTORY_MAX_EVENTS"
MAX_FILE_BYTES_ENV = "RATIOFACTORY_MAX_FILE_BYTES"
DEFAULT_MAX_EVENTS = 1_000_000_000
"""Most events (rows) one event file may hold unless ``$RATIOFACTORY_MAX_EVENTS`` says otherwise."""
_MAX_HEADER_BYTES = 1 << 20  # a CSV header row of column names


@dataclass(frozen=True)
class Context:
    shown: str
    pointer: str
    wanted: list[str]
    tree: str | None

    def fail(self, message: str) -> InvalidEvents:
        return InvalidEvents(at(self.pointer, f"{self.shown}: {message}"))

    def require(self, present: Sequence[str]) -> None:
        missing = [name for name in self.wanted if name not in present]
        if missing:
            raise self.fail(
                f"column {missing[0]!r} is missing; the file has columns "
                f"{', '.join(map(repr, present)) or '(none)'}"
            )

    def column(self, name: str, array: Any) -> np.ndarray:
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise self.fail(
                f"column {name!r} holds Python objects; pickled/object arrays "
                "are refused, store plain numbers"
            )
        if array.ndim != 1:
            raise self.fail(
                f"column {name!r} has shape {array.shape}; each column must be "
                "1-D (one number per event)"
            )
        if array.dtype.kind not in "biuf":
            raise self.fail(f"column {name!r} has type {array.dtype}; expected numbers")
        return np.array(array, dtype=np.float64)  # a copy: never a view of a mapped file


def max_events() -> int:
    """The most events one file may hold: ``$RATIOFACTORY_MAX_EVENTS`` or 10⁹."""
    text = os.environ.get(MAX_EVENTS_ENV)
    if text is None:
        return DEFAULT_MAX_EVENTS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidEvents(f"${MAX_EVENTS_ENV}={text!r} is not a positive integer")
    return value


def _check_header(shape: tuple[int, ...], dtype: np.dtype, available: int, what: str, ctx: Context) -> None:
    """Refuse, before anything is allocated, an array header that claims more events than
    the limit, more bytes than the file-size limit, or more bytes than ``what`` holds."""
    events = shape[0] if shape else 1
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if events > max_events():
        raise ctx.fail(f"{what} claims {events} events, above the limit of {max_events()} "
                       f"(raise ${MAX_EVENTS_ENV} if it is intended)")
    if claimed > default_max_bytes():
        raise ctx.fail(f"{what} claims {claimed} bytes of data, above the limit of {default_max_bytes()} "
                       f"(raise ${MAX_FILE_BYTES_ENV} if it is intended)")
    if claimed > available:
        raise ctx.fail(f"{what} claims {events} events ({claimed} bytes) but holds only {available} bytes; "
                       "the file is truncated or corrupt")


def _read_header(stream: Any, ctx: Context, what: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(stream)
    except (ValueError, SyntaxError, EOFError, OSError) as err:
        raise ctx.fail(f"{what} is not a readable numpy array ({_first_line(err)})") from None
    if dtype.hasobject:
        raise ctx.fail(f"holds pickled/object arrays, which are refused ({what}); store plain numbers")
    return shape, dtype


def _read_npz(path: Path, ctx: Context) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as archive:
            ctx.require(archive.files)
            names = archive.zip.namelist()
            if len(set(names)) != len(names):
                twice = next(n for n in names if names.count(n) > 1)
                raise ctx.fail(f"holds the member {twice!r} twice; which one is read would be arbitrary")
            for name in ctx.wanted:
                member = archive.zip.getinfo(f"{name}.npy" if f"{name}.npy" in names else name)
                with archive.zip.open(member) as data:
                    shape, dtype = _read_header(data, ctx, f"column {name!r}")
                    _check_header(shape, dtype, member.file_size - data.tell(), f"column {name!r}", ctx)
            return {name: ctx.column(name, archive[name]) for name in ctx.wanted}
    except InvalidEvents:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err) or "object" in str(err).lower():
            raise ctx.fail(
                "holds pickled/object arrays, which are refused; store plain numeric arrays"
            ) from None
        raise ctx.fail(f"not a readable .npz archive ({_first_line(err)})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, zlib.error) as err:
        raise ctx.fail(f"not a readable .npz archive ({_first_line(err)})") from None


def _read_npy(path: Path, ctx: Context) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as stream:
            shape, dtype = _read_header(stream, ctx, "the array")
            _check_header(shape, dtype, path.stat().st_size - stream.tell(), "the array header", ctx)
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except InvalidEvents:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err) or "object" in str(err).lower():
            raise ctx.fail(
                "holds pickled/object arrays, which are refused; store a "
                "structured array of numbers"
            ) from None
        raise ctx.fail(f"not a readable .npy file ({_first_line(err)})") from None
    except (OSError, EOFError) as err:
        raise ctx.fail(f"not a readable .npy file ({_first_line(err)})") from None
    if array.dtype.names is None:
        raise ctx.fail(
            f"holds a plain {array.dtype} array of shape {array.shape}; expected "
            "a structured array with one named field per column"
        )
    if array.ndim != 1:
        raise ctx.fail(f"structured array has shape {array.shape}; expected 1-D (N,)")
    ctx.require(array.dtype.names)
    return {name: ctx.column(name, array[name]) for name in ctx.wanted}


def _read_csv(path: Path, ctx: Context) -> dict[str, np.ndarray]:
    with open(path, "rb") as stream:
        first = stream.readline(_MAX_HEADER_BYTES + 1)
    if len(first) > _MAX_HEADER_BYTES:
        raise ctx.fail(f"the header row is longer than {_MAX_HEADER_BYTES} bytes; expected column names")
    try:
        header = next(csv.reader([decode_utf8(first, ctx.shown).rstrip("\r\n")]), None)
    except (InvalidFile, csv.Error) as err:
        raise ctx.fail(f"line 1 is not a header row of column names ({_first_line(err)})") from None
    if not header:
        raise ctx.fail("is empty; expected a header row of column names")
    names = [name.strip() for name in header]
    if len(set(names)) != len(names):
        raise ctx.fail(f"header repeats a column name: {', '.join(names)}")
    ctx.require(names)
    limit = max_events()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "loadtxt: input contained no data")
            table = np.loadtxt(
                path,
                delimiter=",",
                skiprows=1,
                dtype=np.float64,
                ndmin=2,
                usecols=[names.index(n) for n in ctx.wanted],
                encoding="utf-8-sig",
                max_rows=limit + 1,
            )
    except UnicodeDecodeError:
        raise ctx.fail(f"line {_first_non_utf8_line(path)} is not UTF-8 text; save the file as UTF-8") from None
    except ValueError as err:
        raise ctx.fail(
            f"cannot read the numbers ({_first_line(err)}); rows must have as "
            "many numeric fields as the header"
        ) from None
    if table.shape[0] > limit:
        raise ctx.fail(f"holds more than {limit} events (rows), the limit (raise ${MAX_EVENTS_ENV} if it is intended)")
    return {name: np.ascontiguousarray(table[:, j]) for j, name in enumerate(ctx.wanted)}


def _first_non_utf8_line(path: Path) -> int:
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _read_root(path: Path, ctx: Context) -> dict[str, np.ndarray]:
    uproot = _optional("uproot", "reading .root event files", "root", ctx)
    try:
        with uproot.open(path) as root_file:
            trees = sorted(
                {
                    key.split(";")[0]
                    for key, cls in root_file.classnames().items()
                    if cls in ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")
                }
            )
            name = ctx.tree if ctx.tree is not None else _only_tree(trees, ctx)
            if name not in trees:
                raise ctx.fail(f"has no tree {name!r}; its trees are {trees}")
            tree = root_file[name]
            ctx.require(list(tree.keys()))
            if tree.num_entries > max_events():
                raise ctx.fail(f"tree {name!r} claims {tree.num_entries} events, above the limit of "
                               f"{max_events()} (raise ${MAX_EVENTS_ENV} if it is intended)")
            arrays = tree.arrays(ctx.wanted, library="np")
    except InvalidEvents:
        raise
    except Exception as err:  # noqa: BLE001 (third-party errors, one line)
        raise ctx.fail(f"not a readable ROOT file ({_first_line(err)})") from None
    return {name: ctx.column(name, arrays[name]) for name in ctx.wanted}


def _only_tree(trees: list[str], ctx: Context) -> str:
    if len(trees) != 1:
        raise ctx.fail(f"holds trees {trees}; name one with the 'tree' key")
    return trees[0]


def _read_parquet(path: Path, ctx: Context) -> dict[str, np.ndarray]:
    _optional("pyarrow", "reading .parquet event files", "parquet", ctx)
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
        ctx.require(list(metadata.schema.names))
        if metadata.num_rows > max_events():
            raise ctx.fail(f"claims {metadata.num_rows} events (rows), above the limit of "
                           f"{max_events()} (raise ${MAX_EVENTS_ENV} if it is intended)")
        table = pq.read_table(path, columns=ctx.wanted)
    except InvalidEvents:
        raise
    except Exception as err:  # noqa: BLE001 (third-party errors, one line)
        raise ctx.fail(f"not a readable parquet file ({_first_line(err)})") from None
    columns = {}
    for name in ctx.wanted:
        column = table.column(name)
        if column.null_count:
            raise ctx.fail(f"column {name!r} has {column.null_count} missing (null) values")
        try:
            array = column.to_numpy()
        except Exception:  # noqa: BLE001 (nested or exotic arrow types)
            raise ctx.fail(
                f"column {name!r} of type {column.type} is not one number per event"
            ) from None
        columns[name] = ctx.column(name, array)
    return columns


READERS: dict[str, Callable[[Path, Context], dict[str, np.ndarray]]] = {
    ".npz": _read_npz,
    ".npy": _read_npy,
    ".csv": _read_csv,
    ".root": _read_root,
    ".parquet": _read_parquet,
}


def _optional(module: str, purpose: str, extra: str, ctx: Context) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ctx.fail(
            f"{purpose} needs {module}: install ratiofactory[{extra}] "
            f"(pip install 'ratiofactory[{extra}]')"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
