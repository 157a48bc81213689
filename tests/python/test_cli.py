"""The bricklab CLI as a user runs it: tables, JSON, exit codes and one-line errors."""
import json
import subprocess

import pytest

import bricklab

from conftest import BUNDLED


def run(cli, *args):
    return subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_inspect_table_and_totals(cli):
    r = run(cli, "inspect", BUNDLED / "resnet18.onnx", "--batch", "2")
    assert r.returncode == 0, r.stderr
    assert "Conv" in r.stdout and "totals:" in r.stdout and "[2x1000]" in r.stdout


def test_inspect_json_agrees_with_python(cli):
    import bricklab

    r = run(cli, "inspect", BUNDLED / "squeezenet1_1.onnx", "--batch", "4", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    model = bricklab.load(str(BUNDLED / "squeezenet1_1.onnx"), batch=4)
    assert doc["batch"] == 4
    assert len(doc["nodes"]) == len(model.nodes)
    assert doc["totals"]["flops"] == pytest.approx(model.flops)
    assert sum(n["flops"] for n in doc["nodes"]) == pytest.approx(doc["totals"]["flops"])
    assert doc["inputs"][0]["shape"] == [4, 3, 224, 224]


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["inspect", "/no/such/model.onnx"], 1, "no such file"),
        (["inspect", str(BUNDLED / "resnet18.onnx"), "--batch", "zero"], 2, "--batch expects an integer >= 1"),
        (["inspect", str(BUNDLED / "resnet18.onnx"), "--frobnicate"], 2, "unknown option"),
        (["inspect", str(BUNDLED / "resnet18.onnx"), "--dim", "seq=4"], 2, "'seq'"),
        (["inspect"], 2, "exactly one MODEL"),
        (["explode"], 2, "unknown command"),
    ],
)
def test_errors_are_one_line_with_exit_code(cli, args, code, needle):
    r = run(cli, *args)
    assert r.returncode == code
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""


@pytest.mark.parametrize("command", ["inspect", "run", "decompose", "benchmark", "predict", "lowerbound", "report"])
def test_one_wording_for_usage_errors(cli, command):
    """Every command words a bad option value the same way and exits 2."""
    r = run(cli, command, BUNDLED / "tiny_cnn.onnx", "--batch", "x")
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"bricklab {command}: usage error: --batch expects an integer >= 1, got 'x'\n"
    r = run(cli, command, BUNDLED / "tiny_cnn.onnx", "--threads", "-3")
    assert r.returncode == 2 and r.stderr.startswith(f"bricklab {command}: usage error: --threads"), r.stderr
    r = run(cli, command, BUNDLED / "tiny_cnn.onnx", "--frobnicate")
    assert r.returncode == 2 and r.stderr.startswith(f"bricklab {command}: usage error: unknown option '--frobnicate'")


