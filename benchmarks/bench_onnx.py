"""Overhead of ``evaluate_ratio`` over a bare onnxruntime ``session.run`` loop.

A small MLP-like ratio network (4 -> 64 -> 64 -> 1, tanh, float32, random weights) is
evaluated on 1e6 events twice in the same run: by ``evaluate_ratio`` (cache disabled:
file read and digest, session creation, input checks, float64 -> float32 casts per
batch, output checks and the logit -> ratio transform included) and by a bare loop of
``session.run`` over the same batches, already cast to float32. Target: overhead <= 10%.

    python benchmarks/bench_onnx.py [--events 1000000] [--repeats 9] [--batch 65536]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ratiofactory.events import EventSet
from ratiofactory.onnx_eval import DEFAULT_BATCH_SIZE, evaluate_ratio

OBSERVABLES = ("m4l", "cos_theta", "phi", "m12")


def mlp_model(widths: tuple[int, ...] = (4, 64, 64, 1), seed: int = 1) -> bytes:
    """A dense tanh network in float32 with random weights; output [N, 1] (a logit)."""
    rng = np.random.default_rng(seed)
    nodes, initializers, current = [], [], "x"
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        weight = rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)).astype(np.float32)
        bias = rng.normal(0, 0.1, n_out).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"W{layer}"),
            numpy_helper.from_array(bias, f"b{layer}"),
        ]
        nodes.append(helper.make_node("Gemm", [current, f"W{layer}", f"b{layer}"], [f"h{layer}"]))
        current = f"h{layer}"
        if layer < len(widths) - 2:
            nodes.append(helper.make_node("Tanh", [current], [f"a{layer}"]))
            current = f"a{layer}"
    nodes.append(helper.make_node("Identity", [current], ["logit"]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", widths[0]])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def time_bare(content: bytes, values: np.ndarray, batch: int) -> float:
    """Seconds for the bare loop; the session is created outside the timing."""
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    batches = [values[i : i + batch].astype(np.float32) for i in range(0, len(values), batch)]
    start = time.perf_counter()
    for chunk in batches:
        session.run(["logit"], {"x": chunk})
    return time.perf_counter() - start


def time_evaluate(base: Path, events: EventSet, batch: int) -> float:
    spec = {"onnx": {"path": "mlp.onnx"}, "output": "logit"}
    start = time.perf_counter()
    evaluate_ratio(spec, events, base, pointer="/bench", cache=None, batch_size=batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()

    content = mlp_model()
    values = np.random.default_rng(0).normal(size=(args.events, len(OBSERVABLES)))
    events = EventSet(values, None, OBSERVABLES, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "mlp.onnx").write_bytes(content)
        time_bare(content, values, args.batch), time_evaluate(base, events, args.batch)  # warm-up
        bare, ours = [], []
        for _ in range(args.repeats):  # interleaved, so drifts of the machine hit both
            bare.append(time_bare(content, values, args.batch))
            ours.append(time_evaluate(base, events, args.batch))
    print(
        f"ONNX ratio evaluation, MLP 4-64-64-1 tanh float32, {args.events:.0e} events, "
        f"batch {args.batch}, onnxruntime {ort.__version__}, {args.repeats} interleaved runs"
    )
    for label, pick in (("median", statistics.median), ("best", min)):
        b, e = pick(bare), pick(ours)
        print(
            f"  {label:6s}: bare session.run loop {b * 1e3:7.1f} ms "
            f"({args.events / b / 1e6:.2f} M events/s), evaluate_ratio {e * 1e3:7.1f} ms "
            f"({args.events / e / 1e6:.2f} M events/s), overhead {100 * (e / b - 1):+5.1f} % "
            "(target <= +10 %)"
        )


if __name__ == "__main__":
    main()
