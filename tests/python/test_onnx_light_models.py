"""The ONNX Model Zoo classics that the onnx wheel ships (backend/test/data/light), as other
exporters than torchvision's wrote them: Caffe2's ResNet-50 with `Sum` residual adds, ShuffleNet's
channel shuffle, SqueezeNet's Dropout with a declared mask, LRN, old opsets.

Their weights are ConstantOfShape nodes (one value per tensor), so their outputs barely depend on
the input; the first test checks each loads, runs and gives ONNX's own expected output. The second
gives the weights random values (as initializers) and compares against ONNX Runtime, which checks
the numerics. Speed against ONNX Runtime: benchmarks/bench_onnx_zoo.py, docs/onnx-zoo-benchmark.md.
"""
import pathlib

import numpy as np
import onnx
import onnx.numpy_helper as nh
import onnxruntime as ort
import pytest

import bricklab

LIGHT = pathlib.Path(onnx.__file__).parent / "backend/test/data/light"
MODELS = sorted(p.stem[len("light_"):] for p in LIGHT.glob("light_*.onnx"))


def real_input(proto):
    weights = {t.name for t in proto.graph.initializer}
    inp = next(i for i in proto.graph.input if i.name not in weights)
    return inp.name, [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]


def test_the_wheel_ships_the_light_models():
    assert {"resnet50", "shufflenet", "squeezenet"} <= set(MODELS), f"light models found: {MODELS}"


@pytest.mark.parametrize("name", MODELS)
def test_light_model_gives_onnx_expected_output(name):
    path = LIGHT / f"light_{name}.onnx"
    expected = onnx.TensorProto()
    expected.ParseFromString((LIGHT / f"light_{name}_output_0.pb").read_bytes())
    want = nh.to_array(expected)
    proto = onnx.load(str(path))
    input_name, shape = real_input(proto)
    session = bricklab.Session(str(path), threads=1)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = next(iter(session.run({input_name: x}).values()))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def with_random_weights(proto, seed):
    """The model with every ConstantOfShape of a constant shape replaced by a random initializer:
    normal(0, 1/sqrt(fan_in)) for rank >= 2, uniform(0.5, 1.5) for vectors (positive, so batch-norm
    variances stay valid)."""
    rng = np.random.default_rng(seed)
    consts = {t.name: nh.to_array(t) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = nh.to_array(n.attribute[0].t)
    kept = []
    for n in proto.graph.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in consts:
            shape = [int(d) for d in consts[n.input[0]]]
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:])) or 1
                values = rng.standard_normal(shape) / np.sqrt(fan_in)
            else:
                values = rng.uniform(0.5, 1.5, shape)
            proto.graph.initializer.append(nh.from_array(values.astype(np.float32), n.output[0]))
            if proto.ir_version < 4:  # before IR 4 every initializer must also be a graph input
                proto.graph.input.append(onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, shape))
        else:
            kept.append(n)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    return proto


@pytest.mark.parametrize("name", ["resnet50", "shufflenet", "squeezenet", "inception_v2"])
def test_light_model_with_random_weights_matches_onnxruntime(name, tmp_path):
    proto = with_random_weights(onnx.load(str(LIGHT / f"light_{name}.onnx")), seed=1)
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, str(path))
    input_name, shape = real_input(proto)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {input_name: x})[0]
    assert want.std() > 1e-4, "the random weights should make the output depend on the input"
    for threads in (1, 2):
        got = next(iter(bricklab.Session(str(path), threads=threads).run({input_name: x}).values()))
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(np.abs(want).max()), err_msg=f"threads={threads}")
