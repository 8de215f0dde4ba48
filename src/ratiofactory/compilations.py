"""Counting jax's XLA compilations (``--verbose`` of the CLI, tests, benchmarks).

A compilation is one call of XLA's backend compiler, as jax reports it through
``jax.monitoring`` (the ``/jax/core/compile/backend_compile_duration`` event); programs
loaded from jax's persistent compilation cache are not compilations. Every jitted
function of :mod:`ratiofactory.infer` is compiled once per model and data length, and
the Hessian is taken through the compiled gradient, so a fit, a profile scan and impacts
of one model compile −2 ln L twice: value and gradient, and values vectorised over
parameter points (the global-minimum search; see tests/test_compilations.py).

>>> import jax, jax.numpy as jnp, numpy as np
>>> f = jax.jit(lambda x: jnp.sin(x) * 3.0)
>>> with CompilationCounter() as counter:
...     _ = f(np.arange(3.0)), f(np.ones(3)), f(np.arange(4.0))  # a new shape compiles again
>>> counter.count, dict(counter.names)
(2, {'jit(<lambda>)': 2})
"""

from __future__ import annotations

import threading
from collections import Counter
from types import TracebackType

__all__ = ["BACKEND_COMPILE_EVENT", "CompilationCounter", "total", "watch", "watching"]

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_lock = threading.Lock()
_names: Counter[str] = Counter()
_totals = [0, 0.0]  # compilations, seconds spent compiling
_watching = [False]


def _listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
    if event != BACKEND_COMPILE_EVENT:
        return
    with _lock:
        _totals[0] += 1
        _totals[1] += float(duration_secs)
        _names[str(kwargs.get("fun_name", "?"))] += 1


def watch() -> None:
    """Start counting (idempotent; imports jax)."""
    with _lock:
        if _watching[0]:
            return
        _watching[0] = True
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(_listener)


def watching() -> bool:
    """Whether :func:`watch` has been called."""
    return _watching[0]


def total() -> tuple[int, float]:
    """(compilations, seconds compiling) since :func:`watch` was first called; (0, 0.0) if never."""
    with _lock:
        return int(_totals[0]), float(_totals[1])


class CompilationCounter:
    """Context manager counting the XLA compilations inside it (all threads).

    ``count``, ``seconds`` and ``names`` (a Counter of the compiled functions' names).
    """

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.names: Counter[str] = Counter()
        self._start: tuple[int, float, Counter[str]] | None = None

    def __enter__(self) -> CompilationCounter:  # noqa: PYI034 (typing.Self needs Python 3.11)
        watch()
        with _lock:
            self._start = (int(_totals[0]), float(_totals[1]), Counter(_names))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._start is not None
        with _lock:
            self.count = int(_totals[0]) - self._start[0]
            self.seconds = float(_totals[1]) - self._start[1]
            self.names = Counter(_names)
        self.names.subtract(self._start[2])
        self.names = +self.names  # drop zero counts

    def __repr__(self) -> str:
        return f"CompilationCounter(count={self.count}, seconds={self.seconds:.3g})"
