"""bricklab.load: nodes, shapes, attributes, weights (zero-copy numpy), graph utilities, errors.
Independent references: the onnx package's own reader and a plain longest-path DP."""
import numpy as np
import onnx
import onnx.numpy_helper
import pytest

import bricklab
from conftest import BUNDLED


def test_resnet18_batch_scaling():
    m1 = bricklab.load(str(BUNDLED / "resnet18.onnx"))
    m3 = bricklab.load(str(BUNDLED / "resnet18.onnx"), batch=3)
    assert m1.inputs[0].shape == (1, 3, 224, 224)
    assert m3.inputs[0].shape == (3, 3, 224, 224)
    assert m3.outputs[0].shape == (3, 1000)
    assert m3.flops == pytest.approx(3 * m1.flops, rel=1e-9)
    first = m3.nodes[0]
    assert first.op == "Conv"
    assert first.output_shape == (3, 64, 112, 112)
    assert first.attrs["strides"] == [2, 2]
    assert isinstance(first.attrs["kernel_shape"], list)
    assert first.flops == 2 * 3 * 64 * 112 * 112 * 3 * 7 * 7 + 3 * 64 * 112 * 112
    assert m3.weights_stripped
    w = first.inputs[1]
    assert w.kind == "weight" and w.shape == (64, 3, 7, 7) and w.data is None


def test_weights_are_zero_copy_and_match_onnx_reader():
    path = str(BUNDLED / "tiny_cnn.onnx")
    model = bricklab.load(path)
    reference = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    checked = 0
    for name, value in model.values.items():
        if value.kind == "weight" and name in reference:
            arr = value.data
            assert arr is not None
            np.testing.assert_array_equal(arr, reference[name])
            assert not arr.flags.writeable
            assert arr.base is not None  # a view on C++ memory, not a copy
            # Two views of the same weight share one buffer.
            assert np.shares_memory(arr, model.values[name].data)
            checked += 1
    assert checked >= 3
    del model  # the arrays keep the buffer alive on their own
    assert np.isfinite(arr).all()


def test_links_and_topological_order():
    model = bricklab.load(str(BUNDLED / "tiny_cnn.onnx"))
    order = model.topological_order()
    position = {name: i for i, name in enumerate(order)}
    for node in model.nodes:
        for p in node.producers:
            assert position[p] < position[node.name]
            assert node.name in model.node(p).consumers
        for v in node.outputs:
            assert v.producer == node.name


def _longest_path(model, weights):
    best = {}
    for node in model.nodes:  # stored in topological order
        best[node.name] = weights.get(node.name, 0.0) + max((best[p] for p in node.producers), default=0.0)
    return max(best.values())


def test_critical_path_matches_plain_dp():
    model = bricklab.load(str(BUNDLED / "resnet18.onnx"))
    rng = np.random.default_rng(0)
    weights = {n.name: float(rng.uniform(0, 10)) for n in model.nodes}
    length, path = model.critical_path(weights)
    assert length == pytest.approx(_longest_path(model, weights))
    assert sum(weights[n] for n in path) == pytest.approx(length)
    with pytest.raises(bricklab.InvalidArgument):
        model.critical_path({"no-such-node": 1.0})
    with pytest.raises(ValueError):
        model.critical_path({model.nodes[0].name: float("nan")})


def test_errors_are_typed(tmp_path):
    with pytest.raises(bricklab.FileError) as e:
        bricklab.load(str(tmp_path / "missing.onnx"))
    assert isinstance(e.value, OSError) and "missing.onnx" in str(e.value)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xff" * 100)
    with pytest.raises(bricklab.ModelFormatError):
        bricklab.load(str(junk))
    with pytest.raises(ValueError):
        bricklab.load(str(BUNDLED / "resnet18.onnx"), batch=0)
    with pytest.raises(bricklab.InvalidArgument, match="no input has a symbolic dimension"):
        bricklab.load(str(BUNDLED / "resnet18.onnx"), dims={"nope": 2})
    assert issubclass(bricklab.ShapeError, bricklab.Error)
    assert issubclass(bricklab.Error, RuntimeError)


def test_unsupported_op_and_traversal(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("NonZero", ["x"], ["y"], name="nz")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [1, None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "nz.onnx"
    onnx.save(model, str(path))
    with pytest.raises(bricklab.UnsupportedError, match="nz.*NonZero"):
        bricklab.load(str(path))

    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(bricklab.ExternalDataError, match="path traversal"):
        bricklab.load(str(path))


def test_external_data_and_constants_models():
    ext = bricklab.load(str(BUNDLED / "tiny_external" / "model.onnx"))
    ref = bricklab.load(str(BUNDLED / "tiny_cnn.onnx"))
    assert len(ext.nodes) == len(ref.nodes)
    assert ext.flops == pytest.approx(ref.flops)
    ref_weights = {k: v.data for k, v in ref.values.items() if v.kind == "weight"}
    for name, value in ext.values.items():
        if value.kind == "weight" and name in ref_weights and ref_weights[name] is not None:
            np.testing.assert_array_equal(value.data, ref_weights[name])
    const = bricklab.load(str(BUNDLED / "tiny_constants.onnx"))
    kinds = {v.kind for v in const.values.values()}
    assert "constant" in kinds
    assert all(n.op != "Constant" for n in const.nodes)


def test_library_info():
    ops = {o["op"] for o in bricklab.supported_ops()}
    assert {"Conv", "Gemm", "MatMul", "Softmax", "LayerNormalization", "Resize"} <= ops
    names = {b["name"]: b for b in bricklab.backends()}
    assert names["cpu"]["available"] and "oneDNN" in names["cpu"]["library"]
    assert "cuda" in names
    if not names["cuda"]["available"]:
        assert names["cuda"]["reason"]
