"""The CUDA backend through the Python API: bricklab.backends() reports it with a reason when it
cannot run; checks that need a GPU skip with that reason (the GPU itself is tested in C++:
ctest -R cuda)."""
import inspect

import numpy as np
import pytest

import bricklab
from conftest import BUNDLED


def _cuda():
    entries = [b for b in bricklab.backends() if b["name"] == "cuda"]
    assert len(entries) == 1, bricklab.backends()
    return entries[0]


def test_backends_reports_cuda_with_a_reason():
    cuda = _cuda()
    assert set(cuda) >= {"compiled", "available", "library", "device", "reason"}
    if cuda["available"]:
        assert cuda["compiled"] and cuda["device"] and cuda["reason"] == ""
    else:
        # Not compiled in, or no GPU / driver: the reason says which.
        assert cuda["reason"], cuda
    if cuda["compiled"]:
        assert "cuDNN" in cuda["library"]


def test_cuda_session_matches_cpu():
    cuda = _cuda()
    if not cuda["available"]:
        pytest.skip(f"no GPU: {cuda['reason']}")
    if "backend" not in inspect.signature(bricklab.Session.__init__).parameters and "backend" not in (bricklab.Session.__init__.__doc__ or ""):
        pytest.skip("bricklab.Session takes no backend= argument; the CUDA backend is tested in C++ (ctest -R cuda)")
    ref = np.load(BUNDLED / "tiny_cnn_ref.npz")
    gpu = bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), backend="cuda")
    out = gpu.run({"input": ref["input"]})["logits"]
    np.testing.assert_allclose(out, ref["output"], rtol=1e-4, atol=1e-5)
