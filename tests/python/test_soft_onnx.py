"""ONNX models through bricklab's graph: from_onnx rebuilds them as torch.fx modules that match
PyTorch's recorded output (tiny_cnn_ref.npz) and ONNX Runtime, keep channels consistent through
the residual, concatenation and batch norm of tiny_cnn, extract into sub-models that compute what
the zeroed full model computes, profile and plan, and reject unsupported operators by node."""
import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import bricklab
from bricklab.soft import ChannelGraph, MaskScheduler, extract, from_onnx, plan, profile

TINY = "models/bundled/tiny_cnn.onnx"


@pytest.fixture()
def tiny(repo):
    return from_onnx(str(repo / TINY), batch=2).eval(), np.load(repo / "models/bundled/tiny_cnn_ref.npz")


def test_matches_pytorch_reference_and_onnxruntime(repo, tiny):
    module, ref = tiny
    np.testing.assert_allclose(module(torch.from_numpy(ref["input_b2"])).detach().numpy(), ref["output_b2"],
                               rtol=1e-4, atol=1e-5)
    path = str(repo / "models/bundled/tiny_constants.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = from_onnx(path, batch=2)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_channel_spaces_of_tiny_cnn(tiny):
    module, ref = tiny
    g = ChannelGraph(module, torch.from_numpy(ref["input_b2"]))
    convs = {n: l for n, l in g.layers.items() if l.kind == "conv"}
    stem = next(l for n, l in convs.items() if n.startswith("stem"))
    res3 = next(l for n, l in convs.items() if n.startswith("res_res_3"))
    assert stem.out_space == res3.out_space  # the residual Add merges them
    fc = next(l for l in g.layers.values() if l.kind == "linear")
    assert [n for _, n, _ in fc.in_layout] == [8, 8]  # Concat of the two branches
    assert g.spaces[fc.out_space].fixed and len(g.maskable()) == 4


def test_submodel_of_onnx_model_equals_zeroed_full_model(tiny):
    module, ref = tiny
    x = torch.from_numpy(ref["input_b2"])
    g = ChannelGraph(module, x)
    keep = MaskScheduler(g, "rotating", 0).masks(1, 0.5)
    sub = extract(g, keep).module.eval()
    zeroed = copy.deepcopy(module)
    with torch.no_grad():
        for name, layer in g.layers.items():
            if layer.out_space in keep:
                mod = zeroed.get_submodule(name)
                dropped = torch.ones(mod.weight.shape[0], dtype=torch.bool)
                dropped[keep[layer.out_space]] = False
                mod.weight[dropped] = 0
                if mod.bias is not None:
                    mod.bias[dropped] = 0
    torch.testing.assert_close(sub(x), zeroed(x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in module.parameters())


def test_profile_and_plan_an_onnx_model(tiny):
    module, _ = tiny
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    prof = profile(module.train(), x, y, grid=(0.5, 1.0), repeats=1, calibration_ratios=(1.0, 0.5))
    # Memory is deterministic (timings of a model this small are mostly overhead and noise).
    budget = 0.8 * prof.predict_memory({})
    p = plan(prof, deadline_s=1e9, memory_budget_bytes=budget, min_ratio=0.05)
    assert p.feasible and p.predicted_bytes <= budget and min(p.ratios.values()) < 1.0
    assert set(p.ratios) == set(prof.graph.maskable())


def test_unsupported_operator_names_the_node(tmp_path):
    node = helper.make_node("Softmax", ["x"], ["y"], name="the_softmax", axis=1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "softmax.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    bricklab.load(str(path))  # bricklab itself reads it
    with pytest.raises(bricklab.UnsupportedError, match="the_softmax"):
        from_onnx(str(path))
