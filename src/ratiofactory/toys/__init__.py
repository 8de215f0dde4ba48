"""Toys: seeded pseudo-experiments, vectorised toy fits, toy-based hypothesis tests, the
Neyman construction, and executors (local, Dask). See docs/toys.md."""

from __future__ import annotations

from .executors import DaskExecutor, Executor, LocalExecutor, batches, progress_bars
from .generate import SparseToys, ToyGenerationError, expected_main_data, generate_toys, toy_rng
from .neyman import (
    CONFIDENCE_LEVELS,
    CoverageResult,
    NeymanPoint,
    NeymanResult,
    confidence_set,
    critical_point,
    neyman_construction,
    neyman_coverage,
)
from .toybased import (
    ToyHypoTestResult,
    conditional_mle,
    sample_teststats,
    toy_teststats,
    toybased_hypotest,
)
from .vfit import BatchFit, fit_toys, generate_and_fit

__all__ = [
    "CONFIDENCE_LEVELS",
    "BatchFit",
    "CoverageResult",
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "NeymanPoint",
    "NeymanResult",
    "SparseToys",
    "ToyGenerationError",
    "ToyHypoTestResult",
    "batches",
    "conditional_mle",
    "confidence_set",
    "critical_point",
    "expected_main_data",
    "fit_toys",
    "generate_and_fit",
    "generate_toys",
    "neyman_construction",
    "neyman_coverage",
    "progress_bars",
    "sample_teststats",
    "toy_rng",
    "toy_teststats",
    "toybased_hypotest",
]
