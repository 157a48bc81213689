"""bricklab.Session: inputs and outputs, zero-copy outputs, timing and profiling API, errors."""
import numpy as np
import pytest

import bricklab
from cpuinfo import cpu_has
from conftest import BUNDLED


def test_run_matches_pytorch_reference_outputs():
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    session = bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), threads=1)
    assert session.input_names == ["input"] and session.output_names == ["logits"]
    out = session.run({"input": ref["input"]})["logits"]
    np.testing.assert_allclose(out, ref["output"], rtol=1e-4, atol=1e-5)
    session2 = bricklab.Session(bricklab.load(str(BUNDLED / "tiny_cnn.onnx"), batch=2))
    out2 = session2.run({"input": ref["input_b2"]})["logits"]
    np.testing.assert_allclose(out2, ref["output_b2"], rtol=1e-4, atol=1e-5)
    # Outputs own their C++ buffer: a second run does not overwrite the first result.
    first = session.run({"input": ref["input"]})["logits"]
    session.run({"input": np.zeros_like(ref["input"])})
    np.testing.assert_allclose(first, ref["output"], rtol=1e-4, atol=1e-5)


def test_fusion_changes_the_plan_not_the_result():
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    fused = bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), fusion=True)
    plain = bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), fusion=False)
    assert "BatchNormalization" in fused.describe() and len(fused.profile()) < len(plain.profile())
    np.testing.assert_allclose(fused.run({"input": ref["input"]})["logits"], plain.run({"input": ref["input"]})["logits"], rtol=1e-5, atol=1e-6)


def test_time_and_profile():
    session = bricklab.Session(str(BUNDLED / "squeezenet1_1.onnx"), threads=2)
    assert session.uses_random_weights  # stripped model: random weights stand in
    stats = session.time(warmup=1, repeat=5)
    assert stats["repeats"] == 5 and len(stats["samples_ms"]) == 5
    assert 0 < stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]
    steps = session.profile()
    assert all(s["ms"] >= 0 for s in steps)
    covered = {n for s in steps for n in s["nodes"]}
    model = bricklab.load(str(BUNDLED / "squeezenet1_1.onnx"))
    views = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}  # no data moves: no step
    assert {n.name for n in model.nodes if n.op not in views} <= covered  # every other node runs in some step


def test_variants_run_and_agree():
    model = bricklab.load(str(BUNDLED / "resnet18.onnx"))
    conv = next(n for n in model.nodes if n.op == "Conv" and n.attrs["kernel_shape"] == [3, 3] and n.attrs["strides"] == [1, 1])
    variants = bricklab.variants(model, conv.name)
    names = [v["name"] for v in variants]
    assert names[0] == "auto" and "direct" in names
    # Typed: what each variant is, not read from its name.
    typed = {v["name"]: (v["precision"], v["algorithm"], v["layout"]) for v in variants}
    assert typed["direct"] == ("fp32", "direct", "")
    if "winograd" in typed:
        assert typed["winograd"][1] == "winograd"
    if "bf16" in typed:
        assert typed["bf16"][0] == "bf16"
    if "nhwc" in typed:
        assert typed["nhwc"] == ("fp32", "direct", "nhwc")
    gemm = next(n for n in model.nodes if n.op == "Gemm")
    assert {v["name"]: v["precision"] for v in bricklab.variants(model, gemm.name)}.get("fp32") == "fp32"
    x = {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    outs = {}
    for v in names:
        s = bricklab.Session(model, variants={conv.name: v})
        outs[v] = next(iter(s.run(x).values()))
    for v, out in outs.items():
        tol = 2e-2 if typed[v][0] != "fp32" else 1e-4
        err = np.abs(out - outs["direct"]).max() / np.abs(outs["direct"]).max()
        assert err <= tol, f"variant {v}: {err}"


def test_every_conv_variant_matches_pytorch():
    # Each variant (algorithm, memory format, precision) on every Conv of tiny_cnn, with and
    # without fusion, against the exporting PyTorch module's output.
    path = str(BUNDLED / "tiny_cnn.onnx")
    model = bricklab.load(path)
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    convs = [n.name for n in model.nodes if n.op == "Conv"]
    offered = {v["name"] for c in convs for v in bricklab.variants(model, c)}
    assert {"auto", "direct", "nhwc", "nchw"} <= offered
    if cpu_has("avx512f"):  # oneDNN has bfloat16 convolutions with AVX-512 only
        assert "bf16" in offered
    for v in sorted(offered):
        chosen = {c: v for c in convs if v in {x["name"] for x in bricklab.variants(model, c)}}
        for fusion in (True, False):
            out = next(iter(bricklab.Session(path, variants=chosen, fusion=fusion).run({"input": ref["input"]}).values()))
            tol = 3e-2 if v == "bf16" else 1e-4
            err = np.abs(out - ref["output"]).max() / np.abs(ref["output"]).max()
            assert err <= tol, f"variant {v} (fusion={fusion}): relative error {err}"
    with pytest.raises(bricklab.UnsupportedError, match="unknown Conv variant"):
        bricklab.Session(path, variants={convs[0]: "nope"}).run({"input": ref["input"]})


def test_matmul_bf16_variant_matches_pytorch():
    # tiny_cnn's classifier (Gemm) in bfloat16 (with and without fusion) against the PyTorch output.
    path = str(BUNDLED / "tiny_cnn.onnx")
    model = bricklab.load(path)
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    gemms = [n.name for n in model.nodes if n.op in ("Gemm", "MatMul")]
    assert gemms
    if not cpu_has("avx512f"):
        assert all([v["name"] for v in bricklab.variants(model, g)] == ["fp32"] for g in gemms)
        pytest.skip("oneDNN has bfloat16 matmuls with AVX-512 only; this CPU offers fp32 alone (checked)")
    for g in gemms:
        assert [v["name"] for v in bricklab.variants(model, g)] == ["fp32", "bf16"]
    for fusion in (True, False):
        s = bricklab.Session(path, variants={g: "bf16" for g in gemms}, fusion=fusion)
        assert "bf16" in s.describe()
        out = next(iter(s.run({"input": ref["input"]}).values()))
        err = np.abs(out - ref["output"]).max() / np.abs(ref["output"]).max()
        assert 0 < err <= 2e-2, f"fusion={fusion}: relative error {err}"  # > 0: it really ran in bf16
    with pytest.raises(bricklab.UnsupportedError, match="unknown Gemm variant"):
        bricklab.Session(path, variants={gemms[0]: "int4"}).run({"input": ref["input"]})


def test_bad_inputs():
    session = bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"))
    with pytest.raises(bricklab.InvalidArgument, match="missing input"):
        session.run({})
    with pytest.raises(bricklab.InvalidArgument, match="shape"):
        session.run({"input": np.zeros((1, 3, 31, 32), np.float32)})
    with pytest.raises(bricklab.InvalidArgument, match="float32"):
        session.run({"input": np.zeros((1, 3, 32, 32), np.float64)})
    with pytest.raises(ValueError):
        bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), threads=-1)
    with pytest.raises(bricklab.InvalidArgument, match="no node named"):
        bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), variants={"nope": "direct"})


