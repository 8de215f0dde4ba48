"""CARL training of the off-shell density ratios (PyTorch, CPU) and export to ONNX.

For each ratio r = p_num / p_den a small MLP classifier is trained with balanced classes
(numerator events labelled 1, denominator events 0, weighted binary cross-entropy), so
that s(x) = r / (1 + r) and its logit is ln r. Each ratio is an ensemble of members
trained on Poisson(1)-bootstrapped weights.

Sample ratios r_j = p_j / p_ref are CHAINED through the background: one classifier learns
p_B / p_ref, others learn p_S / p_B and p_SBI / p_B, and the exported model of S (SBI)
member k returns ln r = logit_{S/B} + logit_{B/ref} of member k (output kind "logit").
The error of the B/ref network then multiplies every term of s(x; θ) alike and cancels
in likelihood ratios; what the fit of μ needs is the small difference between p_SBI and
p_B, which a classifier of SBI against B learns far more precisely than two separate
classifiers against p_ref (their independent errors of a few per cent would be amplified
by ν_B / ν_S ≈ 30). The signal K-factor shape ratios g^± = p(x|α=±1) / p(x) of S and SBI
are classifiers of the same simulated events with and without the K-factor weights,
exported as probability models. Every exported ONNX model takes the raw observables
(m4l, cos θ*) as float32 [N, 2] ("x") and returns float32 [N]; the inputs are transformed
and standardised inside the graph.

Run after generate.py: ``python examples/offshell/train.py`` (about 8 minutes on 2 idle cores).
It writes ``_generated/models/<ratio>_<k>.onnx`` and ``diagnostics/training.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from exact_onnx import exact_ratio_numpy
from generate import GENERATED, load_weighted_events
from physics import offshell_model
from torch import nn

HERE = Path(__file__).resolve().parent
DIAGNOSTICS = HERE / "diagnostics"
# training tasks: ratio name → (numerator sample, denominator sample); the K-factor shape
# ratios reweight the events of their sample (numerator = denominator events × g^±)
TASKS = {
    "B": ("B", "ref"),
    "S": ("S", "B"),
    "SBI": ("SBI", "B"),
    "S_kf_up": ("S", "S"), "S_kf_dn": ("S", "S"),
    "SBI_kf_up": ("SBI", "SBI"), "SBI_kf_dn": ("SBI", "SBI"),
}
CHAINED = ("S", "SBI")  # exported as p_j/p_B × p_B/p_ref: the B network is shared


@dataclass
class Task:
    """Training data of one ratio: numerator and denominator events with weights."""

    name: str
    x_num: np.ndarray
    w_num: np.ndarray
    x_den: np.ndarray
    w_den: np.ndarray
    same_events: bool  # numerator = reweighted denominator events (shape systematics)


def make_task(name: str, samples: dict[str, tuple[np.ndarray, np.ndarray]],
              n_max: int) -> Task:
    """Numerator/denominator events and weights of the classifier for ratio ``name``."""
    numerator, denominator = TASKS[name]
    if "_kf_" not in name:
        (x_num, w_num), (x_den, w_den) = samples[numerator], samples[denominator]
        return Task(name, x_num[:n_max], w_num[:n_max], x_den[:n_max], w_den[:n_max], False)
    x, w = samples[numerator]
    x, w = x[:n_max], w[:n_max]
    k_weight = exact_ratio_numpy(offshell_model(), name, x)  # K-factor event weights
    return Task(name, x, w * k_weight, x, w, True)


def task_exact_ratio(name: str, x: np.ndarray) -> np.ndarray:
    """Exact ratio that the classifier of task ``name`` estimates."""
    model = offshell_model()
    if name in CHAINED:
        return model.ratio(name, x, denominator="B")
    return exact_ratio_numpy(model, name, x)


class RatioClassifier(nn.Module):
    """MLP on standardised (ln m4l, cos θ*); forward returns the logit."""

    def __init__(self, shift: np.ndarray, scale: np.ndarray, hidden: int, layers: int):
        super().__init__()
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        dims = [2] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.stack([torch.log(x[:, 0]), x[:, 1]], dim=1)
        return (z - self.shift) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.features(x)).squeeze(-1)


class ProbabilityOutput(nn.Module):
    """Exported shape-ratio model: raw observables in, classifier probability s out."""

    def __init__(self, classifier: RatioClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(x))


class ChainedLogit(nn.Module):
    """Exported sample-ratio model: ln r = Σ logits of a chain p_j/p_B · p_B/p_ref."""

    def __init__(self, *classifiers: RatioClassifier):
        super().__init__()
        self.classifiers = nn.ModuleList(classifiers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(c(x) for c in self.classifiers)


def split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, validation) index sets."""
    order = rng.permutation(n)
    cut = int(n * (1 - fraction))
    return order[:cut], order[cut:]


