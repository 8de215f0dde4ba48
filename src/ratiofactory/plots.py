"""Plots: profile-likelihood scans, pulls and impacts, Neyman belts, ratio diagnostics.

matplotlib (Agg backend) and mplhep are imported on first use, so the core does not need
them (``pip install ratiofactory[plots]``). Every function returns the matplotlib
``Figure``; with ``path`` it also writes it atomically (temporary file + rename) in the
format the extension names (``.png``, ``.pdf``, ``.svg``, ... :func:`image_format`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import InvalidModel, InvalidOutput
from .files import atomic_write

__all__ = ["image_format", "plot_belt", "plot_exclusion", "plot_impacts", "plot_reweighting", "plot_scan",
           "plot_spurious_signal", "save_figure"]

#: Wilks thresholds drawn on 1-D scans (68.27 % and 95.45 %) and 2-D contours
LEVELS_1D = {"68.3%": 1.0, "95.4%": 4.0}
LEVELS_2D = {"68.3%": 2.295748928898636, "95.4%": 6.180074306244173}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    try:
        import mplhep
    except ImportError:  # styling is optional: plain matplotlib without mplhep
        return plt
    style = getattr(mplhep.style, "ATLAS", None)
    if style is not None:
        plt.style.use(style)
    return plt


def _figure(ax: Any, figsize: tuple[float, float] = (7.0, 5.0)) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def image_format(path: str | os.PathLike[str]) -> str:
    """The image format matplotlib writes for ``path``'s extension (lower case, no dot);
    :class:`~ratiofactory.errors.InvalidOutput` for an extension it cannot write.

    >>> image_format("scan.PDF"), image_format("out/impacts.svg")
    ('pdf', 'svg')
    >>> try:
    ...     image_format("scan.txt")
    ... except InvalidOutput as err:
    ...     print(str(err)[:46])
    scan.txt: cannot write a plot as '.txt'; use o
    """
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise InvalidOutput(f"{path}: writing plots needs matplotlib (pip install 'ratiofactory[plots]')") from None
    supported = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in supported:
        given = f"'.{suffix}'" if suffix else "a file without an extension"
        raise InvalidOutput(f"{path}: cannot write a plot as {given}; use one of "
                            + ", ".join(f".{name}" for name in supported))
    return suffix


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically in the format of its extension
    (:func:`image_format`: ``.png``, ``.pdf``, ``.svg``, ...); returns the path."""
    fmt = image_format(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return Path(path)


def _finish(fig: Any, path: str | os.PathLike[str] | None) -> Any:
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_scan(scan_result: Any, path: str | os.PathLike[str] | None = None, ax: Any = None,
              intervals: Sequence[Any] = ()) -> Any:
    """``t_μ`` against the POI with the 68 %/95 % lines at 1 and 4 (a
    :class:`~ratiofactory.infer.ScanResult`), or the 68 %/95 % contours of a
    :class:`~ratiofactory.infer.ScanResult2D`. ``intervals`` (IntervalResults) are marked
    as vertical lines at their ends; an open end (the interval goes on beyond the scan) as
    an arrow pointing out of the scan at the threshold, not as a line at the scan's edge.
    Without ``intervals`` the crossings are interpolated on the grid.
    """
    if hasattr(scan_result, "pois"):
        return _plot_scan_2d(scan_result, path, ax)
    fig, ax = _figure(ax)
    x, t = np.asarray(scan_result.poi_values), np.asarray(scan_result.tmu)
    ax.plot(x, t, "o-", color="black", markersize=3, label="profile likelihood")
    for (label, level), style in zip(LEVELS_1D.items(), ("--", ":"), strict=True):
        ax.axhline(level, color="grey", linestyle=style, linewidth=1)
        ax.text(x[-1], level, f" {label}", va="bottom", ha="right", color="grey", fontsize=9)
        ends = _crossings(x, t, level) if not intervals else []
        for end in ends:
            ax.axvline(end, color="tab:blue", linestyle=style, linewidth=1)
    span = float(x[-1] - x[0]) if x.size > 1 else 1.0
    for result in intervals:
        style = "--" if result.threshold <= 1.0 + 1e-9 else ":"
        for (lo, hi), opens in zip(result.intervals, result.open_ends, strict=True):
            for end, is_open, outward in ((lo, opens[0], -1.0), (hi, opens[1], 1.0)):
                if is_open:
                    _open_end(ax, end, result.threshold, outward * 0.08 * span)
                else:
                    ax.axvline(end, color="tab:blue", linestyle=style, linewidth=1)
    ax.axvline(scan_result.bestfit.poi_value, color="tab:red", linewidth=1, label="best fit")
    ax.set_xlabel(scan_result.poi)
    ax.set_ylabel(r"$t_\mu = -2\ln\lambda(\mu)$")
    ax.set_ylim(0.0, max(5.0, float(np.nanmax(t)) * 1.05) if t.size else 5.0)
    ax.legend(loc="upper center")
    return _finish(fig, path)


def _open_end(ax: Any, edge: float, level: float, length: float) -> None:
    """An arrow from the scan's edge outwards at ``t = level``: the interval goes on."""
    ax.annotate("", xy=(edge + length, level), xytext=(edge, level), gid="open-interval-end",
                arrowprops={"arrowstyle": "->", "color": "tab:blue", "linewidth": 1.5})
    ax.text(edge + length / 2, level, "beyond scan", color="tab:blue", fontsize=8, ha="center", va="top")


def _crossings(x: np.ndarray, t: np.ndarray, level: float) -> list[float]:
    """Linear interpolation of the grid crossings of ``t = level``."""
    ends = []
    for i in range(len(x) - 1):
        a, b = t[i] - level, t[i + 1] - level
        if np.isfinite(a) and np.isfinite(b) and a * b < 0:
            ends.append(float(x[i] + (x[i + 1] - x[i]) * a / (a - b)))
    return ends


def _plot_scan_2d(scan: Any, path: Any, ax: Any) -> Any:
    fig, ax = _figure(ax)
    xx, yy = np.meshgrid(scan.x_values, scan.y_values, indexing="ij")
    mesh = ax.pcolormesh(xx, yy, np.asarray(scan.tmu), shading="auto", cmap="Blues_r")
    fig.colorbar(mesh, ax=ax, label=r"$-2\ln\lambda$")
    contours = ax.contour(xx, yy, np.asarray(scan.tmu), levels=sorted(LEVELS_2D.values()),
                          colors=["black", "black"], linestyles=["-", "--"])
    ax.clabel(contours, fmt={v: k for k, v in LEVELS_2D.items()}, fontsize=8)
    ax.plot([scan.bestfit.value(scan.pois[0])], [scan.bestfit.value(scan.pois[1])], "r*",
            markersize=12, label="best fit")
    ax.set_xlabel(scan.pois[0])
    ax.set_ylabel(scan.pois[1])
    ax.legend(loc="upper right")
    return _finish(fig, path)


def plot_exclusion(grid_result: Any, x: str | None = None, y: str | None = None,
                   path: str | os.PathLike[str] | None = None, ax: Any = None) -> Any:
    """Exclusion contour of a signal grid (a :class:`~ratiofactory.grid.GridResult`) in the
    plane of labels ``x`` and ``y`` (default: the first two): the CLs = level contours of
    the observed (solid) and median expected (dashed) CLs, the expected ±1σ band, and the
    points, filled where excluded. The contours are drawn on the Delaunay triangulation
    of the points (matplotlib's ``tricontour``), so they need three points off a line."""
    labels = list(grid_result.labels)
    x = x or labels[0]
    y = y or (labels[1] if len(labels) > 1 else None)
    if y is None or x not in labels or y not in labels:
        raise InvalidModel(f"plot_exclusion needs two of the grid's labels {labels}, got x={x!r}, y={y!r}")
    points = [p for p in grid_result.points if not p.error]
    xs = np.array([p.values[labels.index(x)] for p in points], dtype=float)
    ys = np.array([p.values[labels.index(y)] for p in points], dtype=float)
    fig, ax = _figure(ax)
    level = grid_result.level
    excluded = np.array([p.excluded for p in points], dtype=bool)
    ax.scatter(xs[~excluded], ys[~excluded], facecolors="none", edgecolors="grey", s=12, zorder=3,
               label="not excluded", clip_on=False)
    ax.scatter(xs[excluded], ys[excluded], color="grey", s=12, zorder=3, label=f"excluded (CLs < {level:g})",
               clip_on=False)
    ax.margins(0.05)
    if len(points) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
        expected = np.array([p.expected_cls for p in points], dtype=float)
        observed = np.array([p.cls for p in points], dtype=float)
        # inside the ±1σ band: excluded at the −1σ edge of the expectation, not at the +1σ one
        inside = np.maximum(expected[:, 1] - level, level - expected[:, 3])
        if inside.min() < 0:
            ax.tricontourf(xs, ys, inside, levels=[float(inside.min()) - 1.0, 0.0], colors=["gold"], alpha=0.5)
        for values, color, style in ((expected[:, 2], "black", "--"), (observed, "tab:red", "-")):
            if values.min() < level < values.max():
                ax.tricontour(xs, ys, values - level, levels=[0.0], colors=[color], linestyles=style)
        ax.plot([], [], color="tab:red", label="observed")
        ax.plot([], [], color="black", linestyle="--", label="expected")
        ax.fill_between([], [], color="gold", alpha=0.5, label=r"expected $\pm 1\sigma$")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"CLs of {grid_result.poi} = {grid_result.test_poi:g}", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    return _finish(fig, path)


def plot_impacts(impacts_result: Any, path: str | os.PathLike[str] | None = None,
                 max_rows: int = 20, ax: Any = None) -> Any:
    """Ranking plot: pulls ``(α̂−a)/σ_pre`` with constraints as error bars (bottom axis)
    and the pre-/post-fit refit impacts on the POI as bars (top axis), largest first."""
    rows = list(impacts_result.rows[:max_rows])[::-1]
    fig, ax = _figure(ax, figsize=(8.0, 3.0 + 0.45 * max(len(rows), 1)))
    y = np.arange(len(rows))
    top = ax.twiny()
    for attr_up, attr_dn, color, alpha, label in (
        ("prefit_up", "prefit_down", "tab:cyan", 0.35, "pre-fit impact"),
        ("postfit_up", "postfit_down", "tab:blue", 0.7, "post-fit impact"),
    ):
        up = [_num(getattr(r, attr_up)) for r in rows]
        dn = [_num(getattr(r, attr_dn)) for r in rows]
        top.barh(y, up, height=0.6, color=color, alpha=alpha, label=f"{label} (+)")
        top.barh(y, dn, height=0.6, facecolor="none", edgecolor=color, hatch="///", alpha=alpha,
                 label=f"{label} (−)")
    pulls = [_num(r.pull) for r in rows]
    widths = [_num(r.constraint) for r in rows]
    ax.errorbar(pulls, y, xerr=widths, fmt="o", color="black", label="pull")
    ax.axvline(0.0, color="grey", linewidth=1)
    for edge in (-1.0, 1.0):
        ax.axvline(edge, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, [r.name for r in rows])
    ax.set_xlim(-2.5, 2.5)
    ax.set_xlabel(r"$(\hat\alpha - a)/\sigma_\mathrm{pre}$")
    limit = max([abs(v) for v in (*_impact_values(rows),)] + [1e-12]) * 1.3
    top.set_xlim(-limit, limit)
    top.set_xlabel(f"impact on {impacts_result.poi} (Δ best fit)")
    handles = ax.get_legend_handles_labels()[0] + top.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + top.get_legend_handles_labels()[1]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)