def test_individual_fusions():
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    path = str(BUNDLED / "tiny_cnn.onnx")
    everything = bricklab.Session(path).describe()
    only_bn = bricklab.Session(path, fusion={"batchnorm"}).describe()
    assert "conv+BatchNormalization+Add+Relu" in everything
    assert "conv+BatchNormalization " in only_bn and "+Relu" not in only_bn and "+Add" not in only_bn
    for fusion in ({"batchnorm"}, {"activation"}, {"residual", "activation"}, set()):
        out = bricklab.Session(path, fusion=fusion).run({"input": ref["input"]})["logits"]
        np.testing.assert_allclose(out, ref["output"], rtol=1e-4, atol=1e-5)
    with pytest.raises(bricklab.InvalidArgument, match="unknown fusion"):
        bricklab.Session(path, fusion={"everything"})


def test_threads_one_runs_on_one_thread():
    # oneDNN fixes a kernel's thread count when the primitive is created; a session asked for one
    # thread must not use more. CPU time over wall time cannot exceed 1 with one busy thread,
    # whatever else the machine is doing (load only lowers it).
    import resource
    import time
    x = {"input": np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)}
    s = bricklab.Session(str(BUNDLED / "resnet18.onnx"), batch=2, threads=1)
    s.run(x)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        s.run(x)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    ratio = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0)
    assert ratio <= 1.3, f"threads=1 used {ratio:.2f} CPUs"


def _conv_stack(path, layers=6, channels=16, size=32):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes, inits, prev = [], [], "input"
    for i in range(layers):
        w = (rng.standard_normal((channels, channels if i else 3, 3, 3)) * 0.2).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}" if i < layers - 1 else "logits"]))
        prev = f"r{i}"
    g = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, channels, size, size])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def test_one_session_shared_by_eight_threads_gives_sequential_results(tmp_path):
    """Calls from several threads take turns (the GIL is released inside): 8 threads x 1000 runs
    on one 2-thread Session, each with its own input, all equal to the sequential results."""
    import threading

    session = bricklab.Session(_conv_stack(tmp_path / "stack.onnx"), threads=2)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(8)]
    want = [session.run({"input": x})["logits"].copy() for x in inputs]
    bad = []

    def worker(k):
        for _ in range(1000):
            got = session.run({"input": inputs[k]})["logits"]
            if not np.array_equal(got, want[k]):
                bad.append(k)
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, f"threads {sorted(set(bad))} saw results that differ from sequential runs"
