"""The ratio cache: per-event ratios of a model on an event set, by content digest.

The key is the sha256 of the model file's digest, the event set's digest, the output kind,
the cache format and the onnxruntime version, so it does not depend on batching or file
names. Entries live in memory for the process and as ``.npz`` files on disk, each holding
the ratios and the sha256 of the key and the ratios' bytes: an entry whose content does not
match (a file copied over another, a damaged or edited file) is refused with a
:class:`RatioCacheWarning` and recomputed. The digest guards against accidents and against
entries moved between keys; a directory others can write to deliberately should not be
trusted (use ``on_disk=False``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ratiofactory.files import atomic_write

__all__ = ["CACHE_FORMAT_VERSION", "RatioCache", "RatioCacheWarning"]

CACHE_FORMAT_VERSION = 2
_OVERHEAD_BYTES = 1 << 16  # zip and npy headers of an entry


class RatioCacheWarning(UserWarning):
    """A cache entry on disk was refused (unreadable, or not the ratios of its key)."""


def content_digest(key: str, values: np.ndarray) -> str:
    """sha256 of the entry key and the ratios' float64 bytes (binds the content to its key)."""
    digest = hashlib.sha256(key.encode())
    digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return digest.hexdigest()


class RatioCache:
    """Ratios by content digest: in memory for this process, and as ``.npy`` files on disk.

    ``directory`` defaults to ``$RATIOFACTORY_CACHE_DIR`` or ``~/.cache/ratiofactory``;
    ``on_disk=False`` keeps the cache in memory only. An entry that fails its content
    digest or the checks below is refused with a :class:`RatioCacheWarning` (and
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
        return self.directory / "ratios" / f"{key}.npz"

    def get(self, key: str, n_events: int) -> np.ndarray | None:
        """The cached ratios for ``key``, or None when absent or unusable."""
        if key in self._memory:
            return self._memory[key]
        if not self.on_disk:
            return None
        path = self.path(key)
        if not path.exists():
            return None
        values = self._read(path, key, n_events)
        if values is None:
            return None
        values.flags.writeable = False
        self._memory[key] = values
        return values

    @staticmethod
    def _read(path: Path, key: str, n_events: int) -> np.ndarray | None:
        if path.is_symlink() or not path.is_file():
            _refuse(path, "not a regular file")
            return None
        if path.stat().st_size > 8 * n_events + _OVERHEAD_BYTES:
            _refuse(path, f"{path.stat().st_size} bytes is too large for {n_events} ratios")
            return None
        try:
            with zipfile.ZipFile(path) as archive:  # the sizes a compressed member would expand to
                if sum(info.file_size for info in archive.infolist()) > 8 * n_events + _OVERHEAD_BYTES:
                    _refuse(path, f"expands beyond the size of {n_events} ratios")
                    return None
            with np.load(path, allow_pickle=False) as entry:
                values, recorded = entry["ratios"], str(entry["sha256"])
        except Exception as err:  # noqa: BLE001 (unreadable entry: recompute)
            _refuse(path, f"unreadable ({type(err).__name__})")
            return None
        if not (values.dtype == np.float64 and values.shape == (n_events,)):
            _refuse(path, f"holds {values.dtype} {values.shape}, not {n_events} ratios")
            return None
        if content_digest(key, values) != recorded:
            _refuse(path, "its content does not match its sha256 (replaced or edited)")
            return None
        if not (np.all(values > 0) and np.all(np.isfinite(values))):
            _refuse(path, "holds ratios outside (0, inf)")
            return None
        return values

    def put(self, key: str, values: np.ndarray) -> None:
        """Store ratios; the disk file is written atomically (temporary file + rename)."""
        self._memory[key] = values
        if not self.on_disk:
            return
        try:
            with atomic_write(self.path(key)) as tmp, open(tmp, "wb") as stream:
                np.savez(stream, ratios=values, sha256=np.array(content_digest(key, values)))
        except OSError as err:
            warnings.warn(
                f"ratio cache {self.directory} is not writable ({err}); continuing without storing",
                RuntimeWarning,
                stacklevel=3,
            )

    def clear_memory(self) -> None:
        """Forget the in-memory entries (files on disk stay)."""
        self._memory.clear()


def _refuse(path: Path, why: str) -> None:
    warnings.warn(f"ratio cache entry {path} refused: {why}; recomputing it", RatioCacheWarning, stacklevel=5)
