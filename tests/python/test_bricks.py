"""Bricks (DLBricks): emitted ONNX bricks against ONNX Runtime and the bricklab engine on the
original nodes, the decomposition API, the CLI workflow and its errors, crash-resume of a
killed benchmark, and the PostgreSQL work queue with three concurrent workers."""
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import bricklab
from bricklab import zoo

from conftest import BUNDLED, REPO, ZOO

FAST = ["--min-reps", "3", "--warmup", "1", "--tolerance", "0.5", "--budget", "0.5"]
FAST_KW = dict(min_reps=3, warmup=1, tolerance=0.5, budget_s=0.5)


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """Zoo models with random weights (so emitted bricks carry the same values as the model)."""
    out = tmp_path_factory.mktemp("bricks_models")
    paths = {}
    for name in ["resnet18", "mobilenet_v3_small"]:
        paths[name] = str(out / f"{name}.onnx")
        zoo.materialize_file(str(ZOO / f"{name}.onnx"), paths[name], seed=0)
    return paths


def ort_run(model_bytes, feeds):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    return sess, sess.run(None, feeds)


def check_brick(model, nodes, onnx_bytes, rng):
    """The emitted brick passes the checker, and ORT on it equals the bricklab engine on the
    original nodes (extracted from the model) for the same random inputs."""
    proto = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        assert i.type == "tensor(float)", i
        feeds[i.name] = rng.standard_normal(i.shape).astype(np.float32)
    _, got = ort_run(onnx_bytes, feeds)
    ref = bricklab.Session(bricklab.bricks.subgraph(model, nodes), threads=1).run(feeds)
    names = [o.name for o in sess.get_outputs()]
    assert sorted(names) == sorted(ref)
    for name, value in zip(names, got):
        np.testing.assert_allclose(value, ref[name], rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(ref[name]).max())))


def test_emitted_fused_bricks_match_onnxruntime(materialized, tmp_path):
    model = bricklab.load(materialized["resnet18"], batch=2)
    d = bricklab.bricks.decompose(model)
    files = d.emit(str(tmp_path))
    assert len(files) == d.unique and d.unique >= 15
    rng = np.random.default_rng(0)
    for brick, path in zip(d.bricks, files):
        assert os.path.basename(path) == brick["id"] + ".onnx"
        with open(path, "rb") as f:
            check_brick(model, brick["nodes"], f.read(), rng)
    labels = {b["label"] for b in d.bricks}
    assert "Conv+Relu" in labels and "Conv+Add+Relu" in labels  # the engine's fused units


def test_emitted_single_op_bricks_match_onnxruntime(materialized):
    # One brick per operator of MobileNet-v3 (HardSigmoid, GlobalAveragePool, Mul, Gemm, ...).
    model = bricklab.load(materialized["mobilenet_v3_small"])
    d = bricklab.bricks.decompose(model, granularity="op")
    assert d.instances == len(model.nodes)
    rng = np.random.default_rng(1)
    seen = set()
    for brick in d.bricks:
        if brick["label"] in seen:
            continue
        seen.add(brick["label"])
        check_brick(model, brick["nodes"], bricklab.bricks.to_onnx(bricklab.bricks.subgraph(model, brick["nodes"])), rng)
    assert {"Conv", "HardSigmoid", "GlobalAveragePool", "Mul", "Gemm", "Add"} <= seen


def test_stripped_model_bricks_are_runnable(tmp_path):
    # The zoo's stripped models: emitted bricks get random weights of the right shape and run in ORT.
    d = bricklab.bricks.decompose(str(ZOO / "squeezenet1_1.onnx"))
    files = d.emit(str(tmp_path), weight_seed=3)
    for path in files[:6]:
        proto = onnx.load(path)
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == 13
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = {i.name: np.ones(i.shape, np.float32) for i in sess.get_inputs()}
        out = sess.run(None, feeds)
        assert all(np.isfinite(o).all() for o in out)


def test_keys_shared_across_models_and_batches():
    d = bricklab.bricks.decompose([str(ZOO / "resnet18.onnx"), str(ZOO / "resnet34.onnx")])
    shared = [b for b in d.bricks if len(b["per_model"]) == 2]
    assert len(shared) >= 10
    assert d.instances == sum(b["multiplicity"] for b in d.bricks)
    d8 = bricklab.bricks.decompose(str(ZOO / "resnet18.onnx"), batch=8)
    assert not {b["key"] for b in d8.bricks} & {b["key"] for b in d.bricks}
    m = bricklab.load(str(BUNDLED / "resnet18.onnx"))
    conv = next(n.name for n in m.nodes if n.op == "Conv")
    assert bricklab.bricks.node_key(m, conv).startswith("Conv{")


