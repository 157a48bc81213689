"""Structure-aware fuzzing against ONNX Runtime (see structural_fuzz.py for the generator and
tests/cpp/structural_fuzz.cpp for the replay).

scripts/test.sh runs 20,000 cases under AddressSanitizer + UBSan; here a sample runs against the
release build, and every class of bad model the fuzzer found gets its own regression test: each
crashed, hung or computed something ONNX Runtime refuses before the fix.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import bricklab

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REPLAY = os.path.join(ROOT, "build", "tests", "bricklab_structural_fuzz")


def test_a_sample_of_structural_mutants_agrees_with_onnx_runtime(tmp_path):
    if not os.path.exists(REPLAY):
        pytest.skip("build/tests/bricklab_structural_fuzz is not built: run scripts/build.sh")
    cases = tmp_path / "cases.bin"
    subprocess.run([sys.executable, os.path.join(HERE, "structural_fuzz.py"), "--cases", "2500", "--seed", "11",
                    "--out", str(cases)], check=True, timeout=600)
    r = subprocess.run([REPLAY, str(cases)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "0 crashes, 0 hangs, 0 disagreements" in r.stdout
    assert "2500 cases" in r.stdout


def test_the_replay_fails_on_a_disagreement(tmp_path):
    """The replay is not a test that cannot fail: a case whose recorded ORT outputs are wrong fails it."""
    if not os.path.exists(REPLAY):
        pytest.skip("build/tests/bricklab_structural_fuzz is not built: run scripts/build.sh")
    sys.path.insert(0, HERE)
    import structural_fuzz as sf
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT, [2, 3])], [("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "one.bin"
    with open(path, "wb") as f:
        f.write(sf.MAGIC)
        meta = {"id": 0, "seed": "hand-made", "mutations": [], "dims": {}, "rtol": 1e-4, "atol": 1e-5,
                "ort": "computed", "ort_error": ""}
        sf.write_case(f, meta, model.SerializeToString(), {"x": x}, {"y": x + 1})  # wrong on purpose
    r = subprocess.run([REPLAY, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "1 disagreements" in r.stdout, r.stdout


def test_the_replay_takes_onnx_reference_where_ort_departs_from_it(tmp_path):
    """Where the case carries ONNX's reference outputs (ORT and the reference disagree), matching
    the reference passes and is counted; matching neither still fails."""
    if not os.path.exists(REPLAY):
        pytest.skip("build/tests/bricklab_structural_fuzz is not built: run scripts/build.sh")
    sys.path.insert(0, HERE)
    import structural_fuzz as sf
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT, [2, 3])], [("y", TensorProto.FLOAT, [2, 3])])
    meta = {"id": 0, "seed": "hand-made", "mutations": [], "dims": {}, "rtol": 1e-4, "atol": 1e-5,
            "ort": "computed", "ort_error": ""}
    for reference, passes in ((x, True), (x + 2, False)):
        path = tmp_path / "one.bin"
        with open(path, "wb") as f:
            f.write(sf.MAGIC)
            sf.write_case(f, meta, model.SerializeToString(), {"x": x}, {"y": x + 1}, {"y": reference})
        r = subprocess.run([REPLAY, str(path)], capture_output=True, text=True, timeout=60)
        if passes:
            assert r.returncode == 0 and "bricklab matches the reference" in r.stdout, r.stdout
        else:
            assert r.returncode == 1 and "ONNX's reference" in r.stdout, r.stdout


# ---------------------------------------------------------------- the classes it found

def _model(nodes, inputs, outputs, inits=(), opset=17, ir=8):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def _load(tmp_path, model, **kw):
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return bricklab.Session(str(path), **kw)


def _refused(tmp_path, model, match):
    with pytest.raises(bricklab.Error, match=match):
        _load(tmp_path, model, threads=1)


X4 = ("x", TensorProto.FLOAT, [1, 4, 5, 5])


def test_conv_transpose_weight_of_rank_one_is_refused_before_onnx_inference(tmp_path):
    # ONNX's ConvTranspose inference read past the weight's dims: a segfault (ORT crashes too).
    w = numpy_helper.from_array(np.zeros(3, np.float32), "w")
    m = _model([helper.make_node("ConvTranspose", ["x", "w"], ["y"])], [X4], [("y", TensorProto.FLOAT, None)], [w])
    _refused(tmp_path, m, "weight 'W' has rank 1")


def test_axis_beyond_32_bits_is_refused_not_truncated(tmp_path):
    # ONNX's inference read axis 2^40 - 1 as -1 and 2^40 as 0; the kernel then indexed with 2^40.
    a = ("a", TensorProto.FLOAT, [2, 3, 4])
    m = _model([helper.make_node("Concat", ["a", "a"], ["y"], axis=(1 << 40) - 1)], [a], [("y", TensorProto.FLOAT, None)])
    _refused(tmp_path, m, "out of range")


def test_huge_integer_attribute_is_refused_before_onnx_divides_by_it(tmp_path):
    # DepthToSpace blocksize 2^40: a 32-bit zero inside ONNX's inference, a floating-point exception.
    m = _model([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=1 << 40)], [X4], [("y", TensorProto.FLOAT, None)])
    _refused(tmp_path, m, "blocksize")


def test_huge_graph_input_is_refused_by_the_memory_budget_before_inference(tmp_path):
    # A 2^40-wide Conv input with auto_pad made ONNX's inference loop for minutes.
    w = numpy_helper.from_array(np.zeros((2, 4, 3, 3), np.float32), "w")
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2])],
               [("x", TensorProto.FLOAT, [1, 4, 1 << 40, 5])], [("y", TensorProto.FLOAT, None)], [w])
    _refused(tmp_path, m, r"graph input 'x' \(float32 \[1x4x1099511627776x5\]\) needs .* memory limit")


def test_declared_output_shape_is_checked_not_trusted(tmp_path):
    # Slice-1 to an empty axis ran with the exporter's declared [2x6x6] instead of [2x6x0].
    m = _model([helper.make_node("Slice", ["x"], ["y"], starts=[1, 2], ends=[3, 100], axes=[0, 2])],
               [("x", TensorProto.FLOAT, [4, 6, 1])], [("y", TensorProto.FLOAT, [2, 6, 6])], opset=9)
    with pytest.raises(bricklab.Error):
        _load(tmp_path, m, threads=1)
    e = _model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
               [("a", TensorProto.FLOAT, [2, 5, 3]), ("b", TensorProto.FLOAT, [2, 3, 6])], [("y", TensorProto.FLOAT, [3, 5, 6])])
    _refused(tmp_path, e, r"declared as \[3x5x6\] but computes \[2x5x6\]")


def test_inputs_bound_to_one_type_parameter_must_agree(tmp_path):
    m = _model([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)],
               [("a", TensorProto.FLOAT, [2]), ("b", TensorProto.FLOAT16, [2])], [("y", TensorProto.FLOAT, None)])
    _refused(tmp_path, m, "one element type")


def test_duplicate_graph_inputs_and_undefined_element_types_are_refused(tmp_path):
    x = ("x", TensorProto.FLOAT, [2, 3])
    _refused(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], [x, ("x", TensorProto.FLOAT, [5, 3])],
                              [("y", TensorProto.FLOAT, [2, 3])]), "declared twice")
    _refused(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], [x], [("y", 0, [2, 3])]), "element type 0")
    _refused(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], [x], [("y", TensorProto.FLOAT, [2, 3])], ir=99),
             "IR version 99")


def test_a_required_input_left_empty_is_refused(tmp_path):
    # Min with its second input emptied: ORT crashes; bricklab computed the min of one input.
    x = ("x", TensorProto.FLOAT, [2, 3])
    _refused(tmp_path, _model([helper.make_node("Min", ["x", ""], ["y"])], [x], [("y", TensorProto.FLOAT, None)]), "requires it")
    # Resize with neither scales nor sizes ran with the exporter's declared output shape.
    r = _model([helper.make_node("Resize", ["x", "", ""], ["y"])], [X4], [("y", TensorProto.FLOAT, [1, 4, 5, 5])], opset=13)
    _refused(tmp_path, r, "neither 'scales' nor 'sizes'|could not infer")


@pytest.mark.parametrize("node, match", [
    (helper.make_node("LRN", ["x"], ["y"], size=4), "must be odd"),
    (helper.make_node("LRN", ["x"], ["y"], size=3, alpha=float("inf")), "must be finite"),
    (helper.make_node("Mod", ["x", "x"], ["y"], fmod=2), "must be 0 or 1"),
    (helper.make_node("CumSum", ["x", "ax"], ["y"], reverse=2), "must be 0 or 1"),
    (helper.make_node("Celu", ["x"], ["y"], alpha=0.0), "divides by it"),
    (helper.make_node("BatchNormalization", ["x", "c", "c", "c", "c"], ["y"], epsilon=-1.0), "finite and >= 0"),
    (helper.make_node("Resize", ["x", "", "sc"], ["y"], coordinate_transformation_mode="junk"), "accepted:"),
    (helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 2]), "perm"),
    (helper.make_node("Unsqueeze", ["x", "axes2d"], ["y"]), "must be 1-D"),
    (helper.make_node("Reshape", ["x", "zero"], ["y"]), "must be 1-D"),
    (helper.make_node("ConvTranspose", ["x", "w"], ["y"], output_padding=[1]), "output_padding"),
])
def test_attribute_and_parameter_values_onnx_runtime_refuses_are_refused(tmp_path, node, match):
    inits = [numpy_helper.from_array(np.ones(4, np.float32), "c"), numpy_helper.from_array(np.array(1, np.int64), "ax"),
             numpy_helper.from_array(np.ones(4, np.float32), "sc"),
             numpy_helper.from_array(np.zeros((1, 1), np.int64), "axes2d"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.zeros((4, 2, 3, 3), np.float32), "w")]
    used = set(node.input)
    m = _model([node], [X4], [("y", TensorProto.FLOAT if node.op_type != "Reshape" else TensorProto.FLOAT, None)],
               [t for t in inits if t.name in used], opset=13)
    _refused(tmp_path, m, match)


def test_sum_before_opset_8_does_not_broadcast(tmp_path):
    m = _model([helper.make_node("Sum", ["a", "b"], ["y"])], [("a", TensorProto.FLOAT, [2, 3]), ("b", TensorProto.FLOAT, [3])],
               [("y", TensorProto.FLOAT, None)], opset=7, ir=3)
    _refused(tmp_path, m, "broadcasts from opset 8")


def test_memory_limit_is_configurable_and_named_in_the_error(tmp_path):
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT, [1024, 1024])],
               [("y", TensorProto.FLOAT, [1024, 1024])])
    _load(tmp_path, m, threads=1)  # 4 MiB: fine by default
    code = ("import bricklab,sys\n"
            "try:\n    bricklab.Session(sys.argv[1], threads=1)\nexcept bricklab.Error as e:\n    print(e)\n")
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], capture_output=True, text=True,
                       env={**os.environ, "BRICKLAB_MEMORY_LIMIT": "2M"}, timeout=120)
    assert "memory limit of 2.0 MiB (BRICKLAB_MEMORY_LIMIT" in r.stdout, r.stdout + r.stderr
    assert "4.0 MiB" in r.stdout
    bricklab.set_memory_limit(2 << 20)
    try:
        with pytest.raises(bricklab.ShapeError, match=r"memory limit of 2.0 MiB \(set_memory_limit"):
            _load(tmp_path, m, threads=1)
        assert bricklab.memory_limit() == 2 << 20
    finally:
        bricklab.set_memory_limit(0)
    assert bricklab.memory_limit() > 2 << 20
    with pytest.raises(bricklab.InvalidArgument):
        bricklab.set_memory_limit(-1)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], capture_output=True, text=True,
                       env={**os.environ, "BRICKLAB_MEMORY_LIMIT": "lots"}, timeout=120)
    assert "BRICKLAB_MEMORY_LIMIT is 'lots'" in r.stdout + r.stderr


def test_float16_convolution_is_refused_not_computed_in_float32(tmp_path):
    # Once float16 constants could be read, a float16 Conv ran and returned float32 outputs.
    w = numpy_helper.from_array(np.zeros((2, 4, 3, 3), np.float16), "w")
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", TensorProto.FLOAT16, [1, 4, 5, 5])],
               [("y", TensorProto.FLOAT16, None)], [w])
    _refused(tmp_path, m, "only float32 convolutions")


def test_every_operator_in_float16_and_float64_matches_onnx_runtime_or_is_refused(tmp_path):
    """The seeds converted whole to float16 and to float64 (the generator's fixed cases after the
    seeds): each computes ORT's result in ORT's element type, or is refused with a reason."""
    if not os.path.exists(REPLAY):
        pytest.skip("build/tests/bricklab_structural_fuzz is not built: run scripts/build.sh")
    sys.path.insert(0, HERE)
    import structural_fuzz as sf
    n = 3 * len(sf.seed_models())
    cases = tmp_path / "types.bin"
    subprocess.run([sys.executable, os.path.join(HERE, "structural_fuzz.py"), "--cases", str(n), "--out", str(cases)],
                   check=True, timeout=600)
    r = subprocess.run([REPLAY, str(cases)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "0 crashes, 0 hangs, 0 disagreements" in r.stdout, r.stdout[-6000:]
    computed = int(r.stdout.split("ORT computed / computed: ")[1].split()[0])
    assert computed > n // 2, r.stdout  # most of them really ran and were compared


# ONNX's definitions of a reduction over an empty set (the operators' documentation, opset 13+).
EMPTY_REDUCTIONS = {"ReduceSum": 0.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0, "ReduceProd": 1.0,
                    "ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf}


@pytest.mark.parametrize("op", sorted(EMPTY_REDUCTIONS))
def test_reductions_over_an_empty_axis_give_onnx_identities(tmp_path, op):
    # oneDNN's reduction read an empty input as garbage (ReduceSum gave -0.69 where ONNX says 0).
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    node = (helper.make_node(op, ["x", "axes"], ["y"]) if op == "ReduceSum"
            else helper.make_node(op, ["x"], ["y"], axes=[1]))
    m = _model([node], [("x", TensorProto.FLOAT, [2, 0, 3])], [("y", TensorProto.FLOAT, None)],
               [axes] if op == "ReduceSum" else [])
    y = _load(tmp_path, m, threads=1).run({"x": np.zeros((2, 0, 3), np.float32)})["y"]
    assert y.shape == (2, 1, 3)
    np.testing.assert_array_equal(y, np.full((2, 1, 3), EMPTY_REDUCTIONS[op], np.float32))


def test_reduce_mean_over_an_empty_axis_is_refused_as_undefined(tmp_path):
    m = _model([helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0)], [("x", TensorProto.FLOAT, [2, 0, 4])],
               [("y", TensorProto.FLOAT, None)])
    _refused(tmp_path, m, "empty set of values .* undefined in ONNX")


def test_cumsum_axis_must_be_one_value(tmp_path):
    ax = numpy_helper.from_array(np.array([[1]], np.int64), "ax")
    m = _model([helper.make_node("CumSum", ["x", "ax"], ["y"])], [X4], [("y", TensorProto.FLOAT, None)], [ax])
    _refused(tmp_path, m, "must be one value")


def test_bit_shift_by_the_bit_width_or_more_gives_zero_as_onnx_reference_does(tmp_path):
    # ORT keeps x86's masked shift count (1 >> 9 gives 1 on uint8... 1 >> 33 on uint32); ONNX's
    # reference (numpy) gives 0, and so does bricklab.
    from onnx.reference import ReferenceEvaluator
    m = _model([helper.make_node("BitShift", ["a", "b"], ["y"], direction="RIGHT")],
               [("a", TensorProto.UINT32, [4]), ("b", TensorProto.UINT32, [4])], [("y", TensorProto.UINT32, None)])
    feeds = {"a": np.array([1, 8, 255, 7], np.uint32), "b": np.array([1, 32, 33, 40], np.uint32)}
    want = ReferenceEvaluator(m).run(None, feeds)[0]
    got = _load(tmp_path, m, threads=1).run(feeds)["y"]
    np.testing.assert_array_equal(got, want)
