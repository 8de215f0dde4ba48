"""Every plot type rendered to PNG: the file exists, is not tiny and not one colour."""

from __future__ import annotations

from pathlib import Path

import cli_toy
import numpy as np
import pytest

import ratiofactory
from ratiofactory import infer, plots


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path, signal_events = cli_toy.make_toy(tmp_path_factory.mktemp("plots"))
    ws = ratiofactory.Workspace.load(path)
    model = ws.model()
    return model, ws.data(model), signal_events


def _check_png(path: Path) -> None:
    import matplotlib.image

    assert path.is_file()
    assert path.stat().st_size > 5000
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert float(np.std(image[..., :3])) > 0.01


def test_scan_plot(toy, tmp_path):
    model, data, _ = toy
    scan = infer.profile_scan(model, data, np.linspace(0.0, 3.0, 13))
    fig = plots.plot_scan(scan, tmp_path / "scan.png", intervals=[infer.interval(scan)])
    _check_png(tmp_path / "scan.png")
    assert fig.axes[0].get_xlabel() == "mu"
    # without intervals, the grid crossings of t = 1 are drawn and bracket the best fit
    ends = plots._crossings(scan.poi_values, scan.tmu, 1.0)
    assert len(ends) == 2
    assert ends[0] < scan.bestfit.poi_value < ends[1]


def test_scan_plot_marks_an_open_end_as_open(toy, tmp_path):
    """An interval that runs into the scan's edge was drawn with a line at the edge, as if
    it ended there; now an arrow points out of the scan and no line is drawn at the edge."""
    model, data, _ = toy
    best = infer.fit(model, data).poi_value
    scan = infer.profile_scan(model, data, np.linspace(0.0, 0.8 * best, 3))
    result = infer.interval(scan)
    assert result.open_ends[-1][1]
    fig = plots.plot_scan(scan, intervals=[result])
    ax = fig.axes[0]
    edge = float(scan.poi_values[-1])
    vertical = [float(line.get_xdata()[0]) for line in ax.lines
                if len(set(map(float, line.get_xdata()))) == 1 and line.get_color() == "tab:blue"]
    assert result.intervals[0][0] in vertical  # the closed (lower) end: a line
    assert edge not in vertical  # the open (upper) end: no line at the scan's edge ...
    arrows = [a for a in ax.texts if a.get_gid() == "open-interval-end"]
    assert len(arrows) == 1  # ... but an arrow from it outwards at t = 1
    assert arrows[0].xy[0] > edge
    assert arrows[0].xy[1] == pytest.approx(1.0)


def test_scan_2d_contour(toy, tmp_path):
    model, data, _ = toy
    scan = infer.profile_scan_2d(model, data, np.linspace(0.2, 2.5, 5), np.linspace(-1.5, 1.5, 5),
                                 pois=("mu", "bkg_norm"))
    plots.plot_scan(scan, tmp_path / "contour.png")
    _check_png(tmp_path / "contour.png")


def test_impacts_plot(toy, tmp_path):
    model, data, _ = toy
    result = infer.impacts(model, data)
    fig = plots.plot_impacts(result, tmp_path / "impacts.png")
    _check_png(tmp_path / "impacts.png")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["bkg_norm"]


def test_reweighting_plot_with_events_and_ensemble(toy, tmp_path):
    model, _, signal_events = toy
    fig = plots.plot_reweighting(model, "SR", "signal", signal_events, path=tmp_path / "rew.png")
    _check_png(tmp_path / "rew.png")
    assert len(fig.axes) == 2  # distribution and ratio panel
    plots.plot_reweighting(model, "SR", "background", path=tmp_path / "rew_b.png")
    _check_png(tmp_path / "rew_b.png")


def test_reweighting_closure_numbers(toy):
    """The reweighted reference reproduces the signal's mean and width (exact ratios)."""
    model, _, _ = toy
    chan = model.unbinned_channels[0]
    x = chan.reference.values[:, 0]
    w = chan.reference_weights * chan.samples[0].ratio[chan.n_observed:]
    mean = np.average(x, weights=w)
    assert mean == pytest.approx(3.0, abs=0.05)
    assert np.sqrt(np.average((x - mean) ** 2, weights=w)) == pytest.approx(0.405, abs=0.04)


def test_reweighting_unknown_names(toy):
    model, _, _ = toy
    with pytest.raises(ratiofactory.RatiofactoryError, match="no sample 'sig'"):
        plots.plot_reweighting(model, "SR", "sig")
    with pytest.raises(ratiofactory.RatiofactoryError, match="no unbinned channel named 'CR'"):
        plots.plot_reweighting(model, "CR", "signal")


def test_belt_plot(tmp_path):
    mu = np.linspace(0.0, 3.0, 16)
    critical = 1.0 + 0.3 * np.exp(-mu)
    observed = (mu - 1.2) ** 2 * 2.0
    fig = plots.plot_belt(mu, critical, observed, cl=0.6827, poi="mu", path=tmp_path / "belt.png")
    _check_png(tmp_path / "belt.png")
    assert fig.axes[0].get_xlabel() == "mu"


def test_save_is_atomic_and_leaves_no_temporary(tmp_path):
    fig = plots.plot_belt([0.0, 1.0], [1.0, 1.0])
    plots.save_figure(fig, tmp_path / "sub" / "belt.png")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["belt.png"]


@pytest.mark.parametrize(("name", "magic"), [("belt.pdf", b"%PDF"), ("belt.svg", b"<?xml"), ("belt.PNG", b"\x89PNG"),
                                             ("belt.eps", b"%!PS")])
def test_save_writes_the_format_of_the_extension(tmp_path, name, magic):
    """``scan.pdf`` holds PDF, not PNG (save_figure used to write PNG whatever the name)."""
    fig = plots.plot_belt([0.0, 1.0], [1.0, 1.0])
    plots.save_figure(fig, tmp_path / name)
    assert (tmp_path / name).read_bytes()[:len(magic)] == magic


@pytest.mark.parametrize("name", ["scan.txt", "scan", "scan.json"])
def test_unknown_plot_extension_is_refused_before_writing(tmp_path, name):
    fig = plots.plot_belt([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ratiofactory.RatiofactoryError, match=r"cannot write a plot as .*\.pdf.*\.png.*\.svg"):
        plots.save_figure(fig, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