def test_output_eviction_option_in_the_fingerprint():
    """evict_outputs: False (the default), True (the L2 size) or a byte count; the threshold is
    part of the fingerprint, so results taken with different settings never mix."""
    default = bricklab.bricks.fingerprint(threads=1)
    assert "evict_outputs" not in json.loads(default["json"])
    assert bricklab.bricks.fingerprint(threads=1, evict_outputs=False) == default
    on = bricklab.bricks.fingerprint(threads=1, evict_outputs=True)
    l2 = json.loads(on["json"])["evict_outputs"]
    assert l2 >= 64 * 1024 and on["id"] != default["id"]
    assert bricklab.bricks.fingerprint(threads=1, evict_outputs=l2) == on
    assert json.loads(bricklab.bricks.fingerprint(threads=1, evict_outputs=4096)["json"])["evict_outputs"] == 4096
    with pytest.raises(bricklab.InvalidArgument, match="evict_outputs"):
        bricklab.bricks.fingerprint(threads=1, evict_outputs=-5)


def test_cli_decompose_emit_and_json(cli, tmp_path):
    out = subprocess.run([cli, "decompose", str(ZOO / "resnet18.onnx"), str(ZOO / "resnet34.onnx"), "--json",
                          "--emit", str(tmp_path / "bricks")], capture_output=True, text=True, check=True)
    j = json.loads(out.stdout)
    assert j["granularity"] == "fused" and j["unique"] == len(j["bricks"]) and j["instances"] > j["unique"]
    index = json.loads((tmp_path / "bricks" / "index.json").read_text())
    assert len(index) == j["unique"]
    for entry in index[:5]:
        onnx.checker.check_model(onnx.load(str(tmp_path / "bricks" / entry["file"])), full_check=True)
    text = subprocess.run([cli, "decompose", str(ZOO / "resnet18.onnx"), "--granularity", "seq:2"],
                          capture_output=True, text=True, check=True).stdout
    assert "granularity seq:2" in text


