"""Reading event files into an :class:`EventSet`.

Formats, chosen by suffix: ``.npz`` (one array per column), ``.npy`` (structured array
with named fields), ``.csv`` (header row of column names), ``.root`` (uproot, optional
extra ``ratiofactory[root]``) and ``.parquet`` (pyarrow, extra ``ratiofactory[parquet]``).
Pickled objects are never loaded and only the columns the channel needs are read; the
readers and their limits are in :mod:`ratiofactory.event_readers`.

>>> import tempfile
>>> base = Path(tempfile.mkdtemp())
>>> np.savez(base / "ev.npz", m4l=[250.0, 300.0], cos_theta=[0.1, -0.5], w=[1.0, 2.0])
>>> ev = load_events(base, {"path": "ev.npz", "weight": "w"}, ("cos_theta", "m4l"), pointer="/e")
>>> ev.values.tolist(), ev.weights.tolist(), len(ev)
([[0.1, 250.0], [-0.5, 300.0]], [1.0, 2.0], 2)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ratiofactory.errors import InvalidEvents
from ratiofactory.event_readers import DEFAULT_MAX_EVENTS, READERS, Context, max_events
from ratiofactory.files import at, open_file_ref

__all__ = ["DEFAULT_MAX_EVENTS", "EventSet", "load_events", "max_events"]

_DIGEST_VERSION = "ratiofactory-eventset-1"


@dataclass(frozen=True, eq=False)
class EventSet:
    """Events of one channel: ``values`` (N, D) float64 in the channel's observable order.

    ``weights`` is a float64 (N,) array or None; ``source`` names the file for messages.
    Arrays are read-only, so :attr:`digest` (computed once) stays valid: writeable input
    arrays are copied, read-only float64 C-ordered ones are used as they are.
    """

    values: np.ndarray
    weights: np.ndarray | None
    observables: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        values = _owned(self.values)
        if values.ndim != 2 or values.shape[1] != len(self.observables):
            raise ValueError(
                f"values must have shape (N, {len(self.observables)}), got {values.shape}"
            )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "observables", tuple(self.observables))
        if self.weights is not None:
            weights = _owned(self.weights)
            if weights.shape != (values.shape[0],):
                raise ValueError(
                    f"weights must have shape ({values.shape[0]},), got {weights.shape}"
                )
            object.__setattr__(self, "weights", weights)

    def __len__(self) -> int:
        return self.values.shape[0]

    @cached_property
    def digest(self) -> str:
        """sha256 over the observable names, the shape, the values and the weights."""
        header = {
            "format": _DIGEST_VERSION,
            "observables": list(self.observables),
            "shape": list(self.values.shape),
            "weighted": self.weights is not None,
        }
        digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
        digest.update(np.ascontiguousarray(self.values).data)
        if self.weights is not None:
            digest.update(np.ascontiguousarray(self.weights).data)
        return digest.hexdigest()


def _owned(array: Any) -> np.ndarray:
    """A read-only float64 C-ordered array nobody else can write to."""
    array = np.asarray(array)
    if array.flags.writeable or array.dtype != np.float64 or not array.flags.c_contiguous:
        array = np.array(array, dtype=np.float64, order="C")
        array.flags.writeable = False
    return array


def load_events(
    base_dir: Path, source_spec: dict[str, Any], observables: Sequence[str], *, pointer: str
) -> EventSet:
    """Load the columns ``observables`` (and the optional weight column) of an event file.

    ``source_spec`` is ``{"path", "sha256"?, "weight"?, "tree"?}``; the path is resolved
    safely inside ``base_dir`` and its digest checked. Observable bounds are not applied.
    """
    path = open_file_ref(base_dir, source_spec, pointer=pointer)
    shown = source_spec["path"]
    weight = source_spec.get("weight")
    wanted = [*observables, *([weight] if weight is not None else [])]
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InvalidEvents(
            at(
                pointer,
                f"{shown}: unsupported event file type "
                f"{path.suffix!r}; use one of {', '.join(READERS)}",
            )
        )
    columns = reader(path, Context(shown, pointer, wanted, source_spec.get("tree")))
    values = _stack_observables(columns, observables, shown, pointer)
    weights = None if weight is None else _check_weights(columns[weight], weight, shown, pointer)
    for array in (values, weights):  # freshly built here: lock instead of copying
        if array is not None:
            array.flags.writeable = False
    return EventSet(values, weights, tuple(observables), shown)


def _stack_observables(
    columns: dict[str, np.ndarray], observables: Sequence[str], shown: str, pointer: str
) -> np.ndarray:
    lengths = {name: columns[name].shape[0] for name in columns}
    if len(set(lengths.values())) > 1:
        raise InvalidEvents(
            at(
                pointer,
                f"{shown}: columns have different lengths "
                f"({', '.join(f'{k}: {v}' for k, v in lengths.items())})",
            )
        )
    n_events = next(iter(lengths.values()), 0)
    values = np.empty((n_events, len(observables)), dtype=np.float64)
    for j, name in enumerate(observables):
        values[:, j] = columns[name]
    finite = np.isfinite(values)
    if not finite.all():
        event, col = np.argwhere(~finite)[0]
        raise InvalidEvents(
            at(
                pointer,
                f"{shown}: event {event} has non-finite {observables[col]} = {values[event, col]}",
            )
        )
    return values


def _check_weights(weights: np.ndarray, name: str, shown: str, pointer: str) -> np.ndarray:
    bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        event = int(np.argmax(bad))
        raise InvalidEvents(
            at(
                pointer,
                f"{shown}: event {event} has weight {name} = "
                f"{weights[event]}; weights must be finite and >= 0",
            )
        )
    return weights