def plot_spurious_signal(table: Any, path: str | os.PathLike[str] | None = None, ax: Any = None) -> Any:
    """Δμ̂(μ) of a :class:`~ratiofactory.ensemble_uncertainty.SpuriousSignalTable`: the
    computed points and the interpolation the likelihood uses (pchip, constant beyond
    the grid), with the bias of the resampled fits as a second series."""
    fig, ax = _figure(ax)
    spurious = table.spurious_signal()
    grid = np.asarray(table.grid, float)
    span = grid[-1] - grid[0]
    fine = np.linspace(grid[0] - 0.05 * span, grid[-1] + 0.05 * span, 400)
    ax.plot(fine, spurious.delta_at(fine), color="tab:blue", label=r"$\Delta\hat\mu$ (pchip)")
    ax.plot(grid, table.delta, "o", color="tab:blue", label=f"{table.fits} Asimov fits per point")
    ax.plot(grid, table.bias, "s", color="tab:orange", markersize=4, label="bias (mean shift of the fits)")
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_xlabel(table.parameter)
    ax.set_ylabel(r"$\Delta\hat\mu$")
    ax.set_title(f"spurious signal of {table.channel} ({table.estimator}, K = {table.members})")
    ax.legend()
    fig.tight_layout()
    return _finish(fig, path)