@pytest.mark.parametrize("args, rc, message", [
    (["decompose", "MODEL", "--granularity", "bogus"], 2, "unknown granularity 'bogus'"),
    (["decompose", "MODEL", "--granularity", "seq:0"], 2, "seq:K"),
    (["decompose", "MODEL", "--frobnicate"], 2, "unknown option '--frobnicate'"),
    (["decompose", "CORRUPT"], 1, "corrupt.onnx"),
    (["predict", "MODEL", "--db", "MISSINGDB"], 1, "no results database"),
    (["predict", "MODEL", "--db", "postgresql://u:pw@127.0.0.1:1/x?connect_timeout=2"], 1, "cannot connect"),
    (["benchmark", "MODEL", "--db", "mysql://h/x"], 1, "mysql://h/x: unknown database URL scheme"),
    (["benchmark", "MODEL", "--db", "DB", "--queue", "s"], 2, "work-queue mode needs a PostgreSQL"),
])
def test_cli_errors(cli, tmp_path, args, rc, message):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    subst = {"MODEL": str(BUNDLED / "tiny_cnn.onnx"), "CORRUPT": str(corrupt), "MISSINGDB": str(tmp_path / "none.sqlite"),
             "DB": str(tmp_path / "db.sqlite")}
    r = subprocess.run([cli] + [subst.get(a, a) for a in args], capture_output=True, text=True)
    assert r.returncode == rc, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_benchmark_then_predict_workflow(cli, tmp_path):
    db = str(tmp_path / "r.sqlite")
    model = str(BUNDLED / "resnet18.onnx")
    first = json.loads(subprocess.run([cli, "benchmark", model, "--db", db, "--json"] + FAST,
                                      capture_output=True, text=True, check=True).stdout)
    assert first["measured"] == first["bricks"] and first["already_stored"] == 0
    again = json.loads(subprocess.run([cli, "benchmark", model, "--db", db, "--json"] + FAST,
                                      capture_output=True, text=True, check=True).stdout)
    assert again["measured"] == 0 and again["already_stored"] == first["bricks"]  # never benchmarked twice
    p = json.loads(subprocess.run([cli, "predict", model, "--db", db, "--json"], capture_output=True, text=True,
                                  check=True).stdout)
    assert p["complete"] and not p["missing"]
    assert p["sum_ms"] > 0
    assert p["critical_path_ms"] <= p["sum_ms"] + 1e-9
    assert abs(p["steps_ms"] + p["reorders_ms"] + p["overhead_ms"] - p["sum_ms"]) < 1e-9
    assert abs(sum(b["ms"] for b in p["bricks"]) - p["steps_ms"]) < 1e-6
    # The prediction's CI, recomputed from the stored results: a brick used m times contributes
    # m x its half-width; distinct bricks (and reorders, run overhead) add in quadrature.
    con = sqlite3.connect(db)
    stored = {k: (med, ci) for k, med, ci in con.execute("SELECT brick_key, median_ms, ci_rel FROM results")}
    con.close()
    d = bricklab.bricks.decompose(model)
    key_of = {b["id"]: b["key"] for b in d.bricks}
    half = {}
    for u in d.models[0]["uses"]:
        med, ci = stored[key_of[u["id"]]]
        half[u["id"]] = half.get(u["id"], 0.0) + med * ci
    assert p["ci_ms"] > 0
    assert p["ci_ms"] >= math.sqrt(sum(h * h for h in half.values())) - 1e-9
    # Python API, same database and settings: same prediction.
    py = bricklab.predict(model, db=db)
    assert py["sum_ms"] == pytest.approx(p["sum_ms"])
    # Another fingerprint (2 threads) has no results: everything is listed missing, nothing skipped.
    r = subprocess.run([cli, "predict", model, "--db", db, "--threads", "2"], capture_output=True, text=True)
    assert r.returncode == 1 and "missing" in r.stdout
    # A model with bricks the database lacks: listed by id.
    # (ResNet-34 would be complete: every one of its bricks occurs in ResNet-18.)
    r = subprocess.run([cli, "predict", str(BUNDLED / "mobilenet_v2.onnx"), "--db", db, "--json"], capture_output=True,
                       text=True)
    j = json.loads(r.stdout)
    assert r.returncode == 1 and not j["complete"] and j["missing"]
    assert {b["id"] for b in j["bricks"] if b["missing"]}
    # Python: the same gap is a typed error listing the missing bricks, not a silent partial sum.
    with pytest.raises(bricklab.bricks.MissingBricksError) as err:
        bricklab.predict(BUNDLED / "mobilenet_v2.onnx", db=db)
    assert isinstance(err.value, LookupError) and isinstance(err.value, bricklab.Error)
    assert set(err.value.missing) == set(j["missing"]) and err.value.missing[0] in str(err.value)
    assert "allow_missing=True" in str(err.value)
    partial = bricklab.predict(BUNDLED / "mobilenet_v2.onnx", db=db, allow_missing=True)
    assert not partial["complete"] and partial["sum_ms"] == pytest.approx(j["sum_ms"])


