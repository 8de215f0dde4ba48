"""ONNX graphs of the exact density ratios of the off-shell toy (for closure tests).

Two kinds of graph, both with one input "x" of type double [N, 2] = (m4l, cos θ*) and one
output "ratio" double [N]:

* ``table_ratio_model``: r(x) = (U_n + V_n c²) / (U_d + V_d c²) with (U, V) tables on a
  grid uniform in ln m4l, interpolated linearly in ln m4l (Gather at the two neighbouring
  nodes) and clamped at the grid ends, exactly as ``physics.interpolate_table``;
* ``tilt_model``: g(x) = 1 + slope · (m4l − pivot), the K-factor shape ratio.

>>> import onnxruntime as ort
>>> session = ort.InferenceSession(tilt_model(0.5, 2.0).SerializeToString())
>>> session.run(None, {"x": np.array([[3.0, 0.1], [1.0, -0.2]])})[0]
array([1.5, 0.5])
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
INPUT, OUTPUT = "x", "ratio"


def _constant(name: str, value: np.ndarray | float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _io() -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    x = helper.make_tensor_value_info(INPUT, TensorProto.DOUBLE, ["N", 2])
    y = helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, ["N"])
    return x, y


def _finish(nodes: list, inits: list, name: str) -> onnx.ModelProto:
    x, y = _io()
    graph = helper.make_graph(nodes, name, [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ratiofactory-examples-offshell")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _columns() -> tuple[list, list]:
    """Nodes splitting x into m4l [N] and c² [N]."""
    inits = [_constant("col0", np.int64(0)), _constant("col1", np.int64(1))]
    nodes = [
        helper.make_node("Gather", [INPUT, "col0"], ["m4l"], axis=1),
        helper.make_node("Gather", [INPUT, "col1"], ["cos"], axis=1),
        helper.make_node("Mul", ["cos", "cos"], ["cos2"]),
    ]
    return nodes, inits


def table_ratio_model(u_grid: np.ndarray, numerator: np.ndarray, denominator: np.ndarray,
                      name: str = "exact_ratio") -> onnx.ModelProto:
    """Exact ratio of two (U, V) tables (each shape (2, n)) on the ln m4l grid ``u_grid``."""
    n = u_grid.size
    step = (u_grid[-1] - u_grid[0]) / (n - 1)
    if not np.allclose(np.diff(u_grid), step, rtol=1e-9, atol=0):
        raise ValueError("u_grid must be uniform")
    table = np.ascontiguousarray(np.vstack([numerator, denominator]).T, dtype=np.float64)
    nodes, inits = _columns()
    inits += [
        _constant("table", table),  # (n, 4): U_num, V_num, U_den, V_den
        _constant("u0", np.float64(u_grid[0])), _constant("step", np.float64(step)),
        _constant("zero", np.float64(0.0)), _constant("last", np.float64(n - 1)),
        _constant("second_last", np.float64(n - 2)), _constant("one_i", np.int64(1)),
    ]
    nodes += [
        helper.make_node("Log", ["m4l"], ["u"]),
        helper.make_node("Sub", ["u", "u0"], ["du"]),
        helper.make_node("Div", ["du", "step"], ["t_raw"]),
        helper.make_node("Clip", ["t_raw", "zero", "last"], ["t"]),
        helper.make_node("Floor", ["t"], ["k_floor"]),
        helper.make_node("Min", ["k_floor", "second_last"], ["k"]),
        helper.make_node("Sub", ["t", "k"], ["frac"]),
        helper.make_node("Cast", ["k"], ["k_lo"], to=TensorProto.INT64),
        helper.make_node("Add", ["k_lo", "one_i"], ["k_hi"]),
        helper.make_node("Gather", ["table", "k_lo"], ["rows_lo"], axis=0),  # (N, 4)
        helper.make_node("Gather", ["table", "k_hi"], ["rows_hi"], axis=0),
        helper.make_node("Sub", ["rows_hi", "rows_lo"], ["rows_diff"]),
        helper.make_node("Unsqueeze", ["frac", "one_i"], ["frac_col"]),
        helper.make_node("Mul", ["rows_diff", "frac_col"], ["rows_step"]),
        helper.make_node("Add", ["rows_lo", "rows_step"], ["rows"]),
    ]
    for i, part in enumerate(("u_num", "v_num", "u_den", "v_den")):
        inits.append(_constant(f"i_{part}", np.int64(i)))
        nodes.append(helper.make_node("Gather", ["rows", f"i_{part}"], [part], axis=1))
    nodes += [
        helper.make_node("Mul", ["v_num", "cos2"], ["v_num_c2"]),
        helper.make_node("Add", ["u_num", "v_num_c2"], ["num"]),
        helper.make_node("Mul", ["v_den", "cos2"], ["v_den_c2"]),
        helper.make_node("Add", ["u_den", "v_den_c2"], ["den"]),
        helper.make_node("Div", ["num", "den"], [OUTPUT]),
    ]
    return _finish(nodes, inits, name)


def tilt_model(slope: float, pivot: float, name: str = "k_factor_tilt") -> onnx.ModelProto:
    """g(x) = 1 + slope · (m4l − pivot) as an ONNX graph."""
    nodes, inits = _columns()
    inits += [_constant("pivot", np.float64(pivot)), _constant("slope", np.float64(slope)),
              _constant("one", np.float64(1.0))]
    nodes += [
        helper.make_node("Sub", ["m4l", "pivot"], ["shift"]),
        helper.make_node("Mul", ["shift", "slope"], ["tilt"]),
        helper.make_node("Add", ["one", "tilt"], [OUTPUT]),
    ]
    return _finish(nodes, inits, name)


def exact_models(model) -> dict[str, onnx.ModelProto]:
    """All exact-ratio graphs of the example, keyed by ratio name.

    S, B, SBI: p_j / p_ref; S_kf_up/dn: g^±(m4l); SBI_kf_up/dn: p_SBI(x|±1) / p_SBI(x).
    """
    t, u = model.tables, model.u_grid
    out = {k: table_ratio_model(u, t[k], t["ref"], name=f"exact_{k}")
           for k in ("S", "B", "SBI")}
    for direction, tag in ((1, "up"), (-1, "dn")):
        slope = direction * model.par.k_factor_tilt / 1000.0
        out[f"S_kf_{tag}"] = tilt_model(slope, model.k_factor_mean_mass,
                                        name=f"exact_S_kf_{tag}")
        out[f"SBI_kf_{tag}"] = table_ratio_model(u, t[f"SBI_kf_{tag}"], t["SBI"],
                                                 name=f"exact_SBI_kf_{tag}")
    return out


def exact_ratio_numpy(model, name: str, x: np.ndarray) -> np.ndarray:
    """The same ratios in numpy (reference for the ONNX graphs)."""
    if name.startswith("S_kf_"):
        return model.k_factor_tilt(x[:, 0], 1 if name.endswith("up") else -1)
    if name.startswith("SBI_kf_"):
        return model.ratio(name, x, denominator="SBI")
    return model.ratio(name, x)
