#!/usr/bin/env python3
# Builds models/bundled/: the few small ONNX models that bricklab's demo and tests use.
#
#   resnet18.onnx, squeezenet1_1.onnx, mobilenet_v2.onnx   stripped zoo exports (dynamic batch)
#   tiny_cnn.onnx + tiny_cnn_ref.npz      a tiny CNN with REAL weights and PyTorch's output
#   tiny_external/model.onnx + weights.bin   the same tiny CNN with external data
#   tiny_constants.onnx                   weights as Constant nodes + a ConstantOfShape input
#
#   .venv/bin/python scripts/make_bundled_models.py [--out models/bundled]
#
# Deterministic: the same torch/onnx versions give the same files.  Every model is checked
# (onnx.checker, and onnxruntime against PyTorch for the tiny CNN) before it is written.
from __future__ import annotations

import argparse
import importlib.util
import io
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
ZOO_DIR = REPO / "models" / "zoo"
DEFAULT_OUT = REPO / "models" / "bundled"
ZOO_COPIES = ("resnet18", "squeezenet1_1", "mobilenet_v2")


def _load_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# --------------------------------------------------------------------------------------
# Stripped copies of zoo models
# --------------------------------------------------------------------------------------


def copy_zoo_models(out: Path) -> None:
    """Copy the stripped zoo exports; export them here if the zoo does not have them."""
    for name in ZOO_COPIES:
        src = ZOO_DIR / f"{name}.onnx"
        dst = out / f"{name}.onnx"
        if src.exists():
            shutil.copyfile(src, dst)
            how = "copied from models/zoo"
        else:
            ez = _load_by_path("bricklab_export_zoo", REPO / "scripts" / "export_zoo.py")
            res = ez.export_one(ez.BY_NAME[name], str(out), True, False, os.cpu_count() or 1, None)
            if "error" in res:
                raise RuntimeError(f"export of {name} failed: {res['error']}")
            how = "exported"
        print(f"{dst.relative_to(REPO) if dst.is_relative_to(REPO) else dst}: {how}, "
              f"{dst.stat().st_size} bytes")


# --------------------------------------------------------------------------------------
# tiny_cnn: real weights, reference output
# --------------------------------------------------------------------------------------