def _num(value: float | None) -> float:
    return 0.0 if value is None or not np.isfinite(value) else float(value)


def _impact_values(rows: Sequence[Any]) -> list[float]:
    return [_num(getattr(r, a)) for r in rows
            for a in ("prefit_up", "prefit_down", "postfit_up", "postfit_down")]


def plot_belt(poi_values: ArrayLike, critical_values: ArrayLike,
              observed: ArrayLike | None = None, *, cl: float | None = None,
              poi: str = r"$\mu$", path: str | os.PathLike[str] | None = None, ax: Any = None) -> Any:
    """A Neyman construction in the ``t_μ`` form: the toys' critical values ``t_μ^c``
    (the acceptance region is ``t_μ ≤ t_μ^c``), the observed ``t_μ`` and the asymptotic
    (Wilks) threshold for comparison; the confidence set is where observed < critical."""
    from scipy.stats import chi2

    fig, ax = _figure(ax)
    x = np.asarray(poi_values, dtype=float)
    crit = np.asarray(critical_values, dtype=float)
    ax.fill_between(x, 0.0, crit, color="tab:green", alpha=0.3, label="acceptance region")
    ax.plot(x, crit, color="tab:green", label="critical value (toys)")
    if cl is not None:
        ax.axhline(chi2.ppf(cl, 1), color="grey", linestyle="--", linewidth=1,
                   label=f"Wilks, {100 * cl:.1f}% CL")
    if observed is not None:
        obs = np.asarray(observed, dtype=float)
        ax.plot(x, obs, "o-", color="black", markersize=3, label=r"observed $t_\mu$")
        inside = obs <= crit
        if inside.any():
            ax.plot(x[inside], np.zeros(inside.sum()), "|", color="tab:red", markersize=15,
                    label="confidence set")
    ax.set_xlabel(poi)
    ax.set_ylabel(r"$t_\mu$")
    ax.set_ylim(bottom=0.0)
    ax.legend(loc="upper center", fontsize=9)
    return _finish(fig, path)


