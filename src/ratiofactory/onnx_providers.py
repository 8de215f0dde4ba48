"""Which onnxruntime execution providers evaluate the ratio models.

The setting is ``$RATIOFACTORY_ONNX_PROVIDERS`` (or the ``providers=`` argument of
:func:`ratiofactory.onnx_eval.evaluate_ratio`):

- ``auto`` (the default): CUDA when onnxruntime offers ``CUDAExecutionProvider``
  (the ``onnxruntime-gpu`` package) *and* an NVIDIA GPU is visible; the CPU otherwise;
- ``cpu``: the CPU only;
- ``cuda``: CUDA, an error when it is not available;
- a comma-separated list of onnxruntime provider names, in order of preference
  (``TensorrtExecutionProvider,CUDAExecutionProvider``), each of which must be available.

The CPU provider always comes last, as onnxruntime's fallback for operators a device
provider does not implement. Nothing requires a GPU: ``auto`` on a machine without one
is ``["CPUExecutionProvider"]``.

>>> execution_providers("auto", available=["CPUExecutionProvider"], gpu_present=True)
['CPUExecutionProvider']
>>> execution_providers("auto", available=["CUDAExecutionProvider", "CPUExecutionProvider"], gpu_present=True)
['CUDAExecutionProvider', 'CPUExecutionProvider']
>>> execution_providers("auto", available=["CUDAExecutionProvider", "CPUExecutionProvider"], gpu_present=False)
['CPUExecutionProvider']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import RatiofactoryError

__all__ = ["CPU", "CUDA", "PROVIDERS_ENV", "ProviderUnavailable", "execution_providers", "gpu_present"]

PROVIDERS_ENV = "RATIOFACTORY_ONNX_PROVIDERS"
"""Environment variable with the provider setting (``auto``, ``cpu``, ``cuda`` or a list)."""

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_SHORT = {"cpu": [CPU], "cuda": [CUDA]}


class ProviderUnavailable(RatiofactoryError, RuntimeError):
    """An execution provider was requested that this onnxruntime or machine lacks."""


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is visible to this process (a device node exists and
    ``CUDA_VISIBLE_DEVICES`` does not hide every device)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def execution_providers(
    setting: str | Sequence[str] | None = None,
    *,
    available: Sequence[str] | None = None,
    gpu_present: bool | None = None,
) -> list[str]:
    """The providers to create sessions with, in order of preference, CPU last.

    ``setting`` defaults to ``$RATIOFACTORY_ONNX_PROVIDERS``, else ``auto``;
    ``available`` to ``onnxruntime.get_available_providers()`` and ``gpu_present`` to
    :func:`gpu_present` (arguments for testing the choice on any machine).
    Raises :class:`ProviderUnavailable` for an explicit request that cannot be met.
    """
    if setting is None:
        setting = os.environ.get(PROVIDERS_ENV, "").strip() or "auto"
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if isinstance(setting, str):
        word = setting.strip()
        if word.lower() == "auto":
            gpu = _gpu_present() if gpu_present is None else gpu_present
            return [CUDA, CPU] if gpu and CUDA in available else [CPU]
        requested = _SHORT.get(word.lower()) or [p.strip() for p in word.split(",") if p.strip()]
    else:
        requested = [str(p) for p in setting]
    if not requested:
        raise ProviderUnavailable(f"{PROVIDERS_ENV}: empty provider setting; use auto, cpu, cuda or provider names")
    missing = [p for p in requested if p not in available]
    if missing:
        hint = " (install onnxruntime-gpu for CUDA)" if CUDA in missing else ""
        raise ProviderUnavailable(
            f"onnxruntime execution provider {missing[0]!r} is not available{hint}; "
            f"available: {', '.join(available)}; set {PROVIDERS_ENV}=auto or cpu"
        )
    if CUDA in requested and not (_gpu_present() if gpu_present is None else gpu_present):
        raise ProviderUnavailable(
            f"{CUDA} was requested but no NVIDIA GPU is visible; set {PROVIDERS_ENV}=auto or cpu"
        )
    return [p for p in requested if p != CPU] + [CPU]


_gpu_present = gpu_present
