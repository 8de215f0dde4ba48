"""The ratio cache: per-event ratios of a model on an event set, by content digest.

The key is the sha256 of the model file's digest, the event set's digest, the output kind,
the cache format and the onnxruntime version, so it does not depend on batching or file
names. Entries live in memory for the process and as ``.npy`` files on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ratiofactory.files import atomic_write

__all__ = ["CACHE_FORMAT_VERSION", "RatioCache"]

CACHE_FORMAT_VERSION = 1


class RatioCache:
    """Ratios by content digest: in memory for this process, and as ``.npy`` files on disk.

    ``directory`` defaults to ``$RATIOFACTORY_CACHE_DIR`` or ``~/.cache/ratiofactory``;
    ``on_disk=False`` keeps the cache in memory only. A corrupt file is ignored (and
    rewritten after recomputation).
    """

    def __init__(self, directory: Path | None = None, *, on_disk: bool = True) -> None:
        if directory is None:
            env = os.environ.get("RATIOFACTORY_CACHE_DIR")
            directory = Path(env) if env else Path.home() / ".cache" / "ratiofactory"
        self.directory = Path(directory)
        self.on_disk = on_disk
        self._memory: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        where = str(self.directory) if self.on_disk else "memory only"
        return f"RatioCache({where}, {len(self._memory)} in memory)"

    @staticmethod
    def key(model_digest: str, events_digest: str, output: str, provider: str = "CPUExecutionProvider") -> str:
        """Cache key of one model's ratios on one event set (independent of batching;
        a device provider such as CUDA, whose kernels round differently, has its own)."""
        fields = {
            "format": CACHE_FORMAT_VERSION,
            "model": model_digest,
            "output": output,
            "events": events_digest,
            "onnxruntime": ort.__version__,
        }
        if provider != "CPUExecutionProvider":
            fields["provider"] = provider
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        """The file holding the entry ``key``."""
        return self.directory / "ratios" / f"{key}.npy"

    def get(self, key: str, n_events: int) -> np.ndarray | None:
        """The cached ratios for ``key``, or None when absent or unusable."""
        if key in self._memory:
            return self._memory[key]
        if not self.on_disk:
            return None
        try:
            values = np.load(self.path(key), allow_pickle=False)
        except Exception:  # noqa: BLE001 (unreadable entry: recompute)
            return None
        if not (
            values.dtype == np.float64
            and values.shape == (n_events,)
            and np.all(values > 0)
            and np.all(np.isfinite(values))
        ):
            return None
        values.flags.writeable = False
        self._memory[key] = values
        return values

    def put(self, key: str, values: np.ndarray) -> None:
        """Store ratios; the disk file is written atomically (temporary file + rename)."""
        self._memory[key] = values
        if not self.on_disk:
            return
        try:
            with atomic_write(self.path(key)) as tmp, open(tmp, "wb") as stream:
                np.save(stream, values, allow_pickle=False)
        except OSError as err:
            warnings.warn(
                f"ratio cache {self.directory} is not writable ({err}); continuing without storing",
                RuntimeWarning,
                stacklevel=3,
            )

    def clear_memory(self) -> None:
        """Forget the in-memory entries (files on disk stay)."""
        self._memory.clear()
