"""Every zoo model loads, and bricklab's FLOP counts agree with an independent count: MACs
measured on the PyTorch module with forward hooks when the zoo was exported (MANIFEST.json)."""
import pytest

import bricklab
from conftest import ZOO

MATMUL_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"}


def multiply_adds(model):
    """MACs of the matrix-product operators, excluding the bias/C additions that FLOPs include."""
    macs = 0.0
    for node in model.nodes:
        if node.op not in MATMUL_OPS:
            continue
        extra = 0.0
        if node.op in ("Conv", "ConvTranspose", "Gemm") and len(node.inputs) > 2 and node.inputs[2] is not None:
            extra = node.outputs[0].numel  # one add per output element for the bias / C term
        macs += (node.flops - extra) / 2
    return macs


def manifest_models():
    import json

    return json.loads((ZOO / "MANIFEST.json").read_text())["models"]


def test_zoo_has_50_models_in_5_families(manifest):
    models = manifest["models"]
    assert len(models) >= 50
    assert {m["family"] for m in models} >= {"classification", "mobile", "transformer", "segmentation", "video"}


@pytest.mark.parametrize("entry", manifest_models(), ids=lambda e: e["name"])
def test_zoo_model_loads_and_matches_reference_macs(entry):
    path = str(ZOO / entry["file"])
    m1 = bricklab.load(path, batch=1)
    m2 = bricklab.load(path, batch=2)
    assert len(m1.nodes) > 0 and m1.flops > 0
    # Work is linear in the batch, up to batch-independent parts (e.g. Swin's window-mask adds).
    assert m2.flops == pytest.approx(2 * m1.flops, rel=1e-3)
    ours = multiply_adds(m1)
    if entry["ref_macs_complete"]:
        assert ours == pytest.approx(entry["ref_macs"], rel=0.01), f"ours {ours:.4g} vs torch hooks {entry['ref_macs']:.4g}"
    else:
        assert ours >= entry["ref_macs_convlinear"] * 0.99


def test_resnet50_published_gmacs():
    model = bricklab.load(str(ZOO / "resnet50.onnx"))
    assert model.flops / 1e9 == pytest.approx(8.2, rel=0.05)  # ~4.1 GMACs as commonly published
    assert multiply_adds(model) / 1e9 == pytest.approx(4.1, rel=0.02)
