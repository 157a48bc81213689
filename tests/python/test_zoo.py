# Tests of the model zoo (models/zoo, MANIFEST.json), the bundled models (models/bundled) and
# python/bricklab/zoo.py (strip / materialize).  zoo.py is loaded by path, so these tests
# run without the bricklab C++ extension.
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
ZOO_PY = REPO / "python" / "bricklab" / "zoo.py"
ZOO_DIR = REPO / "models" / "zoo"
BUNDLED = REPO / "models" / "bundled"


def _load_zoo():
    spec = importlib.util.spec_from_file_location("bricklab_zoo", ZOO_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo = _load_zoo()


@pytest.fixture(scope="module")
def manifest():
    return json.loads((ZOO_DIR / "MANIFEST.json").read_text())


def _entry(manifest, name):
    return next(e for e in manifest["models"] if e["name"] == name)


def _run(model: onnx.ModelProto, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _tensor_by_name(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    for t in model.graph.initializer:
        if t.name == name:
            return t
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return n.attribute[0].t
    raise KeyError(name)


# --------------------------------------------------------------------------------------
# The zoo and its manifest
# --------------------------------------------------------------------------------------


def test_manifest_lists_enough_models(manifest):
    models = manifest["models"]
    assert len(models) >= 50
    assert manifest["count"] == len(models)
    families = {e["family"] for e in models}
    assert {"classification", "mobile", "transformer", "segmentation", "video"} <= families
    assert len({e["name"] for e in models}) == len(models), "duplicate names"
    for e in models:
        for key in ("name", "family", "file", "opset", "input_name", "input_shape",
                    "output_names", "params", "ref_macs_convlinear", "ref_macs_complete"):
            assert key in e, f"{e['name']}: no {key}"
        assert e["input_shape"][0] == "batch"
        assert e["input_name"] == "input"
        assert e["params"] > 0 and e["ref_macs_convlinear"] > 0


def test_reference_macs(manifest):
    # Published torchvision numbers (GMACs at batch 1).
    expected = {"resnet50": 4.09, "resnet18": 1.81, "mobilenet_v2": 0.30, "vit_b_16": 17.56,
                "swin_t": 4.49, "alexnet": 0.71}
    for name, gmacs in expected.items():
        e = _entry(manifest, name)
        assert e["ref_macs"] / 1e9 == pytest.approx(gmacs, rel=0.02), name
        assert e["ref_macs_complete"] is True
    assert _entry(manifest, "vit_b_16")["ref_macs_attention"] > 0
    assert _entry(manifest, "resnet50")["ref_macs_attention"] == 0


def test_every_zoo_file_exists_small_and_stripped(manifest):
    total = 0
    for e in manifest["models"]:
        path = ZOO_DIR / e["file"]
        assert path.exists(), e["file"]
        data = path.read_bytes()
        assert len(data) < 3_000_000, f"{e['file']} is {len(data)} bytes: not stripped?"
        assert len(data) == e["bytes"]
        assert hashlib.sha256(data).hexdigest() == e["sha256"]
        model = onnx.load_from_string(data)
        assert zoo.is_stripped(model), e["file"]
        assert zoo.stripped_tensors(model), e["file"]
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert opset == e["opset"]
        assert model.graph.input[0].name == "input"
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert [d.dim_value for d in dims[1:]] == e["input_shape"][1:]
        assert [o.name for o in model.graph.output] == e["output_names"]
        total += len(data)
    assert total < 20_000_000


# A handful of models from every family (scripts/export_zoo.py --verify runs them all):
# the whole round trip stays well under a minute on 2 cores.
ROUND_TRIP = ["resnet50", "mobilenet_v2", "densenet121", "squeezenet1_1", "vit_b_16", "swin_t",
              "lraspp_mobilenet_v3_large", "r3d_18"]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip_runs_in_onnxruntime(manifest, name):
    e = _entry(manifest, name)
    stripped = onnx.load(str(ZOO_DIR / e["file"]))
    full = zoo.materialize(stripped, seed=0)
    assert not zoo.is_stripped(full)
    assert not zoo.stripped_tensors(full)
    onnx.checker.check_model(full)
    rng = np.random.default_rng(0)
    for batch in (1, 2):
        x = rng.standard_normal([batch] + e["input_shape"][1:]).astype(np.float32)
        (y,) = _run(full, {"input": x})
        assert list(y.shape) == [batch] + e["output_shapes"][0][1:]
        assert np.isfinite(y).all()
        assert np.abs(y).max() > 0
    # and stripping the materialized model gives back the stripped graph
    again = zoo.strip(full)
    assert again.graph == stripped.graph


def test_materialize_is_deterministic():
    stripped = onnx.load(str(ZOO_DIR / "mobilenet_v3_small.onnx"))
    a = zoo.materialize(stripped, seed=0).SerializeToString()
    b = zoo.materialize(stripped, seed=0).SerializeToString()
    c = zoo.materialize(stripped, seed=1).SerializeToString()
    assert a == b
    assert a != c
    assert zoo.is_stripped(stripped), "materialize must not modify its argument"


def test_materialize_batchnorm_variance_positive():
    # densenet's pre-activation BatchNorms are not folded into a Conv by the exporter
    full = zoo.materialize(onnx.load(str(ZOO_DIR / "densenet121.onnx")))
    bns = [n for n in full.graph.node if n.op_type == "BatchNormalization"]
    assert bns
    for n in bns:
        var = numpy_helper.to_array(_tensor_by_name(full, n.input[4]))
        assert (var > 0).all()


# --------------------------------------------------------------------------------------
# strip
# --------------------------------------------------------------------------------------


def test_strip_keeps_integer_and_small_tensors():
    model = onnx.load(str(ZOO_DIR / "vit_b_16.onnx"))   # stripped already
    ints = [t for t in model.graph.initializer if t.data_type == TensorProto.INT64]
    consts = [n.attribute[0].t for n in model.graph.node if n.op_type == "Constant"
              and n.attribute[0].t.data_type == TensorProto.INT64]
    assert ints or consts
    for t in ints + consts:
        assert numpy_helper.to_array(t).size == int(np.prod(t.dims))   # values are there

    # A model with a large int64 Reshape shape, a large float weight and a small float bias.
    big_shape = np.arange(100, dtype=np.int64)
    w = np.ones((10, 10), np.float32)
    b = np.ones(64, np.float32)
    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]),
         helper.make_node("Constant", [], ["cw"], value=numpy_helper.from_array(w, "cw")),
         helper.make_node("MatMul", ["r", "w"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10, 10])],
        [numpy_helper.from_array(big_shape, "shape"), numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(b, "b")])
    m = helper.make_model(g)
    s = zoo.strip(m)
    assert zoo.is_stripped(s) and not zoo.is_stripped(m)
    assert {p.key: p.value for p in s.metadata_props} == {"bricklab.weights": "stripped"}
    np.testing.assert_array_equal(numpy_helper.to_array(_tensor_by_name(s, "shape")), big_shape)
    np.testing.assert_array_equal(numpy_helper.to_array(_tensor_by_name(s, "b")), b)
    for name in ("w", "cw"):
        t = _tensor_by_name(s, name)
        assert list(t.dims) == [10, 10] and t.data_type == TensorProto.FLOAT
        assert not t.HasField("raw_data") and len(t.float_data) == 0
        assert len(t.external_data) == 0 and t.data_location == TensorProto.DEFAULT
    assert sorted(zoo.stripped_tensors(s)) == ["cw", "w"]
    assert zoo.strip(s) == s, "strip is idempotent"


