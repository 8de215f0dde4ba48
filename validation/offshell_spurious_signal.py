"""The spurious-signal nuisance parameter on the off-shell example.

Fits the observed data with the trained ensemble workspace without (``workspace.json``)
and with (``with_spurious_signal.json``, written by ``ratiofactory spurious-signal``)
the ratio-model uncertainty, prints μ̂ and the 68.27 % interval of each, how much the
interval widens, and the pull, constraint and impact on μ of α_ss.

    python validation/offshell_spurious_signal.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyhf

import ratiofactory
from ratiofactory import infer

WORKSPACE = Path(__file__).resolve().parents[1] / "examples" / "offshell" / "workspace"
SCAN = np.linspace(0.0, 4.0, 41)


def measure(path: Path) -> dict[str, float]:
    ws = ratiofactory.Workspace.load(path)
    model = ws.model()
    data = ws.data(model)
    ci = infer.interval(infer.profile_scan(model, data, SCAN))
    return {"mu_hat": ci.bestfit, "lower": ci.intervals[0][0], "upper": ci.intervals[-1][1]}


def main() -> int:
    pyhf.set_backend("jax", precision="64b")
    rows = {name: measure(WORKSPACE / f) for name, f in
            (("exact", "exact.json"), ("trained", "workspace.json"),
             ("trained + spurious signal", "with_spurious_signal.json"))}
    print(f"{'ratios':<28} {'mu_hat':>7} {'lower':>7} {'upper':>7} {'width':>7}")
    for name, r in rows.items():
        print(f"{name:<28} {r['mu_hat']:7.3f} {r['lower']:7.3f} {r['upper']:7.3f} {r['upper'] - r['lower']:7.3f}")
    plain, with_ss = rows["trained"], rows["trained + spurious signal"]
    print(f"interval widening: lower {with_ss['lower'] - plain['lower']:+.3f}, "
          f"upper {with_ss['upper'] - plain['upper']:+.3f}, width x "
          f"{(with_ss['upper'] - with_ss['lower']) / (plain['upper'] - plain['lower']):.3f}")
    ws = ratiofactory.Workspace.load(WORKSPACE / "with_spurious_signal.json")
    model = ws.model()
    result = infer.impacts(model, ws.data(model))
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
