"""Lower bound (Benanza) through Python and the CLI: bounds and invariants, advice, peers stored
and reported, the HTML report, and bad input."""
import json
import os
import subprocess

import pytest

import bricklab
import bricklab.lowerbound as lb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "models", "bundled", "tiny_cnn.onnx")
QUICK = dict(threads=1, tolerance=0.5, budget_s=0.05, warmup=1, min_reps=3, max_reps=20)


def cli():
    exe = os.path.join(ROOT, "build", "bricklab")
    if not os.path.exists(exe):
        pytest.skip("the C++ CLI is not built (build/bricklab): run scripts/build.sh")
    return exe


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("lb") / "lb.sqlite")
    a = lb.analyze(TINY, db=db, peers=True, **QUICK)
    return db, a


def test_bounds_invariants_and_layers(analysis):
    _, a = analysis
    assert a["schema"] == "bricklab.lowerbound/1"
    b = a["bounds"]
    assert 0 < b["roofline_parallel_ms"] <= b["parallel_ms"] <= b["sequential_ms"] <= b["default_sequential_ms"]
    assert b["roofline_sequential_ms"] <= b["sequential_ms"]
    model = bricklab.load(TINY)
    assert [l["name"] for l in a["layers"]] == [n.name for n in model.nodes]
    for l in a["layers"]:
        if l["free"]:
            continue
        assert l["fastest_ms"] <= l["default_ms"]
        assert sum(v["default"] for v in l["variants"]) == 1
        assert min(v["ms"] for v in l["variants"]) == pytest.approx(l["fastest_ms"])
    assert set(a["critical_path"]) <= {l["name"] for l in a["layers"]}
    assert not a["missing"]


def test_peers_are_measured_stored_and_reported(analysis):
    db, a = analysis
    runtimes = {m["runtime"]: m["ms"] for m in a["measured"]}
    try:
        import openvino  # noqa: F401
        peers = {"onnxruntime", "openvino"}
    except ImportError:
        peers = {"onnxruntime"}
    assert set(runtimes) == {"bricklab"} | peers  # tiny_cnn is no zoo model: no PyTorch source
    assert all(ms > 0 for ms in runtimes.values())
    kinds = [(ad["kind"], ad["runtime"]) for ad in a["advice"]]
    assert ("runtime", "onnxruntime") in kinds and ("runtime", "bricklab") in kinds
    for kind in ("algorithm", "fusion", "precision", "parallel"):
        assert kind in {k for k, _ in kinds}
    # Stored: a second analysis without measuring reads the same peers and the same variants.
    again = lb.analyze(TINY, db=db, measure=False, apply=False, **QUICK)
    assert {m["runtime"]: m["ms"] for m in again["measured"]}["onnxruntime"] == pytest.approx(runtimes["onnxruntime"])
    assert again["bounds"]["sequential_ms"] == pytest.approx(a["bounds"]["sequential_ms"])


def test_fusion_advice_is_applied_and_measured(analysis):
    _, a = analysis
    fusion = next(ad for ad in a["advice"] if ad["kind"] == "fusion")
    assert fusion["applied"] and fusion["realised_ms"] is not None
    measured = next(m["ms"] for m in a["measured"] if m["runtime"] == "bricklab")
    assert fusion["realised_pct"] == pytest.approx(100 * fusion["realised_ms"] / measured)


def test_roofline_matches_a_numpy_gemm_order_of_magnitude(analysis):
    db, _ = analysis
    m = lb.roofline(db=db, measure=False, **QUICK)
    assert m["peak_gflops"]["fp32"] > 1
    assert m["bandwidth_gbs"] > 0.5
    # Independent check against numpy's BLAS (up to all cores) on a large GEMM: the one-thread
    # peak can be neither far below it nor above what every core at that peak could do.
    import time

    import numpy as np

    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    a @ a
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    numpy_gflops = 2 * 1024 ** 3 / best / 1e9
    cores = os.cpu_count() or 1
    assert m["peak_gflops"]["fp32"] >= 0.25 * numpy_gflops / cores
    assert numpy_gflops <= 1.5 * cores * m["peak_gflops"]["fp32"]


def test_report_html_is_self_contained(analysis, tmp_path):
    _, a = analysis
    html = lb.render_report(a)
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "<svg" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "<link" not in html


def test_cli_lowerbound_and_report(analysis, tmp_path):
    db, _ = analysis
    exe = cli()
    out = subprocess.run([exe, "lowerbound", TINY, "--db", db, "--no-measure", "--json", "--tolerance", "0.5", "--budget", "0.05"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    assert j["bounds"]["parallel_ms"] <= j["bounds"]["sequential_ms"]
    html = tmp_path / "r.html"
    out = subprocess.run([exe, "report", TINY, "--db", db, "--no-measure", "-o", str(html), "--tolerance", "0.5", "--budget", "0.05"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "<svg" in html.read_text()


def test_cli_bad_input(tmp_path):
    exe = cli()
    out = subprocess.run([exe, "lowerbound", TINY, "--backend", "tpu"], capture_output=True, text=True)
    assert out.returncode == 2 and "--backend expects cpu or cuda" in out.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = subprocess.run([exe, "lowerbound", str(bad), "--db", str(tmp_path / "x.sqlite")], capture_output=True, text=True)
    assert out.returncode == 1 and "bad.onnx" in out.stderr
    out = subprocess.run([exe, "lowerbound", TINY, "--db", "postgresql://nobody@127.0.0.1:1/nowhere"], capture_output=True, text=True)
    assert out.returncode == 1 and "127.0.0.1" in out.stderr  # unreachable database: named, no crash
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database" * 100)
    out = subprocess.run([exe, "lowerbound", TINY, "--db", str(corrupt)], capture_output=True, text=True)
    assert out.returncode == 1 and "corrupt.sqlite" in out.stderr
    assert corrupt.read_bytes() == b"this is not a database" * 100  # nothing overwritten


def test_store_peer_rejects_non_finite(tmp_path):
    g = bricklab.load(TINY)
    with pytest.raises(ValueError, match="finite"):
        bricklab._core.lowerbound_store_peer(g, "onnxruntime", str(tmp_path / "p.sqlite"), {"threads": 1}, [1.0, float("nan")])