def test_strip_materialize_half_precision():
    w16 = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float16)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 16])],
        [numpy_helper.from_array(w16, "w"),
         helper.make_tensor("bf", TensorProto.BFLOAT16, [100], np.zeros(100, np.float32))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    s = zoo.strip(m)
    assert sorted(zoo.stripped_tensors(s)) == ["bf", "w"]
    full = zoo.materialize(s)
    onnx.checker.check_model(full)
    w = numpy_helper.to_array(_tensor_by_name(full, "w"))
    assert w.dtype == np.float16 and np.isfinite(w).all() and w.std() > 0
    (y,) = _run(full, {"x": np.ones((2, 16), np.float16)})
    assert np.isfinite(y).all()


# --------------------------------------------------------------------------------------
# Bundled models
# --------------------------------------------------------------------------------------


def test_bundled_folder():
    for f in ("resnet18.onnx", "squeezenet1_1.onnx", "mobilenet_v2.onnx", "tiny_cnn.onnx",
              "tiny_cnn_ref.npz", "tiny_external/model.onnx", "tiny_external/weights.bin",
              "tiny_constants.onnx"):
        assert (BUNDLED / f).exists(), f
    for f in ("resnet18.onnx", "squeezenet1_1.onnx", "mobilenet_v2.onnx"):
        m = onnx.load(str(BUNDLED / f))
        assert zoo.is_stripped(m)
        assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    total = sum(p.stat().st_size for p in BUNDLED.rglob("*") if p.is_file())
    assert total < 10_000_000


def test_tiny_cnn_matches_pytorch_reference():
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    model = onnx.load(str(BUNDLED / "tiny_cnn.onnx"))
    onnx.checker.check_model(model)
    assert not zoo.is_stripped(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "Concat",
            "GlobalAveragePool", "Flatten", "Gemm"} <= ops
    assert ref["input"].shape == (1, 3, 32, 32)
    for x, y in ((ref["input"], ref["output"]), (ref["input_b2"], ref["output_b2"])):
        (got,) = _run(model, {"input": x})
        np.testing.assert_allclose(got, y, atol=1e-4, rtol=0)


def test_tiny_external_matches_reference():
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    path = BUNDLED / "tiny_external" / "model.onnx"
    light = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in light.graph.initializer)
    assert {e.value for t in light.graph.initializer for e in t.external_data
            if e.key == "location"} == {"weights.bin"}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": ref["input"]})
    np.testing.assert_allclose(got, ref["output"], atol=1e-4, rtol=0)
    # strip_file reads the external data and writes a self-contained stripped model
    # (checked in test_strip_file_external below)