def rows(db, clean_only=False):
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT brick_key, fingerprint, median_ms, created_at FROM results" +
                           (" WHERE noisy <> 1" if clean_only else "")).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def test_killed_benchmark_resumes_without_loss_or_duplicates(cli, tmp_path):
    db = str(tmp_path / "r.sqlite")
    models = [str(BUNDLED / "resnet18.onnx"), str(ZOO / "resnet34.onnx")]
    slow = ["--min-reps", "1000", "--max-reps", "1000", "--tolerance", "1e-9", "--budget", "0.25", "--warmup", "0"]
    proc = subprocess.Popen([cli, "benchmark", *models, "--db", db, "--no-progress"] + slow,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(rows(db)) < 4:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = rows(db)
    # Rows stored marked noisy (a busy machine) are measured again by the next benchmark, by design.
    before_clean = rows(db, clean_only=True)
    assert proc.returncode == -signal.SIGKILL
    total = json.loads(subprocess.run([cli, "decompose", *models, "--json"], capture_output=True, text=True,
                                      check=True).stdout)["unique"]
    assert 4 <= len(before) and len({r[0] for r in before}) < total + 2  # killed mid-run
    r = subprocess.run([cli, "benchmark", *models, "--db", db, "--json"] + FAST, capture_output=True, text=True, check=True)
    summary = json.loads(r.stdout)
    after = rows(db)
    keys = [(k, f) for k, f, _, _ in after]
    assert len(keys) == len(set(keys))  # nothing duplicated
    assert set(before_clean) <= set(after)  # everything clean committed before the kill is kept, unchanged
    brick_keys = {k for k, _ in keys if not k.startswith("reorder|")}
    assert len(brick_keys) == summary["bricks"]
    assert summary["already_stored"] >= len([k for k, _, _, _ in before_clean if not k.startswith("reorder|")])
    p = json.loads(subprocess.run([cli, "predict", models[1], "--db", db, "--json", "--accept-noisy"], capture_output=True,
                                  text=True, check=True).stdout)
    assert p["complete"]


@pytest.mark.skipif(not os.environ.get("BRICKLAB_TEST_PG_URL"),
                    reason="BRICKLAB_TEST_PG_URL not set (scripts/test.sh starts a PostgreSQL server on loopback)")
def test_postgres_work_queue_three_workers(cli):
    url = os.environ["BRICKLAB_TEST_PG_URL"]
    suite = f"pytest-{os.getpid()}-{time.time_ns()}"
    models = [str(BUNDLED / "resnet18.onnx"), str(ZOO / "resnet34.onnx"), str(ZOO / "vgg11.onnx")]
    # A fingerprint of its own (cold weights, fusion on) so earlier runs on this server do not count.
    common = ["benchmark", *models, "--db", url, "--queue", suite, "--json", "--cold-weights", "--min-reps", "3",
              "--warmup", "0", "--tolerance", "0.5", "--budget", "0.3"]
    env = dict(os.environ, BRICKLAB_FINGERPRINT_LABEL=suite)
    workers = [subprocess.Popen([cli, *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(3)]
    outs = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err
    summaries = [json.loads(out) for out, _ in outs]
    total = summaries[0]["bricks"]
    assert all(s["bricks"] == total for s in summaries)
    assert min(s["queue"]["pending"] for s in summaries) == 0  # the last worker to finish sees the suite done
    # Disjoint claims: every brick measured exactly once across the three workers.
    assert sum(s["measured"] for s in summaries) == total
    q = subprocess.run(["psql", url, "-tA", "-v", "suite=" + suite],
                       input="SELECT count(*), sum(claims), count(DISTINCT worker), count(*) FILTER (WHERE state = 'done') "
                             "FROM bricklab_queue WHERE suite = :'suite';", capture_output=True, text=True)
    if q.returncode == 0 and q.stdout.strip():
        n, claims, distinct_workers, done = map(int, q.stdout.strip().split("|"))
        assert n == total and claims == total and done == total
        assert distinct_workers >= 2
    # Three workers on this machine's cores oversubscribe it on purpose, so some bricks may be
    # stored marked noisy (docs/measurement-quality.md): the queue is what is tested here.
    check = subprocess.run([cli, "predict", models[2], "--db", url, "--cold-weights", "--json", "--accept-noisy"],
                           capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    p = json.loads(check.stdout)
    assert p["complete"] and p["noisy_accepted"] and not p["missing"]


def test_evaluation_script_end_to_end(tmp_path):
    """The committed evaluation script runs on a small suite and writes consistent numbers."""
    out, report, plot = tmp_path / "e.json", tmp_path / "e.md", tmp_path / "e.png"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bricks_evaluation.py"), "--models",
                        "mobilenet_v3_small,squeezenet1_1", "--batches", "1", "--tolerance", "0.1", "--budget", "0.3",
                        "--e2e-budget", "1", "--burn-in", "0", "--reference-passes", "2", "--ort", "1", "--out", str(out),
                        "--report", str(report), "--plot", str(plot)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    b = res["bricklab"][0]
    assert [row["model"] for row in b["rows"]] == ["mobilenet_v3_small", "squeezenet1_1"]
    assert b["unique"] <= b["instances"]
    assert b["e2e_budget_s"] == 1 and len(b["e2e_budget_pass_wall_s"]) == 1
    assert b["speedup"] == pytest.approx(b["e2e_wall_s"] / b["bricks_wall_s"])
    for row in b["rows"]:
        assert row["pred_ms"] > 0 and row["meas_ms"] > 0 and len(row["meas_passes_ms"]) == 2
        assert row["accuracy"] == pytest.approx(1 - abs(row["pred_ms"] - row["meas_ms"]) / row["meas_ms"])
    # ONNX Runtime from the emitted bricks: mobilenet_v3_small's SE blocks leave ORT's blocked
    # (NCHWc) layout, so both the standalone bricks and the whole model convert layouts, and the
    # model's conversions have the shapes of conversions measured in the bricks.
    (o,) = res["ort"]["rows"]
    assert o["model"] == "mobilenet_v3_small" and o["meas_ms"] > 0
    assert o["brick_conversions_ms"] > 0 and o["model_conversions"] > 10
    assert o["model_conversions_matched"] == o["model_conversions"] and o["model_conversions_ms"] > 0
    assert o["pred_ms"] == pytest.approx(o["pred_with_conversions_ms"] - o["brick_conversions_ms"] + o["model_conversions_ms"])
    text = report.read_text()
    assert "| mobilenet_v3_small |" in text and "speedup" in text and "ReorderInput" in text
    assert plot.stat().st_size > 1000
