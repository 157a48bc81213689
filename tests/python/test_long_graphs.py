"""Graphs far longer than exporters usually write: an activation chain longer than oneDNN's
post-op limit fuses into several steps (it used to fail with "could not append an elementwise
post-op"), and long chains compile and run, fused and unfused, matching ONNX Runtime.
Compile time against length is measured by benchmarks/bench_compile.py, not here."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import bricklab

OPS = ["Relu", "Sigmoid", "Tanh", "Abs", "LeakyRelu"]


def chain(path, length):
    nodes, prev = [], "x"
    for i in range(length):
        out = "y" if i == length - 1 else f"t{i}"
        op = OPS[i % len(OPS)]
        nodes.append(helper.make_node(op, [prev], [out], **({"alpha": 0.3} if op == "LeakyRelu" else {})))
        prev = out
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 5, 5])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


@pytest.mark.parametrize("length", [33, 34, 65, 500])
@pytest.mark.parametrize("fusion", [True, False])
def test_activation_chains_of_any_length(tmp_path, length, fusion):
    path = chain(tmp_path / f"chain{length}.onnx", length)
    x = np.random.default_rng(length).standard_normal((2, 8, 5, 5)).astype(np.float32)
    session = bricklab.Session(path, threads=1, fusion=fusion)
    got = session.run({"x": x})["y"]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    steps = len(session.profile())
    if fusion:  # at most 32 post-ops after each step's own operator
        assert -(-length // 33) <= steps < length
    else:
        assert steps == length


def test_a_long_chain_compiles_and_runs(tmp_path):
    path = chain(tmp_path / "chain20000.onnx", 20000)
    x = np.random.default_rng(0).standard_normal((2, 8, 5, 5)).astype(np.float32)
    for fusion in (True, False):
        y = bricklab.Session(path, threads=1, fusion=fusion).run({"x": x})["y"]
        assert y.shape == x.shape and np.isfinite(y).all()
