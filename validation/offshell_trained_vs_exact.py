"""Trained ensembles vs exact ratios on the same observed events of the off-shell example.

Fits the observed data with ``exact.json`` (exact-ratio ONNX graphs), ``workspace.json``
(ensembles of 5 CARL networks, averaged) and, for each k, the workspace whose every
ensemble is replaced by its k-th member (written to a temporary directory). Prints μ̂ and
the 68.27 % interval of each, the spread (standard deviation) of the members, and checks
that the exact-ratio result lies within the ensemble's own spread, std/√K (the
ensemble averages K members), of the ensemble's.

    python validation/offshell_trained_vs_exact.py
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyhf

import ratiofactory
from ratiofactory import infer

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / "examples" / "offshell" / "workspace"
SCAN = np.linspace(0.0, 6.0, 25)  # wide: single members can fit far from 1


def ensemble_size(spec: Any) -> int:
    """Largest ensemble length anywhere in a workspace spec."""
    if isinstance(spec, dict):
        own = len(spec["ensemble"]) if "ensemble" in spec else 0
        return max([own, *(ensemble_size(v) for v in spec.values())])
    if isinstance(spec, list):
        return max([0, *(ensemble_size(v) for v in spec)])
    return 0


def member_spec(spec: Any, k: int) -> Any:
    """A copy of ``spec`` with every ``{"ensemble": [...]}`` replaced by its k-th member."""
    if isinstance(spec, dict):
        if "ensemble" in spec:
            return copy.deepcopy(spec["ensemble"][k])
        return {key: member_spec(value, k) for key, value in spec.items()}
    if isinstance(spec, list):
        return [member_spec(value, k) for value in spec]
    return spec


def measure(path: Path) -> dict[str, float]:
    """μ̂ and the 68.27 % interval of the observed data of a workspace file."""
    model = ratiofactory.Workspace.load(path).model()
    data = ratiofactory.Workspace.load(path).data(model)
    scan = infer.profile_scan(model, data, SCAN)
    ci = infer.interval(scan)
    return {"mu_hat": ci.bestfit, "lower": ci.intervals[0][0], "upper": ci.intervals[-1][1],
            "k_factor": scan.bestfit.value("k_factor")}


def partial_member_spec(spec: dict, k: int, part: str) -> dict:
    """Member k for the sample ratios only (``part="samples"``), for the K-factor shape
    ratios only (``"ratiosys"``), or everywhere (``"all"``); the rest stays the ensemble."""
    if part == "all":
        return member_spec(spec, k)
    spec = copy.deepcopy(spec)
    for channel in spec["unbinned_channels"]:
        for sample in channel["samples"]:
            key = "ratio" if part == "samples" else "modifiers"
            sample[key] = member_spec(sample[key], k)
    return spec


def member_results(directory: Path, part: str = "all") -> list[dict[str, float]]:
    """One measurement per ensemble member, from workspaces in ``directory``."""
    spec = json.loads((WORKSPACE / "workspace.json").read_text())
    for sub in ("data", "models"):
        if not (directory / sub).exists():
            shutil.copytree(WORKSPACE / sub, directory / sub)
    results = []
    for k in range(ensemble_size(spec)):
        path = directory / f"member_{k}_{part}.json"
        path.write_text(json.dumps(partial_member_spec(spec, k, part)))
        results.append(measure(path))
    return results


def compare(backend: str = "jax") -> dict[str, Any]:
    """All measurements, the member spread, and whether exact and trained agree within it."""
    pyhf.set_backend(backend)
    exact = measure(WORKSPACE / "exact.json")
    trained = measure(WORKSPACE / "workspace.json")
    with tempfile.TemporaryDirectory() as tmp:
        members = member_results(Path(tmp))
        partial = {part: member_results(Path(tmp), part) for part in ("samples", "ratiosys")}
    keys = ("mu_hat", "lower", "upper")
    spread = {key: float(np.std([m[key] for m in members], ddof=1)) for key in keys}
    # the ensemble averages K members: its own spread is the members' std / sqrt(K)
    of_mean = {key: value / np.sqrt(len(members)) for key, value in spread.items()}
    agree = {key: abs(exact[key] - trained[key]) <= of_mean[key] for key in keys}
    return {"exact": exact, "trained": trained, "members": members, "spread": spread,
            "spread_of_mean": of_mean, "agree": agree, "partial": partial}


def main() -> int:
    result = compare()
    print("off-shell example, observed data (968 events): 68.27% intervals on mu")
    print(f"{'ratios':<26} {'mu_hat':>7} {'lower':>7} {'upper':>7} {'k_factor':>8}")
    rows = [("exact", result["exact"]), ("trained ensemble (mean)", result["trained"])]
    rows += [(f"member {k}", m) for k, m in enumerate(result["members"])]
    for name, r in rows:
        print(f"{name:<26} {r['mu_hat']:7.3f} {r['lower']:7.3f} {r['upper']:7.3f} {r['k_factor']:8.3f}")
    spread, exact, trained = result["spread"], result["exact"], result["trained"]
    print(f"{'member spread (std)':<26} " + " ".join(f"{spread[k]:7.3f}" for k in ("mu_hat", "lower", "upper")))
    of_mean = result["spread_of_mean"]
    print(f"{'spread of the mean (/√K)':<26} " + " ".join(f"{of_mean[k]:7.3f}" for k in ("mu_hat", "lower", "upper")))
    print(f"{'|exact - trained|':<26} " + " ".join(f"{abs(exact[k] - trained[k]):7.3f}"
                                                  for k in ("mu_hat", "lower", "upper")))
    for part, what in (("samples", "sample ratios"), ("ratiosys", "K-factor shape ratios")):
        print(f"member k for the {what} only (the rest: ensemble means)")
        for k, r in enumerate(result["partial"][part]):
            print(f"{'  member ' + str(k):<26} {r['mu_hat']:7.3f} {r['lower']:7.3f} {r['upper']:7.3f} "
                  f"{r['k_factor']:8.3f}")
        values = [r["mu_hat"] for r in result["partial"][part]]
        print(f"{'  spread of mu_hat (std)':<26} {np.std(values, ddof=1):7.3f}")
    ok = all(result["agree"].values())
    print("exact and trained agree within the ensemble spread:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
