"""Parameter tensors that break their operator's rules are refused, as ONNX Runtime refuses them.

Each case is a one-node model whose parameter tensor (a bias, a slope, batch-norm statistics, a
normalisation scale, Clip bounds, Resize scales, convolution weights) has a shape the operator
does not define. ONNX Runtime (the independent reference) refuses most of them, at session
creation or at its first run; bricklab must refuse each at load with an error naming the node
(and the parameter, where bricklab's own check is the one that fires), never compute past the end
of the tensor. A Conv or ConvTranspose bias of the wrong length is the exception: ONNX says B has
one entry per output channel, and ONNX Runtime 1.x computes anyway (channels past the bias's end
get whatever lies there, or nothing); bricklab refuses with the reason, and the test records that
ONNX Runtime still accepts it. Each invalid case has a valid twin that both accept and compute
alike, so a test passing by refusing everything is caught.
"""
import numpy as np
import onnxruntime as ort
import pytest

import bricklab
from onnx import helper, numpy_helper, TensorProto

F32 = np.float32


def model(op, x_shape, params, attrs=None, opset=17, extra_inputs=()):
    """One `op` node named 'bad': input x, then the parameters (name -> array, '' for an omitted one)."""
    inputs = ["x"] + [name for name, _ in params] + list(extra_inputs)
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="bad", **(attrs or {}))], "validation",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in params if n])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def ones(*shape):
    return np.full(shape, 0.5, F32)


X4 = (1, 4, 6, 6)
# (id, invalid model, what the error must name ('' when ONNX's own shape inference refuses it
# first, naming only the node), whether ONNX Runtime refuses it too, valid twin)
CASES = [
    ("conv-bias", model("Conv", X4, [("w", ones(3, 4, 3, 3)), ("bias", ones(2))]), "bias", False,
     model("Conv", X4, [("w", ones(3, 4, 3, 3)), ("bias", ones(3))])),
    ("conv-input-channels", model("Conv", X4, [("w", ones(4, 2, 3, 3))]), "channels", True,
     model("Conv", X4, [("w", ones(4, 2, 3, 3))], {"group": 2})),
    ("conv-transpose-bias", model("ConvTranspose", X4, [("w", ones(4, 2, 3, 3)), ("bias", ones(3))]), "bias", False,
     model("ConvTranspose", X4, [("w", ones(4, 2, 3, 3)), ("bias", ones(2))])),
    ("prelu-slope", model("PRelu", X4, [("slope", ones(3, 1, 1))]), "slope", True,
     model("PRelu", X4, [("slope", ones(4, 1, 1))])),
    ("batchnorm-variance", model("BatchNormalization", X4, [("s", ones(4)), ("b", ones(4)), ("m", ones(4)), ("v", ones(5))]),
     "", True, model("BatchNormalization", X4, [("s", ones(4)), ("b", ones(4)), ("m", ones(4)), ("v", ones(4))])),
    ("instancenorm-scale", model("InstanceNormalization", X4, [("s", ones(3)), ("b", ones(4))]), "scale", True,
     model("InstanceNormalization", X4, [("s", ones(4)), ("b", ones(4))])),
    ("layernorm-scale", model("LayerNormalization", (2, 5, 8), [("s", ones(7)), ("b", ones(8))]), "scale", True,
     model("LayerNormalization", (2, 5, 8), [("s", ones(8)), ("b", ones(8))])),
    ("clip-min-not-scalar", model("Clip", X4, [("lo", np.array([-1.0, 0.0], F32)), ("hi", np.array(1.0, F32))]), "min", True,
     model("Clip", X4, [("lo", np.array(-1.0, F32)), ("hi", np.array(1.0, F32))])),
    ("resize-scales-length", model("Resize", X4, [("", None), ("scales", np.array([1.0, 2.0, 2.0], F32))], {"mode": "nearest"}),
     "scales", True,
     model("Resize", X4, [("", None), ("scales", np.array([1.0, 1.0, 2.0, 2.0], F32))], {"mode": "nearest"})),
]


def ort_refuses(m, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
    except Exception:  # noqa: BLE001 - ORT raises several exception types
        return True
    return False


def save(m, path):
    path.write_bytes(m.SerializeToString())
    return str(path)


@pytest.mark.parametrize("bad, what, ort_strict, good", [pytest.param(b, w, o, g, id=i) for i, b, w, o, g in CASES])
def test_refused_like_onnxruntime(bad, what, ort_strict, good, tmp_path):
    shape = [d.dim_value for d in bad.graph.input[0].type.tensor_type.shape.dim]
    feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(F32)}
    # Where ONNX Runtime is strict, the case must be one it refuses (else it tests nothing); where
    # it is lax, the test notices the day it starts refusing.
    assert ort_refuses(bad, feeds) == ort_strict, "ONNX Runtime's verdict on the invalid model changed"
    with pytest.raises(bricklab.Error) as err:
        bricklab.Session(save(bad, tmp_path / "bad.onnx")).run(feeds)
    message = str(err.value)
    assert "bad" in message and what in message, f"the error does not name the node and the {what or 'problem'}: {message}"

    assert not ort_refuses(good, feeds)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(good.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = bricklab.Session(save(good, tmp_path / "good.onnx")).run(feeds)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
