"""Run: python validation/coupled_histo_bruteforce.py (about 1 min). Result 2026-12-01: q~_1 = 1.914605,
q~_1,A = 3.983347, CLs+b = 0.083226, CLb = 0.729777, CLs = 0.114043 (pyhf 0.7.6 hypotest, local fits: 0.27783).
"""
"""Brute-force CLs for pyhf's 2bin_2channel_coupledhisto: global minima of -2 ln L (pyhf's own
numpy logpdf) from a fine grid over (alpha, mu) + polishing, asymptotic q~_mu formulas."""
import sys

import numpy as np
import pyhf
import scipy.optimize
import scipy.stats

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests"))
from test_infer_global import COUPLED, COUPLED_DATA

pyhf.set_backend("numpy", precision="64b")
model = pyhf.Model(COUPLED, poi_name="mu", validate=False)
data = np.array([v for c in model.config.channels for v in COUPLED_DATA[c]] + model.config.auxdata)
ia, im = model.config.par_order.index("coupled_histosys"), model.config.poi_index
bounds = model.config.suggested_bounds()
print("par_order", model.config.par_order, "bounds", bounds)

def t(a, m, d):
    x = np.zeros(2); x[ia] = a; x[im] = m
    v = -2.0 * float(model.logpdf(x, d)[0])
    return v if np.isfinite(v) else np.inf

A = np.linspace(*bounds[ia], 401)           # step 0.025
def gmin(d, mu=None):
    M = np.linspace(*bounds[im], 401) if mu is None else np.array([mu])
    AA, MM = np.meshgrid(A, M, indexing="ij")
    X = np.zeros((AA.size, 2)); X[:, ia] = AA.ravel(); X[:, im] = MM.ravel()
    mb = pyhf.Model(COUPLED, poi_name="mu", validate=False, batch_size=AA.size)
    G = (-2.0 * np.asarray(mb.logpdf(X, d))).reshape(AA.shape)
    G[~np.isfinite(G)] = np.inf
    # local minima of the grid (incl. edges), polished with bounded L-BFGS-B / Nelder-Mead
    mins = []
    for i in range(len(A)):
        for j in range(len(M)):
            nb = G[max(i-1,0):i+2, max(j-1,0):j+2]
            if np.isfinite(G[i, j]) and G[i, j] <= nb.min():
                mins.append((A[i], M[j]))
    res = []
    for a0, m0 in mins:
        if mu is None:
            r = scipy.optimize.minimize(lambda x: t(x[0], x[1], d), [a0, m0], method="L-BFGS-B",
                                        bounds=[bounds[ia], bounds[im]], options={"ftol": 1e-15, "gtol": 1e-10})
            res.append((r.fun, r.x[0], r.x[1]))
        else:
            r = scipy.optimize.minimize_scalar(lambda a: t(a, mu, d), bounds=(max(a0-0.05, bounds[ia][0]), min(a0+0.05, bounds[ia][1])),
                                               method="bounded", options={"xatol": 1e-10})
            res.append((r.fun, r.x, mu))
    res.sort()
    return res, G.min()

def describe(tag, res, gridmin):
    print(f"{tag}: grid min {gridmin:.6f}; polished minima (2lnL, alpha, mu):")
    for r in res[:4]:
        print(f"   {r[0]:.6f}  {r[1]:+.5f}  {r[2]:.5f}")

mu_test = 1.0
free, g1 = gmin(data); describe("free fit (observed)", free, g1)
cond, g2 = gmin(data, mu_test); describe("mu=1 fit (observed)", cond, g2)
qmu = max(cond[0][0] - free[0][0], 0.0) if free[0][2] <= mu_test else 0.0
# Asimov data at mu=0 with NPs from the global conditional fit to observed data at mu=0
c0, g3 = gmin(data, 0.0); describe("mu=0 fit (observed)", c0, g3)
x = np.zeros(2); x[ia] = c0[0][1]; x[im] = 0.0
asimov = np.asarray(model.expected_data(x))
print("asimov data", asimov)
fa, g4 = gmin(asimov); describe("free fit (asimov)", fa, g4)
ca, g5 = gmin(asimov, mu_test); describe("mu=1 fit (asimov)", ca, g5)
qmuA = max(ca[0][0] - fa[0][0], 0.0)
sq, sqA = np.sqrt(qmu), np.sqrt(qmuA)
Phi = scipy.stats.norm.cdf
if sq <= sqA:
    clsb, clb = 1 - Phi(sq), 1 - Phi(sq - sqA)
else:
    clsb, clb = 1 - Phi((qmu + qmuA) / (2 * sqA)), 1 - Phi((qmu - qmuA) / (2 * sqA))
print(f"q~mu = {qmu:.6f}  q~mu,A = {qmuA:.6f}  CLs+b = {clsb:.6f}  CLb = {clb:.6f}  CLs = {clsb/clb:.6f}")
# pyhf's own hypotest for comparison (local fits)
for opt in ["scipy", "minuit"]:
    try:
        pyhf.set_backend("numpy", opt)
        print(opt, "pyhf hypotest CLs", float(pyhf.infer.hypotest(mu_test, data, model, test_stat="qtilde")))
    except Exception as e:
        print(opt, "failed", e)
