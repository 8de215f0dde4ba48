"""Progress off a terminal: plain lines on stderr (done/total, rate), never on stdout,
nothing with --quiet; the library is silent off a terminal unless asked."""

from __future__ import annotations

import io
import re

import pytest
from cli_toy import make_toy, run

from ratiofactory.progress import Progress, progress, reporting

LINE = re.compile(r"^(?P<what>[^:]+): (?P<done>\d+)(/(?P<total>\d+))?(?P<unit>[a-zA-Z ]*), "
                  r"(?P<rate>[0-9.e+-]+)/s, (?P<elapsed>[0-9.]+) s$")


def test_lines_every_interval_with_done_total_and_rate(monkeypatch):
    stream = io.StringIO()
    clock = iter([0.0, 1.0, 2.5, 6.0, 7.0, 12.0, 13.0])
    monkeypatch.setattr("ratiofactory.progress.time.monotonic", lambda: next(clock))
    with reporting("lines", stream=stream, interval=5.0):
        bar = Progress("toys", 4, "batches")  # starts at t = 0
        bar.advance()  # t = 1: too soon for a line
        bar.advance()  # t = 2.5
        bar.advance()  # t = 6: a line
        bar.advance()  # t = 7
        bar.close()  # t = 12: the last line
    lines = stream.getvalue().splitlines()
    assert lines == ["toys: 3/4 batches, 0.5/s, 6.0 s", "toys: 4/4 batches done, 0.333/s, 12.0 s"]


def test_unknown_total_and_silence_off_a_terminal():
    stream = io.StringIO()
    with reporting("lines", stream=stream, interval=0.0):
        for _ in progress(range(3), None, "upper limit", "POI values"):
            pass
    match = LINE.match(stream.getvalue().splitlines()[-1])
    assert match is not None
    assert match["done"] == "3"
    assert match["total"] is None
    for mode in ("auto", "off"):  # a StringIO is no terminal: no bar, no lines
        quiet = io.StringIO()
        with reporting(mode, stream=quiet, interval=0.0):
            list(progress(range(3), 3, "toys"))
        assert quiet.getvalue() == ""
    with pytest.raises(ValueError, match="progress mode"), reporting("loud"):
        pass


@pytest.fixture(scope="module")
def toy_workspace(tmp_path_factory):
    path, _ = make_toy(tmp_path_factory.mktemp("progress"))
    return path


@pytest.mark.parametrize(("command", "what"), [
    (["scan", "--poi-range", "0", "2", "--points", "5"], "profile scan of mu: 5/5 points done"),
    (["upper-limit"], "upper limit on mu: "),
    (["toys", "--ntoys", "12", "--batch-size", "1", "--test-poi", "1.5"], "signal-like toys: 3/3 batches done"),
])
def test_cli_reports_progress_on_stderr_only(toy_workspace, tmp_path, command, what):
    result = run([command[0], toy_workspace, *command[1:], "-o", tmp_path / "out.json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert lines, result.stderr
    assert all(LINE.match(line) for line in lines), lines
    assert any(line.startswith(what) for line in lines), lines
    assert lines[-1].split(",")[0].endswith("done")
    assert not any(LINE.match(line) for line in result.stdout.splitlines())
    quiet = run([command[0], toy_workspace, *command[1:], "-o", tmp_path / "quiet.json", "--quiet"])
    assert quiet.exit_code == 0
    assert quiet.stdout == ""
    assert not any(LINE.match(line) for line in quiet.stderr.splitlines())