def balanced(w_num: np.ndarray, w_den: np.ndarray) -> np.ndarray:
    """Concatenated weights rescaled so each class has total weight = its event count."""
    n = len(w_num) + len(w_den)
    return np.concatenate([w_num / w_num.sum(), w_den / w_den.sum()]) * n / 2


def stacked(task: Task, idx_num: np.ndarray, idx_den: np.ndarray, boot_num: np.ndarray,
            boot_den: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, label, weight) tensors of both classes with balanced bootstrap weights."""
    x = np.concatenate([task.x_num[idx_num], task.x_den[idx_den]])
    y = np.concatenate([np.ones(len(idx_num)), np.zeros(len(idx_den))])
    w = balanced(task.w_num[idx_num] * boot_num, task.w_den[idx_den] * boot_den)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)
    return as_t(x), as_t(y), as_t(w)


def weighted_bce(logit: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    loss = nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none")
    return (w * loss).sum() / w.sum()


def train_member(task: Task, train_idx, valid_idx, seed: int, cfg: argparse.Namespace,
                 epochs: int):
    """One ensemble member: returns the trained classifier and its loss history."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    (tr_num, tr_den), (va_num, va_den) = train_idx, valid_idx
    boot_num = rng.poisson(1.0, len(tr_num)).astype(float)
    boot_den = boot_num if task.same_events else rng.poisson(1.0, len(tr_den)).astype(float)
    x, y, w = stacked(task, tr_num, tr_den, boot_num, boot_den)
    xv, yv, wv = stacked(task, va_num, va_den, np.ones(len(va_num)), np.ones(len(va_den)))
    z = np.column_stack([np.log(x[:, 0].numpy()), x[:, 1].numpy()])
    net = RatioClassifier(z.mean(0), z.std(0), cfg.hidden, cfg.layers)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history, best = {"train": [], "valid": []}, (np.inf, None)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x))
        total = 0.0
        for start in range(0, len(x), cfg.batch):
            b = order[start:start + cfg.batch]
            opt.zero_grad()
            loss = weighted_bce(net(x[b]), y[b], w[b])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        sched.step()
        net.eval()
        with torch.no_grad():
            valid = float(weighted_bce(net(xv), yv, wv))
        history["train"].append(total / len(x))
        history["valid"].append(valid)
        if valid < best[0]:
            best = (valid, {k: v.clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[1])
    net.eval()
    return net, history


def export_onnx(module: nn.Module, path: Path, output: str) -> None:
    """Write an ONNX model: input "x" float32 [N, 2] (raw m4l, cos θ*), output [N]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.full((4, 2), 300.0),), str(path),
                          dynamo=False, input_names=["x"], output_names=[output],
                          opset_version=17, dynamic_axes={"x": {0: "N"}, output: {0: "N"}})


def export_member(name: str, k: int, net: RatioClassifier, b_net: RatioClassifier | None,
                  out: Path) -> None:
    """Sample ratios as logit (ln r) models, shape ratios as probability models."""
    path = out / f"{name}_{k}.onnx"
    if "_kf_" in name:
        export_onnx(ProbabilityOutput(net), path, "s")
    elif name in CHAINED:
        export_onnx(ChainedLogit(net, b_net), path, "log_ratio")
    else:
        export_onnx(ChainedLogit(net), path, "log_ratio")


def calibration_curve(s: np.ndarray, y: np.ndarray, w: np.ndarray, bins: int = 20) -> dict:
    """Quantile bins of the predicted s: mean prediction vs weighted class-1 fraction."""
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    rows = {"predicted": [], "observed": [], "error": []}
    for b in range(bins):
        sel = which == b
        ws, w1 = w[sel].sum(), (w[sel] * y[sel]).sum()
        frac = w1 / ws
        n_eff = ws**2 / (w[sel] ** 2).sum()
        rows["predicted"].append(float(np.average(s[sel], weights=w[sel])))
        rows["observed"].append(float(frac))
        rows["error"].append(float(np.sqrt(frac * (1 - frac) / n_eff)))
    pulls = (np.array(rows["observed"]) - rows["predicted"]) / np.array(rows["error"])
    rows["chi2"] = float(np.sum(pulls**2))
    rows["max_abs_deviation"] = float(np.max(np.abs(np.array(rows["observed"])
                                                    - rows["predicted"])))
    return rows


def predict_ratio(nets: list[RatioClassifier], x: np.ndarray) -> np.ndarray:
    """(K, N) member ratios s/(1−s) = exp(logit)."""
    with torch.no_grad():
        xt = torch.tensor(x, dtype=torch.float32)
        return np.stack([np.exp(net(xt).double().numpy()) for net in nets])


def diagnose(task: Task, nets, valid_idx, histories) -> dict:
    """Calibration, closure against the exact ratio and normalisation on validation data."""
    va_num, va_den = valid_idx
    x = np.concatenate([task.x_num[va_num], task.x_den[va_den]])
    y = np.concatenate([np.ones(len(va_num)), np.zeros(len(va_den))])
    w = balanced(task.w_num[va_num], task.w_den[va_den])
    members = predict_ratio(nets, x)
    r_hat = members.mean(0)
    s_hat = r_hat / (1 + r_hat)
    r_exact = task_exact_ratio(task.name, x)
    den = y == 0
    rel_all = r_hat / r_exact - 1
    rel = rel_all[den]
    spread = members[:, den].std(0, ddof=min(1, len(nets) - 1)) / r_hat[den]
    s_exact = r_exact / (1 + r_exact)
    bce = lambda s: float(np.sum(w * -(y * np.log(s) + (1 - y) * np.log(1 - s))) / w.sum())
    mean_norm = float(np.sum(r_hat[den] * w[den]) / w[den].sum())
    return {
        "n_train_per_class": len(task.x_num) - len(va_num),
        "n_valid_per_class": len(va_num),
        "calibration": calibration_curve(s_hat, y, w),
        "closure_vs_exact": {
            "mean_rel_deviation": float(np.average(rel, weights=w[den])),
            "rms_rel_deviation": float(np.sqrt(np.average(rel**2, weights=w[den]))),
            "q99_abs_rel_deviation": float(np.quantile(np.abs(rel), 0.99)),
            "rms_rel_deviation_on_numerator": float(np.sqrt(np.average(
                rel_all[~den] ** 2, weights=w[~den]))),
            "rms_ensemble_rel_spread": float(np.sqrt(np.mean(spread**2))),
        },
        "normalisation": {"mean_ratio_on_denominator": mean_norm,
                          "stat_error": float(np.sqrt(np.sum((w[den] * (r_hat[den] - mean_norm))
                                                             ** 2)) / w[den].sum())},
        "valid_loss": {"ensemble": bce(s_hat), "exact_ratio": bce(s_exact)},
        "loss_history": histories,
    }


def load_samples(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Training events and weights: name → (x, w)."""
    return {k: load_weighted_events(directory / f"train_{k}.npz")
            for k in ("S", "B", "SBI", "ref")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=GENERATED)
    parser.add_argument("--out", type=Path, default=GENERATED / "models")
    parser.add_argument("--diagnostics", type=Path, default=DIAGNOSTICS / "training.json")
    parser.add_argument("--ratios", nargs="*", default=list(TASKS),
                        help="B must come before (or already be trained for) S and SBI")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--n-events", type=int, default=1_000_000,
                        help="events per class for S, B, SBI (80 %% train, 20 %% validation)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-events-syst", type=int, default=400_000,
                        help="events per class for the K-factor shape ratios")
    parser.add_argument("--epochs-syst", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    cfg = parser.parse_args()
    torch.set_num_threads(cfg.threads)
    samples = load_samples(cfg.data)
    report = {"config": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(cfg).items()}, "ratios": {}}
    start_all = time.perf_counter()
    trained: dict[str, list[RatioClassifier]] = {}
    for name in cfg.ratios:
        start, i = time.perf_counter(), list(TASKS).index(name)
        is_syst = "_kf_" in name
        task = make_task(name, samples, cfg.n_events_syst if is_syst else cfg.n_events)
        epochs = cfg.epochs_syst if is_syst else cfg.epochs
        rng = np.random.default_rng(1000 + i)
        tr_num, va_num = split(len(task.x_num), 0.2, rng)
        tr_den, va_den = (tr_num, va_num) if task.same_events else split(len(task.x_den), 0.2, rng)
        nets, histories = [], []
        for k in range(cfg.members):
            net, history = train_member(task, (tr_num, tr_den), (va_num, va_den),
                                        seed=100 * i + k, cfg=cfg, epochs=epochs)
            b_net = trained["B"][k] if name in CHAINED else None
            export_member(name, k, net, b_net, cfg.out)
            nets.append(net)
            histories.append(history)
        trained[name] = nets
        report["ratios"][name] = diagnose(task, nets, (va_num, va_den), histories)
        report["ratios"][name]["training_seconds"] = time.perf_counter() - start
        summary = report["ratios"][name]
        print(f"{name:10s} {summary['training_seconds']:6.1f} s  calib chi2/20 = "
              f"{summary['calibration']['chi2']:.1f}  closure rms = "
              f"{summary['closure_vs_exact']['rms_rel_deviation']:.4f}  "
              f"E_den[r] = {summary['normalisation']['mean_ratio_on_denominator']:.4f}",
              flush=True)
    report["total_training_seconds"] = time.perf_counter() - start_all
    cfg.diagnostics.parent.mkdir(parents=True, exist_ok=True)
    cfg.diagnostics.write_text(json.dumps(report, indent=1) + "\n")
    print(f"total {report['total_training_seconds']:.0f} s; wrote {cfg.out} and "
          f"{cfg.diagnostics}")


if __name__ == "__main__":
    main()
