"""The lower-bound report says what it shows: fused steps by their whole group, advice percentages
with their basis and an accounting whose parts add up, and the peer runtimes with --peers."""
import re
import subprocess

import pytest

import bricklab
import bricklab.lowerbound as lb

from conftest import BUNDLED

MODEL = str(BUNDLED / "tiny_cnn.onnx")
QUICK = dict(threads=1, tolerance=0.2, budget_s=0.2, progress=False)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    db = tmp_path_factory.mktemp("report") / "lb.sqlite"
    return lb.analyze(MODEL, db=db, **QUICK), db


def test_the_schedule_labels_fused_steps_by_their_group(analysis):
    a, _ = analysis
    html = lb.render_report(a)
    timeline = html[html.index('id="timeline"'):html.index('id="advice"')]
    boxes = re.findall(r'<text class="in"[^>]*>([^<]*)</text>', timeline)
    titles = re.findall(r"<title>([^<]*)</title>", timeline)
    fused = [g for g in a["groups"] if len(g["layers"]) > 1]
    assert fused
    conv_bn_relu = next(g for g in fused if g["label"] == "Conv+BatchNormalization+Relu")
    assert "Conv+BN+Relu" in boxes  # the box: the whole group, shortened
    assert any(t.startswith("Conv+BatchNormalization+Relu: " + ", ".join(conv_bn_relu["layers"])) for t in titles)
    # No box of a fused group is labelled by the one layer that carries its time.
    carriers = {g["layers"][-1].split("/")[-1] for g in fused}  # e.g. "Relu"
    assert not set(boxes) & carriers - {"Conv"}, boxes


def test_advice_percentages_say_their_basis_and_the_accounting_adds_up(analysis):
    a, _ = analysis
    measured = next(m["ms"] for m in a["measured"] if m["runtime"] == "bricklab")
    gap = a["gap"]
    assert gap["baseline"] == "bricklab measured" and gap["baseline_ms"] == pytest.approx(measured)
    parts = {p["kind"]: p for p in gap["parts"]}
    assert set(parts) == {"runtime", "algorithm", "precision", "parallel"}
    b = a["bounds"]
    assert sum(p["ms"] for p in parts.values()) == pytest.approx(measured - b["parallel_ms"], rel=1e-9, abs=1e-12)
    assert sum(p["pct"] for p in parts.values()) == pytest.approx(100 * (measured - b["parallel_ms"]) / measured)
    assert parts["precision"]["ms"] == pytest.approx(b["sequential_f32_ms"] - b["sequential_ms"])
    # bricklab's runtime advice no longer re-counts the variant choice (algorithm, precision rows).
    runtime = next(x for x in a["advice"] if x["kind"] == "runtime" and x["runtime"] == "bricklab")
    assert runtime["predicted_ms"] == pytest.approx(measured - b["default_sequential_ms"])
    for x in a["advice"]:
        assert x["predicted_pct"] == pytest.approx(100 * x["predicted_ms"] / measured)
    html = lb.render_report(a)
    advice = html[html.index('id="advice"'):]
    assert "its percentage is of the bricklab measured latency" in advice
    assert "Where the time above the parallel bound goes" in advice
    total = re.search(r"<b>total</b></td><td>down to the parallel bound</td><td class=\"n\"><b>([^<]*)</b></td>"
                      r"<td class=\"n\"><b>([0-9.\-]+)%</b>", advice)
    assert total and float(total.group(2)) == pytest.approx(sum(p["pct"] for p in parts.values()), abs=0.06)


def test_lowerbound_cli_prints_the_accounting(cli, analysis):
    _, db = analysis
    r = subprocess.run([cli, "lowerbound", MODEL, "--db", str(db), "--threads", "1", "--tolerance", "0.2", "--budget", "0.2",
                        "--no-apply"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "% of the bricklab measured latency" in r.stdout
    rows = re.findall(r"^  (runtime|algorithm|precision|parallel|total) +(-?[0-9.]+) ms", r.stdout, re.M)
    values = dict((k, float(v)) for k, v in rows)
    assert set(values) == {"runtime", "algorithm", "precision", "parallel", "total"}
    assert sum(v for k, v in values.items() if k != "total") == pytest.approx(values["total"], abs=0.003)


def test_report_peers_measures_onnxruntime_and_openvino(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "r.html"
    r = subprocess.run([cli, "report", MODEL, "--db", str(tmp_path / "lb.sqlite"), "--threads", "1", "--tolerance", "0.2",
                        "--budget", "0.2", "--no-apply", "--peers", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "Measured: onnxruntime" in html and "Measured: bricklab" in html
    try:
        import openvino  # noqa: F401
        assert "Measured: openvino" in html
    except ImportError:
        assert "openvino" in r.stderr and "not installed" in r.stderr
    assert "pytorch" in r.stderr and "not a zoo model" in r.stderr  # said, not silently left out


def test_the_bare_cli_refuses_peers_with_the_way_to_get_them():
    exe = str(BUNDLED.parents[1] / "build" / "bricklab")
    import os
    if not os.access(exe, os.X_OK):
        exe = str(__import__("pathlib").Path(bricklab.__file__).parent / "bin" / "bricklab")
    r = subprocess.run([exe, "report", MODEL, "--peers"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Python package" in r.stderr and "--peers" in r.stderr