def test_strip_file_external(tmp_path):
    dst = tmp_path / "stripped.onnx"
    zoo.strip_file(BUNDLED / "tiny_external" / "model.onnx", dst)
    s = onnx.load(str(dst))
    assert zoo.is_stripped(s)
    assert all(len(t.external_data) == 0 for t in s.graph.initializer)
    full = zoo.materialize_file(dst, tmp_path / "full.onnx", seed=3)
    onnx.checker.check_model(str(tmp_path / "full.onnx"))
    (y,) = _run(full, {"input": np.ones((2, 3, 32, 32), np.float32)})
    assert y.shape == (2, 10) and np.isfinite(y).all()


def test_tiny_constants():
    model = onnx.load(str(BUNDLED / "tiny_constants.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert len(model.graph.initializer) == 0
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 11
    ops = [n.op_type for n in model.graph.node]
    assert "ConstantOfShape" in ops and ops.count("Constant") >= 4
    (y,) = _run(model, {"input": np.ones((3, 3, 8, 8), np.float32)})
    assert y.shape == (3, 16) and np.isfinite(y).all()
    # Constant values follow the same rule as initializers
    s = zoo.strip(model)
    assert sorted(zoo.stripped_tensors(s)) == ["conv_w", "fc_w"]
    np.testing.assert_array_equal(numpy_helper.to_array(_tensor_by_name(s, "flat_shape")), [0, -1])
    full = zoo.materialize(s)
    onnx.checker.check_model(full, full_check=True)
    (y,) = _run(full, {"input": np.ones((1, 3, 8, 8), np.float32)})
    assert np.isfinite(y).all()


# --------------------------------------------------------------------------------------
# Errors and the command line
# --------------------------------------------------------------------------------------


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        zoo.load_model(tmp_path / "nope.onnx")
    with pytest.raises(FileNotFoundError):
        zoo.strip_file(tmp_path / "nope.onnx", tmp_path / "out.onnx")
    with pytest.raises(FileNotFoundError):
        zoo.materialize_file(tmp_path / "nope.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("content", [b"", b"hello, this is not an onnx model\n",
                                     bytes(range(256)) * 8, b"\x08\x07"])
def test_garbage_raises(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(zoo.NotAnOnnxModelError, match="not an ONNX model"):
        zoo.load_model(bad)
    with pytest.raises(ValueError):
        zoo.materialize_file(bad, tmp_path / "out.onnx")
    with pytest.raises(TypeError):
        zoo.strip(b"not a model")


def test_cli(tmp_path, capsys):
    src = BUNDLED / "tiny_cnn.onnx"
    stripped, full = tmp_path / "s.onnx", tmp_path / "f.onnx"
    # tiny_cnn keeps its real weights; its conv/fc weights (> 64 elements) get stripped
    assert zoo.main(["strip", str(src), str(stripped)]) == 0
    assert zoo.is_stripped(onnx.load(str(stripped)))
    assert zoo.main(["materialize", str(stripped), str(full), "--seed", "5"]) == 0
    onnx.checker.check_model(str(full))
    assert zoo.main(["info", str(stripped)]) == 0
    assert "stripped: yes" in capsys.readouterr().out

    assert zoo.main(["strip", str(tmp_path / "missing.onnx"), str(tmp_path / "x.onnx")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    assert zoo.main(["materialize", str(tmp_path / "bad.onnx"), str(tmp_path / "x.onnx")]) == 1
    assert "not an ONNX model" in capsys.readouterr().err


def test_cli_subprocess(tmp_path):
    # The file runs as a script too (python -m bricklab.zoo needs the installed package).
    r = subprocess.run([sys.executable, str(ZOO_PY), "materialize", str(tmp_path / "none.onnx"),
                        str(tmp_path / "o.onnx")], capture_output=True, text=True)
    assert r.returncode != 0
    assert "error" in r.stderr and "no such file" in r.stderr
    r = subprocess.run([sys.executable, str(ZOO_PY), "bogus"], capture_output=True, text=True)
    assert r.returncode == 2