@pytest.mark.parametrize("args", [
    ["run", str(BUNDLED / "tiny_cnn.onnx"), "--repeat", "4294967298"],
    ["benchmark", str(BUNDLED / "tiny_cnn.onnx"), "--max-reps", "4294967297"],
    ["recover", "--obs", "x.npy", "--rank", "4294967297", "--out", "o.npy"],
    ["run", str(BUNDLED / "tiny_cnn.onnx"), "--batch", "99999999999999999999"],
])
def test_out_of_range_integers_are_refused_not_truncated(cli, args):
    r = run(cli, *args)
    assert r.returncode == 2, r.stderr
    assert "usage error" in r.stderr and "expects an integer" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_corrupt_and_hostile_files(cli, tmp_path):
    data = (BUNDLED / "tiny_cnn.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "readme.onnx"
    text.write_text("not a model\n")
    for path in (truncated, text):
        r = run(cli, "inspect", path)
        assert r.returncode == 1
        assert str(path) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_ops_and_info(cli):
    r = run(cli, "ops")
    assert r.returncode == 0 and "Conv" in r.stdout and "LayerNormalization" in r.stdout
    # Per backend: lowered or unsupported, the same as the Python table says.
    r = run(cli, "ops", "--json")
    assert r.returncode == 0
    table = {e["op"]: e for e in json.loads(r.stdout)}
    python_table = {e["op"]: e["backends"] for e in bricklab.supported_ops()}
    assert {op: e["backends"] for op, e in table.items()} == python_table
    assert table["Sum"]["backends"]["cpu"] == "lowered"
    assert all(set(e["backends"].values()) <= {"lowered", "unsupported"} for e in table.values())
    if "cuda" in table["Conv"]["backends"]:  # CUDA compiled in: cuDNN lowers a subset only
        assert table["Conv"]["backends"]["cuda"] == "lowered" and table["LpPool"]["backends"]["cuda"] == "unsupported"
    r = run(cli, "info", "--json")
    assert r.returncode == 0
    info = json.loads(r.stdout)
    assert {b["name"] for b in info["backends"]} == {"cpu", "cuda"}


def test_info_says_plainly_when_there_is_no_gpu(cli):
    import json as _json
    import os as _os
    if _os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has an NVIDIA driver")
    info = _json.loads(run(cli, "info", "--json").stdout)
    cuda = [b for b in info["backends"] if b["name"] == "cuda"]
    if not cuda or not cuda[0]["compiled"]:
        pytest.skip("the CUDA backend is not compiled in this build")
    assert not cuda[0]["available"]
    assert cuda[0]["reason"].startswith("no NVIDIA GPU found"), cuda[0]["reason"]


def test_missing_parent_folders_are_errors_naming_them(cli, tmp_path):
    from conftest import BUNDLED
    model = BUNDLED / "tiny_cnn.onnx"
    missing = tmp_path / "no" / "such"
    cases = [
        ("run", model, "--repeat", "1", "--output-dir", missing / "out"),
        ("decompose", model, "--emit", missing / "bricks"),
        ("predict", model, "--db", missing / "db.sqlite"),
        ("report", model, "--no-measure", "--no-apply", "-o", missing / "r.html"),
    ]
    for args in cases:
        p = run(cli, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert str(missing) in p.stderr and "does not exist" in p.stderr, p.stderr
    assert not (tmp_path / "no").exists(), "a refused command created folders"
    # The last component of an output folder is created, with or without a trailing slash.
    p = run(cli, "run", model, "--repeat", "1", "--output-dir", f"{tmp_path / 'out'}/")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "logits.npy").exists()


def test_emit_says_its_size_and_refuses_huge_output(cli, tmp_path):
    """decompose --emit says how much it writes; above 1 GiB it refuses unless --force."""
    import onnx
    from onnx import TensorProto, helper

    r = run(cli, "decompose", BUNDLED / "tiny_cnn.onnx", "--emit", tmp_path / "bricks")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("writing ") and " ONNX bricks (about " in r.stderr
    assert (tmp_path / "bricks" / "index.json").exists()

    # A stripped model (shapes, no values) whose one weight is 1.3 GB of float32: nothing is written.
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[16384, 20000])
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "big",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 16384])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 20000])], initializer=[w])
    big = tmp_path / "big.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(big))
    r = run(cli, "decompose", big, "--emit", tmp_path / "big_bricks")
    assert r.returncode == 2, r.stderr
    assert "1.31 GB" in r.stderr and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "big_bricks").exists()
    with pytest.raises(ValueError, match="1 GiB"):
        bricklab.bricks.emit(str(big), tmp_path / "py_bricks")
    assert not (tmp_path / "py_bricks").exists()


def test_outputs_whose_names_sanitise_alike_do_not_overwrite_each_other(cli, tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["a/b"]), helper.make_node("Neg", ["x"], ["a_b"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("a/b", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("a_b", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run(cli, "run", path, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out", "--repeat", "1")
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 2, files
    got = sorted(np.load(tmp_path / "out" / f).tolist() for f in files)
    assert got == sorted([np.maximum(x, 0).tolist(), (-x).tolist()])
    assert "'a/b' ->" in r.stderr
