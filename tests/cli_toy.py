"""The small exact-ratio workspace and CLI helpers shared by the command-line tests
(tests/test_cli*.py, test_plots.py, test_publish.py).

``make_toy`` writes an unbinned workspace: one observable, a Gaussian signal (ratio = an
ensemble of two exact graphs) on an exponential background with a normsys.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ratiofactory.testing import Exponential, Normal, ratio_model, sample_mixture

NU_S, NU_B = 30.0, 300.0
P_S = [(1.0, [Normal(3.0, 0.4)])]
P_S_WIDE = [(1.0, [Normal(3.0, 0.41)])]
P_B = [(1.0, [Exponential(0.4, 0.0, 8.0)])]
P_REF = [(0.3, P_S[0][1]), (0.7, P_B[0][1])]


def make_toy(root: Path, seed: int = 5) -> tuple[Path, np.ndarray]:
    """Write the toy workspace under ``root``; return its path and the signal events."""
    root = Path(root)
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    graphs = {"S_a": ratio_model(P_S, P_REF, output="log_ratio"),
              "S_b": ratio_model(P_S_WIDE, P_REF, output="log_ratio"),
              "B": ratio_model(P_B, P_REF, output="ratio")}
    for name, content in graphs.items():
        (root / "models" / f"{name}.onnx").write_bytes(content)
    observed = np.concatenate([sample_mixture(P_S, rng.poisson(NU_S), rng),
                               sample_mixture(P_B, rng.poisson(NU_B), rng)])[:, 0]
    reference = sample_mixture(P_REF, 2000, rng)[:, 0]
    np.savez(root / "data" / "observed.npz", x=observed)
    np.savez(root / "data" / "reference.npz", x=reference)
    onnx = lambda name, out: {"onnx": {"path": f"models/{name}.onnx"}, "output": out}
    spec = {
        "version": "1.0.0",
        "unbinned_channels": [{
            "name": "SR",
            "observables": [{"name": "x", "bounds": [0.0, 8.0]}],
            "reference": {"events": {"path": "data/reference.npz"}},
            "samples": [
                {"name": "signal", "yield": NU_S,
                 "ratio": {"ensemble": [onnx("S_a", "log_ratio"), onnx("S_b", "log_ratio")], "aggregate": "mean"},
                 "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                {"name": "background", "yield": NU_B, "ratio": onnx("B", "ratio"),
                 "modifiers": [{"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]},
            ],
        }],
        "observations": [{"name": "SR", "events": {"path": "data/observed.npz"}}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[-1.0, 10.0]], "inits": [1.0]}]}}],
    }
    path = root / "workspace.json"
    path.write_text(json.dumps(spec, indent=1))
    return path, sample_mixture(P_S, 3000, rng)


def run(args, **kwargs):
    """Invoke the CLI in-process; return the click Result."""
    from click.testing import CliRunner

    from ratiofactory.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def run_json(args, tmp_path, name="out.json"):
    out = tmp_path / name
    result = run([*args, "--output-file", out])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def one_line_error(result, *fragments):
    """The CLI failed with one line on stderr containing every fragment, and no traceback."""
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
