"""Statistical inference on ratiofactory (and pyhf) models.

Fits, profile-likelihood scans and intervals, asymptotic hypothesis tests (CLs, upper
limits, discovery significance), Asimov datasets, pulls and impacts. Everything works on
any model with pyhf's interface (``logpdf``, ``expected_data``, ``config``): unbinned,
binned and mixed ratiofactory models, and plain pyhf models. The objective is always
``−2 ln L``; on the jax backend gradients and Hessians are exact.
"""

from __future__ import annotations

from .asimov import AsimovYieldWarning, YieldCheck, asimov_data, asimov_yield_checks
from .errors import FitFailed, InvalidFitSetup
from .fitting import DEFAULT_STARTS, DEFAULT_TOLERANCE, FitOptions, fit
from .hypotest_results import BANDS, HypoTestResult, SignificanceResult, UpperLimitResult
from .hypotests import TEST_STATISTICS, asymptotic_pvalues, compute_teststat, hypotest
from .limits import LimitOutsideRangeWarning, NonMonotoneCLsWarning, significance, upper_limit
from .nuisance import impacts, prefit_constraints
from .results import (
    FitResult,
    ImpactRow,
    ImpactsResult,
    IntervalResult,
    LocalMinimum,
    ScanResult,
    ScanResult2D,
)
from .scan import CL_1SIGMA, CL_2SIGMA, interval, profile_scan, profile_scan_2d

__all__ = [
    "BANDS",
    "CL_1SIGMA",
    "CL_2SIGMA",
    "DEFAULT_STARTS",
    "DEFAULT_TOLERANCE",
    "TEST_STATISTICS",
    "AsimovYieldWarning",
    "FitFailed",
    "FitOptions",
    "FitResult",
    "HypoTestResult",
    "ImpactRow",
    "ImpactsResult",
    "IntervalResult",
    "InvalidFitSetup",
    "LimitOutsideRangeWarning",
    "LocalMinimum",
    "NonMonotoneCLsWarning",
    "ScanResult",
    "ScanResult2D",
    "SignificanceResult",
    "UpperLimitResult",
    "YieldCheck",
    "asimov_data",
    "asimov_yield_checks",
    "asymptotic_pvalues",
    "compute_teststat",
    "fit",
    "hypotest",
    "impacts",
    "interval",
    "prefit_constraints",
    "profile_scan",
    "profile_scan_2d",
    "significance",
    "upper_limit",
]