def build_tiny_cnn():
    """Conv-BN-ReLU stem, MaxPool, a residual block (Add), two branches joined by Concat,
    GlobalAveragePool, Flatten and a Linear (Gemm) head; input N x 3 x 32 x 32."""
    import torch
    import torch.nn as nn

    class TinyCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(16), nn.ReLU())
            self.pool = nn.MaxPool2d(2)
            self.res = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(16), nn.ReLU(),
                                     nn.Conv2d(16, 16, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(16))
            self.relu = nn.ReLU()
            self.branch_a = nn.Conv2d(16, 8, 1)
            self.branch_b = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten(1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.pool(self.stem(x))                      # 16 x 16 x 16
            x = self.relu(x + self.res(x))                   # residual Add
            x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)   # Concat
            return self.fc(self.flatten(self.gap(x)))        # GAP, Flatten, Gemm

    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():   # non-trivial BatchNorm statistics, so BN matters numerically
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export_tiny_cnn(model) -> onnx.ModelProto:
    """Export with TrainingMode.PRESERVE: the model is in eval mode, so BatchNormalization
    is exported in inference form but NOT folded into the Conv (bricklab must see it)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 32, 32), buf, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True,
                          training=torch.onnx.TrainingMode.PRESERVE)
    m = onnx.load_from_string(buf.getvalue())
    m.doc_string = "bricklab tiny CNN (real weights, torch.manual_seed(0)); see tiny_cnn_ref.npz"
    onnx.checker.check_model(m, full_check=True)
    return m


def ort_run(model_or_path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    src = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) \
        else str(model_or_path)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def make_tiny_cnn(out: Path) -> None:
    import torch

    model = build_tiny_cnn()
    proto = export_tiny_cnn(model)
    ops = sorted({n.op_type for n in proto.graph.node})
    for op in ("Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "Concat",
               "GlobalAveragePool", "Flatten", "Gemm"):
        assert op in ops, f"tiny_cnn lacks {op}: {ops}"

    rng = np.random.default_rng(1234)
    x1 = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    x2 = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        y1 = model(torch.from_numpy(x1)).numpy()
        y2 = model(torch.from_numpy(x2)).numpy()

    path = out / "tiny_cnn.onnx"
    onnx.save_model(proto, str(path))
    np.savez(out / "tiny_cnn_ref.npz", input=x1, output=y1, input_b2=x2, output_b2=y2)
    err = max(float(np.abs(ort_run(path, x1) - y1).max()),
              float(np.abs(ort_run(path, x2) - y2).max()))
    assert err < 1e-4, f"onnxruntime differs from PyTorch by {err}"
    print(f"tiny_cnn.onnx: {path.stat().st_size} bytes, ops {ops}, |ort - torch| = {err:.2e}")

    # The same model with all its initializers in one external file.
    ext_dir = out / "tiny_external"
    if ext_dir.exists():
        shutil.rmtree(ext_dir)
    ext_dir.mkdir()
    ext = onnx.ModelProto()
    ext.CopyFrom(proto)
    onnx.save_model(ext, str(ext_dir / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.checker.check_model(str(ext_dir / "model.onnx"))
    err = float(np.abs(ort_run(ext_dir / "model.onnx", x1) - y1).max())
    assert err < 1e-4, f"external-data model differs from PyTorch by {err}"
    print(f"tiny_external/: model.onnx {(ext_dir / 'model.onnx').stat().st_size} bytes + "
          f"weights.bin {(ext_dir / 'weights.bin').stat().st_size} bytes, |ort - torch| = {err:.2e}")


# --------------------------------------------------------------------------------------
# tiny_constants: Constant-node weights and a ConstantOfShape input (onnx.helper, opset 11)
# --------------------------------------------------------------------------------------


def make_tiny_constants(out: Path) -> None:
    rng = np.random.default_rng(7)

    def const(name: str, arr: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], name=f"{name}_const",
                                value=onnx.numpy_helper.from_array(arr, name=name))

    w = (rng.standard_normal((8, 3, 3, 3)) / np.sqrt(27)).astype(np.float32)   # 216 elements
    b = (0.1 * rng.standard_normal(8)).astype(np.float32)
    wfc = (rng.standard_normal((8, 16)) / np.sqrt(8)).astype(np.float32)      # 128 elements
    bfc = (0.1 * rng.standard_normal(16)).astype(np.float32)
    nodes = [
        const("conv_w", w),
        const("conv_b", b),
        const("offset_shape", np.array([1, 8, 1, 1], dtype=np.int64)),
        const("flat_shape", np.array([0, -1], dtype=np.int64)),
        const("fc_w", wfc),
        const("fc_b", bfc),
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], name="conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("ConstantOfShape", ["offset_shape"], ["offset"], name="offset",
                         value=helper.make_tensor("value", TensorProto.FLOAT, [1], [0.5])),
        helper.make_node("Add", ["relu", "offset"], ["shifted"], name="add_offset"),
        helper.make_node("GlobalAveragePool", ["shifted"], ["gap"], name="gap"),
        helper.make_node("Reshape", ["gap", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "fc_w"], ["fc"], name="fc_matmul"),
        helper.make_node("Add", ["fc", "fc_b"], ["output"], name="fc_bias"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_constants",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 16])])
    model = helper.make_model(graph, producer_name="bricklab make_bundled_models.py",
                              opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6   # the IR version of opset 11, readable by every runtime
    model.doc_string = "bricklab tiny model: weights are Constant nodes, one input from ConstantOfShape"
    onnx.checker.check_model(model, full_check=True)

    # Reference in numpy, compared with onnxruntime.
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((2, 8, 8, 8), np.float32)
    for i in range(8):
        for j in range(8):
            conv[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + 3, j:j + 3], w)
    ref = (np.maximum(conv + b[None, :, None, None], 0) + 0.5).mean(axis=(2, 3)) @ wfc + bfc
    err = float(np.abs(ort_run(model, x) - ref).max())
    assert err < 1e-4, f"tiny_constants: onnxruntime differs from numpy by {err}"

    path = out / "tiny_constants.onnx"
    onnx.save_model(model, str(path))
    print(f"tiny_constants.onnx: {path.stat().st_size} bytes, |ort - numpy| = {err:.2e}")


README = """\
# Bundled models

Small ONNX models for bricklab's demo and tests, generated by
`scripts/make_bundled_models.py` (do not edit by hand: re-run the script).

| file | what |
| --- | --- |
| `resnet18.onnx`, `squeezenet1_1.onnx`, `mobilenet_v2.onnx` | stripped exports from the model zoo (`models/zoo`), input `input` [batch, 3, 224, 224]; run them after `python -m bricklab.zoo materialize IN OUT` |
| `tiny_cnn.onnx` | a tiny CNN with its real weights (opset 13): Conv, BatchNormalization (not folded), Relu, MaxPool, a residual Add, two branches joined by Concat, GlobalAveragePool, Flatten, Gemm; input `input` [batch, 3, 32, 32], output `logits` [batch, 10] |
| `tiny_cnn_ref.npz` | `input` (1x3x32x32) and `output` (PyTorch's output for it), plus `input_b2` / `output_b2` at batch 2; onnxruntime matches within 1e-4 |
| `tiny_external/model.onnx` + `weights.bin` | `tiny_cnn.onnx` saved with all its initializers in the external file `weights.bin` |
| `tiny_constants.onnx` | built with onnx.helper, opset 11: weights are `Constant` nodes (not initializers), one `Add` input comes from `ConstantOfShape`; input `input` [batch, 3, 8, 8], output `output` [batch, 16] |

The stripped-weights convention is described in `docs/model-zoo.md`.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build models/bundled (small demo/test models).")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default models/bundled)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    copy_zoo_models(out)
    make_tiny_cnn(out)
    make_tiny_constants(out)
    (out / "README.md").write_text(README)

    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {total / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
