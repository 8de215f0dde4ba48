"""pyhf's CLs at mu_SIG = 1 for every signal point of the sbottom likelihood (RegionA):
the reference tests/test_patchsets.py compares ``ratiofactory grid`` with.

pyhf 0.7 (numpy backend, Minuit with strategy 2 and tolerance 1e-7 — 1e-5 where MIGRAD
cannot reach that EDM, q̃_μ, asymptotic) on
BkgOnly.json patched with each patch.sbottom_*.json of RegionA of
../shared/data/pyhf-ins1748602-probability-models.tar.gz. Writes
tests/data/sbottom_<REGION>_pyhf_cls.json: {"points": {patch name: [CLs observed, 5 expected
(−2σ … +2σ)]}, "optimizer": {patch name: the optimiser that converged}}.

    python validation/sbottom_patchset_pyhf.py [REGION]
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import jsonpatch
import pyhf

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = next(p for p in (ROOT.parent / "shared" / "data" / "pyhf-ins1748602-probability-models.tar.gz",
                           ROOT.parents[1] / "shared" / "data" / "pyhf-ins1748602-probability-models.tar.gz")
               if p.exists())


OPTIMIZERS = (("minuit strategy 2 tolerance 1e-7", lambda: pyhf.optimize.minuit_optimizer(tolerance=1e-7, strategy=2)),
              ("minuit strategy 2 tolerance 1e-5", lambda: pyhf.optimize.minuit_optimizer(tolerance=1e-5, strategy=2)),
              ("minuit strategy 1", lambda: pyhf.optimize.minuit_optimizer(strategy=1)),
              ("scipy", pyhf.optimize.scipy_optimizer))


def hypotest(workspace: pyhf.Workspace) -> tuple[list[float], str]:
    """CLs observed and expected at mu = 1, and the first optimiser (tightest first) that converges."""
    model = workspace.model()
    for label, optimizer in OPTIMIZERS:
        pyhf.set_backend("numpy", optimizer())
        try:
            cls, expected = pyhf.infer.hypotest(1.0, workspace.data(model), model, test_stat="qtilde",
                                                return_expected_set=True)
        except (pyhf.exceptions.FailedMinimization, AssertionError):
            print(f"  {label}: did not converge", flush=True)
            continue
        return [float(cls), *(float(e) for e in expected)], label
    raise RuntimeError("no optimiser converged")


def main(region: str = "RegionA") -> int:
    out = ROOT / "tests" / "data" / f"sbottom_{region}_pyhf_cls.json"
    results = json.loads(out.read_text()) if out.exists() else {"points": {}, "optimizer": {}}
    if "points" not in results:  # the first format: points only, all from the tightest optimiser
        results = {"points": results, "optimizer": {name: OPTIMIZERS[0][0] for name in results}}
    with tarfile.open(ARCHIVE) as tar:
        background = json.load(tar.extractfile(f"{region}/BkgOnly.json"))
        names = sorted(m.name for m in tar.getmembers() if m.name.startswith(f"{region}/patch."))
        for member in names:
            name = Path(member).name.removeprefix("patch.").removesuffix(".json")
            if name in results["points"]:
                continue
            spec = jsonpatch.apply_patch(background, json.load(tar.extractfile(member)))
            results["points"][name], results["optimizer"][name] = hypotest(pyhf.Workspace(spec))
            out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            print(name, results["points"][name], results["optimizer"][name], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
