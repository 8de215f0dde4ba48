"""Where batches of toys run: in this process (default) or on a Dask cluster.

Toys are split into batches ``(start, n)``; toy ``i`` is always generated from the seed
and its index alone (:func:`ratiofactory.toys.generate.toy_rng`), so the results do not
depend on the executor, the number of workers or the batch size.

>>> LocalExecutor().map(lambda span: span[1], [(0, 3), (3, 2)])
[3, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "batches", "progress", "progress_bars", "run_batches"]

_SHOW_PROGRESS = [True]


class Executor(Protocol):
    """Runs ``fn`` on each item and returns the results in order."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], desc: str = "") -> list[Any]: ...


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Switch the toy progress bars on or off inside the block (the CLI's ``--quiet``);
    see :mod:`ratiofactory.progress` for progress lines off a terminal.

    >>> from ratiofactory.toys import executors
    >>> with progress_bars(False):
    ...     executors._SHOW_PROGRESS[0]
    False
    """
    before, _SHOW_PROGRESS[0] = _SHOW_PROGRESS[0], bool(enabled)
    try:
        yield
    finally:
        _SHOW_PROGRESS[0] = before


def progress(items: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    """Report progress over ``items`` (:func:`ratiofactory.progress.progress`: a bar on a
    terminal, lines off it where the CLI asks for them); the plain iterable when switched off."""
    if not _SHOW_PROGRESS[0]:
        return items
    from ..progress import progress as report

    return report(items, total, desc, unit="batches" if "toys" in desc else "")


def batches(n_toys: int, batch_size: int, start: int = 0) -> list[tuple[int, int]]:
    """``(first toy index, number of toys)`` of each batch.

    >>> batches(5, 2)
    [(0, 2), (2, 2), (4, 1)]
    """
    size = max(1, int(batch_size))
    return [(first, min(size, start + n_toys - first)) for first in range(start, start + n_toys, size)]


class LocalExecutor:
    """Runs the batches one after the other in this process."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], desc: str = "") -> list[Any]:
        return [fn(item) for item in progress(items, len(items), desc)]


class DaskExecutor:
    """Sends batches to a Dask cluster: an existing ``client``, a scheduler ``address``
    (e.g. of a dask-jobqueue HTCondor/SLURM cluster), or a new ``LocalCluster``
    (``n_workers``, ``processes``). Close it (or use it as a context manager) when done.

    pyhf's backend is one per process, so tasks on threads of one process run one at a time
    (:data:`ratiofactory.model.BACKEND_LOCK`): parallel work needs worker processes."""

    def __init__(self, client: Any = None, *, address: str | None = None, n_workers: int | None = None,
                 threads_per_worker: int = 1, processes: bool = True) -> None:
        from dask.distributed import Client, LocalCluster

        self._owned: list[Any] = []
        if client is None and address is not None:
            client = Client(address)
            self._owned.append(client)
        elif client is None:
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                   processes=processes, dashboard_address=None)
            client = Client(cluster)
            self._owned += [client, cluster]
        self.client = client

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], desc: str = "") -> list[Any]:
        from dask.distributed import as_completed

        futures = self.client.map(fn, list(items), pure=False)
        for _ in progress(as_completed(futures), len(futures), desc):
            pass
        return self.client.gather(futures)

    def close(self) -> None:
        """Close the client and the cluster this executor started."""
        for thing in self._owned:
            thing.close()
        self._owned = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_batches(task: Callable[[tuple[int, int]], np.ndarray], n_toys: int, batch_size: int,
                executor: Executor | None = None, *, start: int = 0, desc: str = "toys") -> np.ndarray:
    """Concatenated results of ``task`` over the batches of toys ``start … start + n_toys − 1``."""
    executor = executor or LocalExecutor()
    parts = executor.map(task, batches(n_toys, batch_size, start), desc=desc)
    return np.concatenate(parts) if parts else np.zeros(0)