def _lookup(model: Any, channel: str, sample: str) -> tuple[Any, Any]:
    channels = {c.name: c for c in model.unbinned_channels}
    if channel not in channels:
        raise InvalidModel(f"no unbinned channel named '{channel}'; channels: {', '.join(channels) or '(none)'}")
    samples = {s.name: s for s in channels[channel].samples}
    if sample not in samples:
        raise InvalidModel(f"channel '{channel}' has no sample '{sample}'; samples: {', '.join(samples)}")
    return channels[channel], samples[sample]


def plot_reweighting(model: Any, channel: str, sample: str, events: Any = None, *,
                     event_weights: Any = None, bins: int = 30,
                     path: str | os.PathLike[str] | None = None) -> Any:
    """Ratio closure diagnostic of sample ``sample``: for each observable, the reference
    sample reweighted by ``r_j`` (``w_ref · r_j``, normalised), with the spread of the
    ensemble members (min–max band) when there is one, and the reference itself.
    ``events`` (an (N, D) array in the channel's observable order, or an ``EventSet``)
    are events of the sample itself; they are drawn as points for the closure check,
    with a lower panel of their ratio to the reweighted reference.
    """
    chan, comp = _lookup(model, channel, sample)
    if comp.parameterised is not None:
        raise InvalidModel(f"sample '{sample}' of channel '{channel}' has a parameterised ratio r(x | θ);"
                           " the reweighting diagnostic needs a fixed ratio")
    if chan.reference is None or chan.n_reference == 0:
        raise InvalidModel(f"channel '{channel}' has no reference sample to reweight")
    ref = np.asarray(chan.reference.values)
    w_ref = np.asarray(chan.reference_weights)
    start = chan.n_observed
    ratio = np.asarray(comp.ratio)[start:]
    members = np.asarray(comp.ratio_members)[:, start:]
    own = None if events is None else np.asarray(getattr(events, "values", events), dtype=float)
    if own is not None and (own.ndim != 2 or own.shape[1] != len(chan.observables)):
        raise InvalidModel(f"events must have shape (N, {len(chan.observables)}) for channel '{channel}'")
    own_w = None if event_weights is None else np.asarray(event_weights, dtype=float)
    if own is not None and own_w is None and getattr(events, "weights", None) is not None:
        own_w = np.asarray(events.weights)
    plt = _pyplot()
    n_obs = len(chan.observables)
    rows = 2 if own is not None else 1
    fig, axes = plt.subplots(rows, n_obs, figsize=(5.5 * n_obs, 4.5 + 1.5 * (rows - 1)), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1][:rows]}, sharex="col")
    for d, name in enumerate(chan.observables):
        ax = axes[0, d]
        edges = np.histogram_bin_edges(np.concatenate([ref[:, d]] + ([own[:, d]] if own is not None else [])), bins)
        centers = 0.5 * (edges[1:] + edges[:-1])
        reweighted = _density(ref[:, d], w_ref * ratio, edges)
        ax.stairs(_density(ref[:, d], w_ref, edges), edges, color="grey", label="reference")
        ax.stairs(reweighted, edges, color="tab:blue", linewidth=2, label=rf"reference $\times\ r_{{{sample}}}$")
        if members.shape[0] > 1:
            spread = np.array([_density(ref[:, d], w_ref * m, edges) for m in members])
            ax.stairs(spread.max(axis=0), edges, baseline=spread.min(axis=0), fill=True,
                      color="tab:blue", alpha=0.3, label=f"ensemble ({members.shape[0]} members)")
        if own is not None:
            counts, err = _density_with_error(own[:, d], own_w, edges)
            ax.errorbar(centers, counts, yerr=err, fmt="o", color="black", markersize=3, label=f"{sample} events")
            low = axes[1, d]
            safe = np.where(reweighted > 0, reweighted, np.nan)
            low.errorbar(centers, counts / safe, yerr=err / safe, fmt="o", color="black", markersize=3)
            low.axhline(1.0, color="tab:blue")
            low.set_ylabel("events / rew.")
            low.set_ylim(0.5, 1.5)
        axes[-1, d].set_xlabel(name)
        ax.set_ylabel("normalised density")
        ax.legend(fontsize=8)
    fig.suptitle(f"{channel}: {sample} from the reweighted reference", fontsize=11)
    fig.tight_layout()
    return _finish(fig, path)


def _density(values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, edges, weights=weights)
    total = counts.sum() * np.diff(edges)
    return np.divide(counts, total, out=np.zeros_like(counts, dtype=float), where=total > 0)


def _density_with_error(values: np.ndarray, weights: np.ndarray | None, edges: np.ndarray) -> tuple[Any, Any]:
    w = np.ones(len(values)) if weights is None else weights
    counts, _ = np.histogram(values, edges, weights=w)
    sumw2, _ = np.histogram(values, edges, weights=w * w)
    norm = counts.sum() * np.diff(edges)
    norm = np.where(norm > 0, norm, 1.0)
    return counts / norm, np.sqrt(sumw2) / norm
