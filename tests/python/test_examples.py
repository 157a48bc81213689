"""The examples a user reads first must keep working."""
import subprocess
import sys

from conftest import BUNDLED, REPO


def test_python_notebook_example():
    r = subprocess.run([sys.executable, str(REPO / "examples" / "python" / "inspect_model.py"), str(BUNDLED / "resnet18.onnx")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "batch 8:" in r.stdout and "8.00x batch 1" in r.stdout
    assert "critical path:" in r.stdout
