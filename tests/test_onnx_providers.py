"""The choice of onnxruntime execution providers, tested without a GPU."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime
import pytest

from ratiofactory.events import EventSet
from ratiofactory.onnx_eval import evaluate_ratio
from ratiofactory.onnx_providers import (
    CPU,
    CUDA,
    PROVIDERS_ENV,
    ProviderUnavailable,
    execution_providers,
    gpu_present,
)
from ratiofactory.ratio_cache import CACHE_FORMAT_VERSION, RatioCache
from ratiofactory.testing import constant_model

WITH_CUDA = [CUDA, CPU]
CPU_ONLY = [CPU]
TRT = "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    ("setting", "available", "gpu", "expected"),
    [
        ("auto", WITH_CUDA, True, [CUDA, CPU]),
        ("auto", WITH_CUDA, False, [CPU]),  # onnxruntime-gpu installed, no GPU
        ("auto", CPU_ONLY, True, [CPU]),  # a GPU, plain onnxruntime
        ("auto", CPU_ONLY, False, [CPU]),
        ("AUTO", WITH_CUDA, True, [CUDA, CPU]),
        ("cpu", WITH_CUDA, True, [CPU]),
        ("cuda", WITH_CUDA, True, [CUDA, CPU]),
        ("CUDAExecutionProvider", WITH_CUDA, True, [CUDA, CPU]),
        (f"{TRT}, {CUDA}", [TRT, CUDA, CPU], True, [TRT, CUDA, CPU]),
        (f"{CPU},{CUDA}", WITH_CUDA, True, [CUDA, CPU]),  # CPU is always the last fallback
        ([CUDA], WITH_CUDA, True, [CUDA, CPU]),
    ],
)
def test_provider_choice(setting, available, gpu, expected):
    assert execution_providers(setting, available=available, gpu_present=gpu) == expected


@pytest.mark.parametrize(
    ("setting", "available", "gpu", "words"),
    [
        ("cuda", CPU_ONLY, True, "install onnxruntime-gpu"),
        ("cuda", WITH_CUDA, False, "no NVIDIA GPU is visible"),
        ("ROCMExecutionProvider", WITH_CUDA, True, "'ROCMExecutionProvider' is not available"),
        (" , ", CPU_ONLY, False, "empty provider setting"),
    ],
)
def test_impossible_requests_are_clear_errors(setting, available, gpu, words):
    with pytest.raises(ProviderUnavailable, match=words) as info:
        execution_providers(setting, available=available, gpu_present=gpu)
    assert PROVIDERS_ENV in str(info.value)


def test_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv(PROVIDERS_ENV, "cpu")
    assert execution_providers(available=WITH_CUDA, gpu_present=True) == [CPU]
    monkeypatch.setenv(PROVIDERS_ENV, "")
    assert execution_providers(available=WITH_CUDA, gpu_present=True) == [CUDA, CPU]  # auto
    monkeypatch.delenv(PROVIDERS_ENV)
    assert execution_providers(available=WITH_CUDA, gpu_present=False) == [CPU]


def test_hidden_devices_mean_no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert gpu_present() is False
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_present() is False


def test_default_on_this_machine_runs_without_a_gpu():
    chosen = execution_providers()
    assert chosen[-1] == CPU
    if CUDA not in onnxruntime.get_available_providers() or not gpu_present():
        assert chosen == [CPU]


def test_evaluate_ratio_with_explicit_providers(tmp_path):
    (tmp_path / "m.onnx").write_bytes(constant_model(2.5, 1))
    events = EventSet(np.linspace(0, 1, 7)[:, None], None, ("x",), "x.npz")
    spec = {"onnx": {"path": "m.onnx"}, "output": "ratio"}
    values = evaluate_ratio(spec, events, tmp_path, pointer="/r", cache=None, providers="cpu")
    np.testing.assert_array_equal(values.mean, np.full(7, 2.5))
    if CUDA not in onnxruntime.get_available_providers():
        with pytest.raises(ProviderUnavailable, match="onnxruntime-gpu"):
            evaluate_ratio(spec, events, tmp_path, pointer="/r", cache=None, providers="cuda")


def test_cache_keys_of_cpu_results_are_unchanged_and_devices_have_their_own():
    fields = {"format": CACHE_FORMAT_VERSION, "model": "m", "output": "ratio", "events": "e",
              "onnxruntime": onnxruntime.__version__}
    before = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    assert RatioCache.key("m", "e", "ratio") == before == RatioCache.key("m", "e", "ratio", provider=CPU)
    assert RatioCache.key("m", "e", "ratio", provider=CUDA) != before
