"""Assemble the shipped off-shell example workspace directory.

Reads the output of generate.py (reference sample, observed data) and train.py (ONNX
ensembles), builds the exact-ratio ONNX graphs, and writes ``examples/offshell/workspace/``:

    workspace.json        trained CARL ensembles (the analysis)
    exact.json            the same model with the exact ratios (closure)
    data/reference.npz    reference sample (m4l, cos_theta, weight; Σ weight = 1)
    data/observed.npz     the "observed" dataset (μ = 1 by default)
    models/<ratio>_<k>.onnx, models/exact/<ratio>.onnx

Every file reference carries its sha256 digest. Run
``python examples/offshell/build_workspace.py`` after generate.py and train.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from exact_onnx import exact_models
from generate import GENERATED
from physics import M4L_BOUNDS, OBSERVABLES, OffshellModel, offshell_model

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE / "workspace"
COEFFICIENTS = {"S": "mu - sqrt(mu)", "SBI": "sqrt(mu)", "B": "1 - sqrt(mu)"}
LUMI_SIGMA = 0.017
SIZE_LIMIT = 10 * 1024 * 1024


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_ref(root: Path, relative: str) -> dict:
    return {"path": relative, "sha256": sha256(root / relative)}


def trained_ratio(root: Path, name: str, members: int) -> dict:
    """Ensemble spec of the trained models of ratio ``name`` (see train.py for the kinds)."""
    output = "probability" if "_kf_" in name else "log_ratio"
    return {"ensemble": [{"onnx": file_ref(root, f"models/{name}_{k}.onnx"),
                          "output": output} for k in range(members)],
            "aggregate": "mean"}


def exact_ratio(root: Path, name: str) -> dict:
    return {"onnx": file_ref(root, f"models/exact/{name}.onnx"), "output": "ratio"}


def sample_spec(model: OffshellModel, name: str, ratio) -> dict:
    """One sample: yield, ratio, coefficient, lumi and (signal-bearing) K-factor."""
    modifiers = [{"name": f"f_{name}", "type": "formula",
                  "data": {"expression": COEFFICIENTS[name]}},
                 {"name": "lumi", "type": "lumi", "data": None}]
    if name in ("S", "SBI"):
        hi, lo = model.normsys(name)
        modifiers += [
            {"name": "k_factor", "type": "normsys", "data": {"hi": hi, "lo": lo}},
            {"name": "k_factor", "type": "ratiosys",
             "data": {"hi": ratio(f"{name}_kf_up"), "lo": ratio(f"{name}_kf_dn")}},
        ]
    return {"name": name, "yield": model.yields[name], "ratio": ratio(name),
            "modifiers": modifiers}


def workspace_spec(model: OffshellModel, root: Path, ratio) -> dict:
    """The workspace JSON (schema 1.0.0) with ``ratio(name)`` giving each ratio spec."""
    channel = {
        "name": "SR_4l",
        "observables": [{"name": OBSERVABLES[0], "bounds": list(M4L_BOUNDS)},
                        {"name": OBSERVABLES[1], "bounds": [-1.0, 1.0]}],
        "reference": {"events": {**file_ref(root, "data/reference.npz"), "weight": "weight"}},
        "samples": [sample_spec(model, k, ratio) for k in ("S", "SBI", "B")],
    }
    parameters = [
        {"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]},
        {"name": "lumi", "auxdata": [1.0], "sigmas": [LUMI_SIGMA], "bounds": [[0.9, 1.1]],
         "inits": [1.0]},
    ]
    return {
        "version": "1.0.0",
        "unbinned_channels": [channel],
        "observations": [{"name": "SR_4l", "events": file_ref(root, "data/observed.npz")}],
        "measurements": [{"name": "offshell", "config": {"poi": "mu",
                                                         "parameters": parameters}}],
    }


def copy_inputs(root: Path, generated: Path, members: int) -> None:
    """Copy the data files and trained models into the workspace directory."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "models" / "exact").mkdir(parents=True, exist_ok=True)
    for name in ("reference.npz", "observed.npz"):
        shutil.copyfile(generated / name, root / "data" / name)
    for onnx_file in sorted((generated / "models").glob("*.onnx")):
        member = int(onnx_file.stem.rsplit("_", 1)[1])
        if member < members:
            shutil.copyfile(onnx_file, root / "models" / onnx_file.name)


def write_exact_models(model: OffshellModel, root: Path) -> None:
    for name, proto in exact_models(model).items():
        (root / "models" / "exact" / f"{name}.onnx").write_bytes(proto.SerializeToString())


def write_json(path: Path, spec: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    tmp.replace(path)


def build(root: Path, generated: Path, members: int) -> None:
    model = offshell_model()
    if root.exists():
        shutil.rmtree(root)
    copy_inputs(root, generated, members)
    write_exact_models(model, root)
    write_json(root / "workspace.json",
               workspace_spec(model, root, lambda n: trained_ratio(root, n, members)))
    write_json(root / "exact.json", workspace_spec(model, root, lambda n: exact_ratio(root, n)))
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"wrote {root}: {total / 1e6:.2f} MB")
    if total > SIZE_LIMIT:
        raise SystemExit(f"workspace is {total} bytes, over the {SIZE_LIMIT} byte limit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=WORKSPACE)
    parser.add_argument("--generated", type=Path, default=GENERATED)
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args()
    build(args.out, args.generated, args.members)


if __name__ == "__main__":
    main()
