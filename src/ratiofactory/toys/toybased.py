"""Toy-based hypothesis tests: CLs and the discovery p-value from sampled test statistics.

The toys of a hypothesis μ are generated at the conditional MLE ``(μ, θ̂̂(μ))`` fitted to
the observed data (the background-only toys at ``(0, θ̂̂(0))``); each toy is fitted twice
(free and at the tested μ, vectorised on jax, see :mod:`ratiofactory.toys.vfit`) and the
statistic is the same as the asymptotic one (:mod:`ratiofactory.infer.hypotests`).
p-values follow pyhf's ToyCalculator: ``p = #(t_toy ≥ t_obs) / n``, ``CLs = CLs+b / CLb``,
the expected band from the percentiles of CLs over the background-only toys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf
from scipy.stats import beta, norm

from ..infer.fitting import FitOptions, minimize
from ..infer.hypotests import _check_kind, prepare_setup, require_background_only
from ..infer.objective import FitSetup, Objective
from ..model import backend_task
from .executors import Executor, run_batches
from .generate import SparseToys, expected_main_data
from .vfit import BatchFit, fit_toys, generate_and_fit

__all__ = ["ToyHypoTestResult", "conditional_mle", "toy_teststats", "toybased_hypotest"]

TASK_BATCHES = 4  # batches of toys per executor task (more: less overhead, coarser progress)
#: confidence level of the one-sided upper bound on a p-value where no toy passes (±1σ's)
UPPER_BOUND_CL = float(norm.cdf(1.0) - norm.cdf(-1.0))
_BAND_PERCENTILES = 100 * norm.cdf([-2.0, -1.0, 0.0, 1.0, 2.0])


def statistic_from_fits(test_stat: str, poi_value: float, free_nll, free_poi, cond_nll) -> np.ndarray:
    """The test statistic from free and conditional ``−2 ln L`` (vectorised; NaN where a fit failed)."""
    t = np.maximum(np.asarray(cond_nll) - np.asarray(free_nll), 0.0)
    free_poi = np.asarray(free_poi)
    if test_stat in ("q", "qtilde"):
        t = np.where(free_poi > poi_value, 0.0, t)
    if test_stat == "q0":
        t = np.where(free_poi < 0, 0.0, t)
    return np.where(np.isfinite(cond_nll) & np.isfinite(free_nll), t, np.nan)


def toy_teststats(model: Any, toys: np.ndarray | SparseToys, poi_value: float, setup: FitSetup, test_stat: str,
                  *, batch_size: int = 64, free: BatchFit | None = None) -> np.ndarray:
    """The test statistic at ``poi_value`` on each toy (NaN where a fit failed); ``free``:
    the toys' free fits if already done.

    >>> import numpy as np, pyhf
    >>> from ratiofactory.infer.objective import make_setup
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> from ratiofactory.toys import generate_toys
    >>> q = toy_teststats(model, generate_toys(model, [1.0, 1.0], 20, seed=1), 1.0, make_setup(model), "qtilde")
    >>> q.shape, bool(np.all(q >= 0))
    ((20,), True)
    """
    free = free if free is not None else fit_toys(model, toys, setup, batch_size=batch_size)
    conditional = fit_toys(model, toys, setup.with_poi_fixed(poi_value), init=free.values, batch_size=batch_size)
    return statistic_from_fits(test_stat, poi_value, free.twice_nll, free.values[:, setup.poi_index],
                               conditional.twice_nll)


def conditional_mle(model: Any, data: Any, setup: FitSetup, poi_value: float,
                    options: FitOptions | None = None) -> np.ndarray:
    """θ̂̂(μ): the parameters maximising the likelihood of ``data`` with the POI at ``poi_value``.

    >>> import numpy as np, pyhf
    >>> from ratiofactory.infer.objective import make_setup
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> from ratiofactory.infer import fit
    >>> theta = conditional_mle(model, data, make_setup(model), 1.0)
    >>> bool(np.allclose(theta, fit(model, data, fixed={"mu": 1.0}).values, atol=1e-4))
    True
    """
    result = minimize(Objective(model, data), setup.with_poi_fixed(poi_value), options, hesse=False,
                      context=f"conditional fit at {setup.poi_name}={poi_value:g}: ")
    return np.asarray(result.values, dtype=float)


@dataclass(frozen=True)
class _TeststatBatch:
    """A picklable task: the statistic on toys ``start … start + n − 1`` of one hypothesis."""

    model: Any
    generating: np.ndarray
    expected: np.ndarray  # the expected main data at ``generating``, computed once for all batches
    seed: int
    poi_value: float
    setup: FitSetup
    test_stat: str
    batch_size: int
    backend: str

    def __call__(self, span: tuple[int, int]) -> np.ndarray:
        start, n = span
        with backend_task(self.backend):
            toys, free = generate_and_fit(self.model, self.generating, n, self.seed, self.setup, start=start,
                                          expected=self.expected, batch_size=self.batch_size)
            return toy_teststats(self.model, toys, self.poi_value, self.setup, self.test_stat,
                                 batch_size=self.batch_size, free=free)


def sample_teststats(model: Any, generating: np.ndarray, n_toys: int, seed: int, poi_value: float,
                     setup: FitSetup, test_stat: str, *, executor: Executor | None = None,
                     batch_size: int = 64, desc: str = "toys") -> np.ndarray:
    """The statistic on ``n_toys`` toys at ``generating``, in tasks of ``TASK_BATCHES`` batches
    through ``executor`` (within a task, batches are generated while the previous one is fitted).

    >>> import numpy as np, pyhf
    >>> from ratiofactory.infer.objective import make_setup
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> from ratiofactory.toys import generate_toys, progress_bars, toy_teststats
    >>> setup = make_setup(model)
    >>> with progress_bars(False):     # the same toys as generate_toys(..., seed=1)
    ...     q = sample_teststats(model, np.array([1.0, 1.0]), 20, 1, 1.0, setup, "qtilde")
    >>> bool(np.allclose(q, toy_teststats(model, generate_toys(model, [1.0, 1.0], 20, seed=1), 1.0, setup,
    ...                                   "qtilde"), atol=1e-6))
    True
    """
    generating = np.asarray(generating, float)
    task = _TeststatBatch(model, generating, expected_main_data(model, generating), int(seed), float(poi_value),
                          setup, test_stat, int(batch_size), str(pyhf.get_backend()[0].name))
    return run_batches(task, n_toys, TASK_BATCHES * batch_size, executor, desc=desc)


@dataclass(frozen=True)
class ToyHypoTestResult:
    """Toy-based test of one POI value: observed statistic, CLs+b, CLb, CLs (observed and
    the −2σ … +2σ expected band), the sampled statistics and the number of failed fits."""

    poi_value: float
    test_stat: str
    teststat: float
    cls: float
    clsb: float
    clb: float
    expected_cls: tuple[float, ...]
    signal_teststats: np.ndarray
    background_teststats: np.ndarray
    n_failed: int

    def counts(self) -> dict[str, int]:
        """How many signal-like (CLs+b) and background-like (CLb) toys have a statistic at
        or beyond the observed one (``*_beyond``), out of the toys whose fits succeeded
        (``*_valid``); for ``q0`` both are the background-only toys."""
        def count(samples: np.ndarray) -> tuple[int, int]:
            finite = samples[np.isfinite(samples)]
            return int(np.sum(finite >= self.teststat)), int(finite.size)

        (k_sb, n_sb), (k_b, n_b) = count(self.signal_teststats), count(self.background_teststats)
        return {"signal_beyond": k_sb, "signal_valid": n_sb, "background_beyond": k_b, "background_valid": n_b}

    def clsb_upper_bound(self, cl: float = UPPER_BOUND_CL) -> float:
        """One-sided Clopper–Pearson upper bound at ``cl`` on CLs+b (the discovery p-value
        p₀ for ``q0``) from the signal-like toys: where none passes (CLs+b = 0, binomial error
        0), ``1 − (1 − cl)^(1/n)``, about 1.15/n at 68 %.

        >>> import numpy as np
        >>> result = ToyHypoTestResult(0.0, "q0", 9.0, np.nan, 0.0, 0.0, (), np.zeros(30), np.zeros(30), 0)
        >>> round(result.clsb_upper_bound(), 4), round(1 - (1 - 0.6827) ** (1 / 30), 4)
        (0.0375, 0.0375)
        """
        counts = self.counts()
        k, n = counts["signal_beyond"], counts["signal_valid"]
        return float(beta.ppf(cl, k + 1, n - k)) if n > 0 and k < n else 1.0

    def cls_upper_bound(self, cl: float = UPPER_BOUND_CL) -> float:
        """An upper bound on CLs where no signal-like toy passes: :meth:`clsb_upper_bound`
        divided by CLb (NaN where CLb = 0 too: CLs is then undefined)."""
        return self.clsb_upper_bound(cl) / self.clb if self.clb > 0 else float("nan")

    def pvalue_error(self) -> float:
        """Binomial standard error of CLs+b (p₀ for ``q0``): 0 where no toy passes (use
        :meth:`clsb_upper_bound` then)."""
        n = max(self.counts()["signal_valid"], 1)
        return float(np.sqrt(self.clsb * (1 - self.clsb) / n))

    def cls_error(self) -> float:
        """Binomial standard error of CLs from the toy statistics (0 where no signal-like toy
        passes: use :meth:`cls_upper_bound` then)."""
        n_sb, n_b = np.isfinite(self.signal_teststats).sum(), np.isfinite(self.background_teststats).sum()
        var_sb = self.clsb * (1 - self.clsb) / max(n_sb, 1)
        var_b = self.clb * (1 - self.clb) / max(n_b, 1)
        if self.clb <= 0:
            return float("nan")
        return float(np.sqrt(var_sb + self.cls**2 * var_b) / self.clb)


def _pvalue(samples: np.ndarray, value: float) -> float:
    samples = samples[np.isfinite(samples)]
    return float(np.mean(samples >= value)) if samples.size else float("nan")


def toybased_hypotest(model: Any, data: Any, mu: float, n_toys: int, seed: int, *, test_stat: str = "qtilde",
                      poi: str | None = None, init=None, fixed=None, bounds=None,
                      executor: Executor | None = None, batch_size: int = 64,
                      options: FitOptions | None = None) -> ToyHypoTestResult:
    """CLs (``qtilde``, ``q``, ``tmu``, ``tmu_tilde``) or the discovery p-value (``q0``:
    ``clsb`` is the p-value p₀ under μ = 0) of ``poi = mu`` from ``n_toys`` toys per hypothesis.

    For ``q0`` only background-only toys are drawn (``mu`` is ignored): ``clsb = clb = p₀``,
    ``cls`` is NaN and ``expected_cls`` empty (CLs and its band, a ratio of two hypotheses'
    p-values, have no meaning for a discovery test; ``infer.significance`` gives the
    expected p₀ of a signal hypothesis).

    Signal toys use ``seed``, background toys ``seed + 1``.

    >>> import numpy as np, pyhf
    >>> from ratiofactory.infer.objective import make_setup
    >>> model = pyhf.simplemodels.uncorrelated_background([5.0], [50.0], [5.0], validate=False)
    >>> data = [62.0] + model.config.auxdata
    >>> from ratiofactory.infer import hypotest
    >>> result = toybased_hypotest(model, data, 5.0, 100, seed=1)
    >>> abs(result.cls - hypotest(model, data, 5.0).cls) < 3 * result.cls_error()   # asymptotics hold here
    True
    """
    _check_kind(test_stat)
    setup = prepare_setup(model, test_stat, poi=poi, init=init, fixed=fixed, bounds=bounds)
    require_background_only(setup, test_stat)  # the background-like toys (q0: the only toys)
    mu = 0.0 if test_stat == "q0" else float(mu)
    data = np.asarray(data, dtype=float)
    free = minimize(Objective(model, data), setup, options, hesse=False, context="free fit to data: ")
    cond = minimize(Objective(model, data), setup.with_init(free.values).with_poi_fixed(mu), options,
                    hesse=False, context=f"fit to data at {setup.poi_name}={mu:g}: ")
    observed = float(statistic_from_fits(test_stat, mu, free.twice_nll, free.values[setup.poi_index],
                                         cond.twice_nll))
    signal = sample_teststats(model, cond.values, n_toys, seed, mu, setup, test_stat,
                              executor=executor, batch_size=batch_size, desc="signal-like toys")
    if test_stat == "q0":
        background = signal
    else:
        background_pars = conditional_mle(model, data, setup.with_init(free.values), 0.0, options)
        background = sample_teststats(model, background_pars, n_toys, seed + 1, mu, setup, test_stat,
                                      executor=executor, batch_size=batch_size, desc="background-like toys")
    clsb, clb = _pvalue(signal, observed), _pvalue(background, observed)
    n_failed = int((~np.isfinite(signal)).sum() + (0 if test_stat == "q0" else (~np.isfinite(background)).sum()))
    if test_stat == "q0":
        return ToyHypoTestResult(mu, test_stat, observed, float("nan"), clsb, clb, (), signal, background,
                                 n_failed)
    finite_b = background[np.isfinite(background)]
    cls_b = np.array([_pvalue(signal, t) / max(_pvalue(background, t), 1e-300) for t in finite_b])
    expected = tuple(float(v) for v in np.percentile(cls_b, _BAND_PERCENTILES)) if cls_b.size else ()
    return ToyHypoTestResult(mu, test_stat, observed, clsb / clb if clb > 0 else float("nan"), clsb, clb,
                             expected, signal, background, n_failed)
