"""Progress of long computations (toys, Neyman constructions, scans, upper limits) on stderr.

Three modes, set with :func:`reporting` (the CLI chooses ``"lines"``, ``"off"`` with
``--quiet``; the library default is ``"auto"``):

``"auto"``   a transient rich bar when stderr is a terminal, nothing otherwise;
``"lines"``  the bar on a terminal; otherwise (CI logs, pipes, batch jobs) one plain line
             every :data:`INTERVAL` seconds with done/total and the rate, and a last line
             when the work is done;
``"off"``    nothing.

Progress never goes to stdout, so ``-o -`` output stays clean.

>>> import io
>>> stream = io.StringIO()
>>> with reporting("lines", stream=stream, interval=0.0):
...     total = sum(progress(range(3), 3, "toys"))
>>> stream.getvalue().splitlines()[-1].split(",")[0]
'toys: 3/3 done'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["INTERVAL", "Progress", "progress", "reporting"]

#: seconds between two progress lines off a terminal
INTERVAL = 5.0

_STATE: dict[str, Any] = {"mode": "auto", "stream": None, "interval": INTERVAL}


@contextmanager
def reporting(mode: str, *, stream: TextIO | None = None, interval: float | None = None) -> Iterator[None]:
    """Set the progress mode (``"auto"``, ``"lines"`` or ``"off"``) inside the block;
    ``stream`` (default: ``sys.stderr`` at the time of writing) and ``interval`` for the lines."""
    if mode not in ("auto", "lines", "off"):
        raise ValueError(f"progress mode must be 'auto', 'lines' or 'off', got {mode!r}")
    before = dict(_STATE)
    _STATE.update(mode=mode, stream=stream, interval=INTERVAL if interval is None else float(interval))
    try:
        yield
    finally:
        _STATE.clear()
        _STATE.update(before)


def _stream() -> TextIO:
    return _STATE["stream"] if _STATE["stream"] is not None else sys.stderr


class Progress:
    """Progress of one task: ``advance()`` or ``update(done)``, then ``close()`` (or use it
    as a context manager). ``total`` may be None when the amount of work is not known."""

    def __init__(self, description: str, total: int | None = None, unit: str = "") -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self._start = self._last = time.monotonic()
        self._lines = False
        self._bar: Any = None
        mode, stream = _STATE["mode"], _stream()
        terminal = bool(getattr(stream, "isatty", lambda: False)())
        if mode != "off" and terminal:
            self._start_bar(stream)
        elif mode == "lines":
            self._lines = True

    def _start_bar(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(file=stream), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=self.total)

    def advance(self, n: int = 1) -> None:
        """``n`` more items done."""
        self.update(self.done + n)

    def update(self, done: int) -> None:
        """``done`` items done so far."""
        self.done = int(done)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self._lines:
            now = time.monotonic()
            if now - self._last >= _STATE["interval"]:
                self._write("", now)

    def _write(self, suffix: str, now: float) -> None:
        self._last = now
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        unit = f" {self.unit}" if self.unit else ""
        print(f"{self.description}: {count}{unit}{suffix}, {rate:.3g}/s, {elapsed:.1f} s", file=_stream(), flush=True)

    def close(self) -> None:
        """Stop the bar, or write the last line."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._lines:
            self._write(" done", time.monotonic())
            self._lines = False

    def __enter__(self) -> Progress:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(items: Iterable[Any], total: int | None, description: str, unit: str = "") -> Iterator[Any]:
    """Iterate over ``items`` reporting progress (one item = one unit of work)."""
    with Progress(description, total, unit) as bar:
        for item in items:
            yield item
            bar.advance()
