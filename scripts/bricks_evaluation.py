#!/usr/bin/env python3
"""DLBricks evaluation: predicted vs measured end-to-end latency on the model zoo, and the
benchmarking-time speedup of timing only the unique bricks.

For each batch size:
  1. decompose the suite into fused bricks (the engine's own fused groups);
  2. benchmark every unique brick into a fresh SQLite database (the runner: warm-up, then
     repetitions until the median's 95% CI is within --tolerance, or --budget seconds);
  3. measure every whole model end to end with the same runner, the same tolerance, the same
     threads and engine settings (the pass whose time the speedup counts with --e2e-budget, so
     that models converge like the bricks do: the speedup compares equal confidence; the other
     reference passes with --budget, and their time is reported too);
  4. predict every model from the database (sum of brick times + reorders between bricks +
     the measured per-run overhead) and compare.
Nothing is fitted to the measured model latencies.

Optionally (--ort N) the same for ONNX Runtime on the first N models at batch 1: the emitted
ONNX bricks are timed in ORT and each model's ORT latency is predicted as the sum of its bricks.

Writes a JSON file with every number, a markdown report and the predicted-vs-measured plot.
"""
import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
ZOO = REPO / "models" / "zoo"

import bricklab  # noqa: E402


def load_avg():
    try:
        la = os.getloadavg()
        psi = pathlib.Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return {"loadavg": la, "cpu_pressure": psi}
    except OSError:
        return {}


def metrics(rows, pred_key="pred_ms", meas_key="meas_ms"):
    errs = [(r[pred_key] - r[meas_key]) / r[meas_key] for r in rows]
    acc = [1 - abs(e) for e in errs]
    return {
        "models": len(rows),
        "mean_accuracy": statistics.mean(acc),
        "min_accuracy": min(acc),
        "within_5": sum(abs(e) <= 0.05 for e in errs) / len(errs),
        "within_10": sum(abs(e) <= 0.10 for e in errs) / len(errs),
        "rmspe": math.sqrt(statistics.mean(e * e for e in errs)),
        "mean_signed_error": statistics.mean(errs),
    }


def run_bricklab(names, manifest, batch, opts, workdir, reference_passes=1, e2e_budget=None):
    paths = [str(ZOO / manifest[n]["file"]) for n in names]
    t0 = time.time()
    d = bricklab.bricks.decompose(paths, batch=batch, threads=opts["threads"])
    decompose_s = time.time() - t0
    db = str(workdir / f"bricks_b{batch}.sqlite")
    print(f"[b{batch}] {len(paths)} models: {d.instances} layer instances, {d.unique} unique bricks "
          f"(decomposition {decompose_s:.1f} s); benchmarking bricks ...", flush=True)
    t0 = time.time()
    summary = d.benchmark(db, opts)
    bricks_wall = time.time() - t0
    print(f"[b{batch}] bricks: {summary['measured']} measured in {bricks_wall:.1f} s; models end to end ...", flush=True)
    rows = []
    e2e_wall = 0.0
    # Reference latencies: one pass over the suite is the end-to-end benchmark whose time the
    # speedup counts; the other passes (before it, over the whole suite, so minutes apart for
    # each model) measure every model again.
    # On this VM a model's latency moves by up to ~10% between phases minutes apart while each
    # measurement's own CI is ~1-3%, so the reference is the median over the passes.
    extra = {name: [] for name in names}
    extra_walls, extra_converged = [], []
    for k in range(1, reference_passes):
        if k == 1:
            print(f"[b{batch}] {reference_passes - 1} more reference pass(es) over the models ...", flush=True)
        t0, conv = time.time(), 0
        for name, path in zip(names, paths):
            m = bricklab.bricks.measure_model(path, batch=batch, **opts)
            extra[name].append(m["median_ms"])
            conv += bool(m["converged"])
        extra_walls.append(time.time() - t0)
        extra_converged.append(conv)
    # The pass the speedup counts: to convergence (--e2e-budget), as the bricks are measured.
    e2e_opts = dict(opts, budget_s=e2e_budget if e2e_budget else opts["budget_s"])
    for i, (name, path) in enumerate(zip(names, paths)):
        t0 = time.time()
        m = bricklab.bricks.measure_model(path, batch=batch, **e2e_opts)
        e2e_wall += time.time() - t0
        passes = [m["median_ms"]] + extra[name]
        m = dict(m, first_ms=m["median_ms"], median_ms=statistics.median(passes), passes_ms=passes)
        p = d.predict(i, db, opts)
        if not p["complete"]:
            raise SystemExit(f"{name}: prediction incomplete, missing {p['missing'][:3]}")
        row = {"model": name, "family": manifest[name]["family"], "batch": batch, "meas_ms": m["median_ms"],
               "meas_ci_rel": m["ci_rel"], "meas_reps": m["reps"], "meas_converged": m["converged"],
               "pred_ms": p["sum_ms"], "pred_cp_ms": p["critical_path_ms"], "steps_ms": p["steps_ms"],
               "reorders_ms": p["reorders_ms"], "overhead_ms": p["overhead_ms"],
               "reorders_estimated": p["reorders_estimated"], "bricks_used": len(p["bricks"]),
               "pred_ci_rel": p["ci_ms"] / p["sum_ms"], "meas_e2e_ms": m["first_ms"], "meas_passes_ms": m["passes_ms"],
               "meas_pass_spread": (max(m["passes_ms"]) - min(m["passes_ms"])) / m["median_ms"]}
        row["accuracy"] = 1 - abs(row["pred_ms"] - row["meas_ms"]) / row["meas_ms"]
        rows.append(row)
        print(f"  {name:<30} b{batch} measured {row['meas_ms']:9.2f} ms  predicted {row['pred_ms']:9.2f} ms  "
              f"acc {row['accuracy']:.3f}", flush=True)
    import sqlite3
    con = sqlite3.connect(db)
    brick_stats = con.execute("SELECT count(*), sum(converged), avg(ci_rel), sum(wall_s) FROM results "
                              "WHERE brick_key NOT LIKE 'reorder|%'").fetchone()
    con.close()
    return {
        "batch": batch, "rows": rows, "instances": d.instances, "unique": d.unique,
        "decompose_s": decompose_s, "bricks_wall_s": bricks_wall, "e2e_wall_s": e2e_wall,
        "e2e_budget_s": e2e_opts["budget_s"],
        # the reference passes, measured with --budget (models may stop unconverged)
        "e2e_budget_pass_wall_s": extra_walls, "e2e_budget_pass_converged": extra_converged,
        "speedup": e2e_wall / bricks_wall, "speedup_with_decomposition": e2e_wall / (bricks_wall + decompose_s),
        "bricks_measured": summary["measured"], "bricks_converged": brick_stats[1], "bricks_mean_ci_rel": brick_stats[2],
        "models_converged": sum(r["meas_converged"] for r in rows),
        "models_mean_ci_rel": statistics.mean(r["meas_ci_rel"] for r in rows),
        "pred_mean_ci_rel": statistics.mean(r["pred_ci_rel"] for r in rows),
        "pred_max_ci_rel": max(r["pred_ci_rel"] for r in rows),
        "metrics": metrics(rows),
        "reference_passes": reference_passes,
        "metrics_single_pass": metrics(rows, meas_key="meas_e2e_ms"),
        "mean_pass_spread": statistics.mean(r["meas_pass_spread"] for r in rows),
        "max_pass_spread": max(r["meas_pass_spread"] for r in rows),
    }


def ort_measure(sess, feeds, opts):
    """The same stopping rule and clock as the bricklab runner, in Python, for ONNX Runtime
    sessions (with one intra-op thread ORT runs on the calling thread, so its CPU clock works)."""
    clock = time.thread_time if opts.get("clock") == "cpu" else time.perf_counter
    for _ in range(opts["warmup"]):
        sess.run(None, feeds)
    samples = []
    t_start = time.perf_counter()
    while True:
        t0 = clock()
        sess.run(None, feeds)
        samples.append((clock() - t0) * 1e3)
        n = len(samples)
        if n >= opts["min_reps"]:
            lo, hi = bricklab._core.bricks_median_ci(samples)
            med = statistics.median(samples)
            if (hi - lo) / 2 <= opts["tolerance"] * med:
                break
        if n >= opts["max_reps"] or (n >= 3 and time.perf_counter() - t_start > opts["budget_s"]):
            break
    return statistics.median(samples)


def run_ort(names, manifest, opts, workdir):
    import onnxruntime as ort
    from bricklab import zoo

    def session(path_or_bytes, profile=False):
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts["threads"]
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = str(workdir / "ort_profile")
        return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])

    def feeds_for(sess):
        rng = np.random.default_rng(0)
        return {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
                for i in sess.get_inputs()}

    def conversion_key(op, shape):
        return op, tuple(int(d) for d in shape)

    def boundary_conversions(path, runs=10):
        """The layout conversions ORT adds to a standalone brick: (median per-run total ms,
        {conversion key: median ms}).

        ORT's NCHWc transformer runs convolutions (and the pooling, Add, Concat and activations
        around them) in a blocked layout, converting with ReorderInput / ReorderOutput nodes where
        a blocked region starts and ends. In a whole model a region spans many layers; in an
        emitted brick it starts and ends at the brick. ORT's profiler gives each node's kernel
        time; a conversion is keyed by its operator and its plain-layout shape (ReorderInput's
        input, ReorderOutput's output).
        """
        sess = session(path, profile=True)
        feeds = feeds_for(sess)
        for _ in range(2):
            sess.run(None, feeds)
        for _ in range(runs):
            sess.run(None, feeds)
        trace = pathlib.Path(sess.end_profiling())
        events = json.loads(trace.read_text())
        trace.unlink()
        model_runs = [e for e in events if e.get("name") == "model_run"][2:]
        kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
                   and str(e.get("args", {}).get("op_name", "")).startswith("Reorder")]
        totals, per_key = [], {}
        for r in model_runs:
            mine = [k for k in kernels if r["ts"] <= k["ts"] <= r["ts"] + r["dur"]]
            totals.append(sum(k["dur"] for k in mine) / 1e3)
            seen = {}
            for k in mine:
                a = k["args"]
                op = a["op_name"]
                shape = (a["input_type_shape"] if op == "ReorderInput" else a["output_type_shape"])[0]
                key = conversion_key(op, next(iter(shape.values())))
                seen[key] = seen.get(key, 0.0) + k["dur"] / 1e3
            for key, ms in seen.items():
                per_key.setdefault(key, []).append(ms)
        total = statistics.median(totals) if totals else 0.0
        return total, {k: statistics.median(v) for k, v in per_key.items()}

    def model_conversions(full_path):
        """The conversions ORT puts into the whole model: read off its optimized graph (no timing),
        as conversion keys."""
        import onnx
        opt = workdir / "ort_optimized.onnx"
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts["threads"]
        so.log_severity_level = 3
        so.optimized_model_filepath = str(opt)
        ort.InferenceSession(str(full_path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(opt)).graph
        opt.unlink()
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(full_path))).graph
        # symbolic dims (the zoo's batch) are 1 here: the ORT part runs at batch 1
        shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
                  for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output)}
        keys = []
        for n in graph.node:
            if n.op_type in ("ReorderInput", "ReorderOutput"):
                tensor = n.input[0] if n.op_type == "ReorderInput" else n.output[0]
                if tensor in shapes:
                    keys.append(conversion_key(n.op_type, shapes[tensor]))
        return keys

    paths = [str(ZOO / manifest[n]["file"]) for n in names]
    d = bricklab.bricks.decompose(paths, batch=1, threads=opts["threads"])
    brick_dir = workdir / "ort_bricks"
    files = d.emit(str(brick_dir))
    t0 = time.time()
    brick_ms, brick_conv_ms, measured_conversions = {}, {}, {}
    for b, f in zip(d.bricks, files):
        s = session(f)
        brick_ms[b["id"]] = ort_measure(s, feeds_for(s), opts)
        total, per_key = boundary_conversions(f)
        brick_conv_ms[b["id"]] = min(total, brick_ms[b["id"]])
        for key, ms in per_key.items():
            measured_conversions.setdefault(key, []).append(ms)
    conversion_ms = {k: statistics.median(v) for k, v in measured_conversions.items()}

    def price(key):
        """A model conversion's time: the median of the same conversion measured in the bricks,
        else a straight line (fixed cost + cost per element, least squares) through that
        operator's measured conversions."""
        if key in conversion_ms:
            return conversion_ms[key], True
        op, shape = key
        pts = [(math.prod(k[1]), ms) for k, ms in conversion_ms.items() if k[0] == op]
        if not pts:
            return 0.0, False
        x = np.array([p[0] for p in pts], float)
        y = np.array([p[1] for p in pts], float)
        if len(set(x)) < 2:
            return float(np.median(y / x)) * math.prod(shape), False
        slope, fixed = np.polyfit(x, y, 1)
        return max(0.0, float(fixed) + max(0.0, float(slope)) * math.prod(shape)), False

    # ORT's per-run overhead (binding, output allocation), measured on Identity models: one per
    # output signature for the model side, the smallest one for what each brick session pays.
    def identity_ms(shapes):
        from onnx import TensorProto, helper
        ins = [helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, sh) for k, sh in enumerate(shapes)]
        outs = [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, sh) for k, sh in enumerate(shapes)]
        nodes = [helper.make_node("Identity", [f"x{k}"], [f"y{k}"]) for k in range(len(shapes))]
        model = helper.make_model(helper.make_graph(nodes, "runtime", ins, outs),
                                  opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        sess = session(model.SerializeToString())
        return ort_measure(sess, feeds_for(sess), opts)

    per_run_ms = identity_ms([[1]])
    bricks_wall = time.time() - t0
    rows = []
    e2e_wall = 0.0
    for i, (name, path) in enumerate(zip(names, paths)):
        full = workdir / f"{name}.onnx"
        zoo.materialize_file(path, str(full), seed=0)
        t0 = time.time()
        s = session(str(full))
        meas = ort_measure(s, feeds_for(s), opts)
        e2e_wall += time.time() - t0
        model_graph = bricklab.load(path, batch=1)
        overhead = identity_ms([list(v.shape) for v in model_graph.outputs])
        uses = d.models[i]["uses"]
        raw = sum(brick_ms[u["id"]] - per_run_ms for u in uses) + overhead
        own = sum(brick_conv_ms[u["id"]] for u in uses)
        priced = [price(k) for k in model_conversions(full)]
        model_conv = sum(ms for ms, _ in priced)
        pred = raw - own + model_conv
        rows.append({"model": name, "family": manifest[name]["family"], "batch": 1, "meas_ms": meas, "pred_ms": pred,
                     "pred_with_conversions_ms": raw, "brick_conversions_ms": own, "model_conversions_ms": model_conv,
                     "model_conversions": len(priced), "model_conversions_matched": sum(m for _, m in priced),
                     "accuracy": 1 - abs(pred - meas) / meas, "accuracy_with_conversions": 1 - abs(raw - meas) / meas})
        print(f"  ORT {name:<26} measured {meas:9.2f} ms  predicted {pred:9.2f} ms  acc {rows[-1]['accuracy']:.3f}"
              f"  (with the bricks' own layout conversions {raw:.2f} ms, acc {rows[-1]['accuracy_with_conversions']:.3f})",
              flush=True)
        full.unlink()
    raw_rows = [dict(r, pred_ms=r["pred_with_conversions_ms"], accuracy=r["accuracy_with_conversions"]) for r in rows]
    return {"rows": rows, "unique": d.unique, "instances": d.instances, "bricks_wall_s": bricks_wall,
            "per_run_overhead_ms": per_run_ms,
            "e2e_wall_s": e2e_wall, "metrics": metrics(rows), "metrics_with_conversions": metrics(raw_rows)}


def run_ort_repeated(names, manifest, opts, workdir, repeats):
    """run_ort `repeats` times; the first run's result with every run's summary metrics added."""
    runs = [run_ort(names, manifest, opts, workdir) for _ in range(max(1, repeats))]
    first = runs[0]
    first["repeats"] = [{"metrics": r["metrics"], "metrics_with_conversions": r["metrics_with_conversions"]} for r in runs]
    return first


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(f"bricklab engine, batch {r['batch']}", r["rows"]) for r in results["bricklab"]]
    if results.get("ort"):
        panels.append(("ONNX Runtime (emitted bricks), batch 1", results["ort"]["rows"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5), squeeze=False)
    colors = {"classification": "tab:blue", "mobile": "tab:green", "transformer": "tab:red",
              "segmentation": "tab:purple", "video": "tab:orange"}
    for ax, (title, rows) in zip(axes[0], panels):
        for fam, c in colors.items():
            sel = [r for r in rows if r["family"] == fam]
            if sel:
                ax.scatter([r["meas_ms"] for r in sel], [r["pred_ms"] for r in sel], s=18, c=c, label=fam)
        lo = min(min(r["meas_ms"], r["pred_ms"]) for r in rows) * 0.8
        hi = max(max(r["meas_ms"], r["pred_ms"]) for r in rows) * 1.25
        xs = np.geomspace(lo, hi, 50)
        ax.plot(xs, xs, "k-", lw=0.8)
        ax.plot(xs, xs * 1.1, "k--", lw=0.6)
        ax.plot(xs, xs * 0.9, "k--", lw=0.6, label="±10%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel("predicted from bricks (ms)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results, path):
    lines = ["# DLBricks evaluation results", "",
             "<!-- Generated by scripts/bricks_evaluation.py; do not edit by hand. -->", "",
             f"Command: `{results['command']}`", ""]
    if results.get("ort_command"):
        lines += [f"ONNX Runtime part rerun afterwards (the bricklab part is the original run's) with: `{results['ort_command']}`", ""]
    lines += [
             f"Machine: {results['fingerprint']['json']}; load at start {results['load_start']}, "
             f"at end {results['load_end']}. Total time {results['total_s'] / 60:.1f} min.", ""]
    lines += ["## Summary", "",
              "| engine | batch | models | layer instances | unique bricks | mean accuracy | min accuracy | within ±5% | within ±10% | RMSPE | e2e benchmark time | bricks time | speedup | speedup incl. decomposition |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["bricklab"]:
        m = r["metrics"]
        lines.append(f"| bricklab | {r['batch']} | {m['models']} | {r['instances']} | {r['unique']} | {m['mean_accuracy']:.1%} | "
                     f"{m['min_accuracy']:.1%} | {m['within_5']:.0%} | {m['within_10']:.0%} | {m['rmspe']:.1%} | "
                     f"{r['e2e_wall_s']:.0f} s | {r['bricks_wall_s']:.0f} s | {r['speedup']:.2f}x | {r['speedup_with_decomposition']:.2f}x |")
    if results.get("ort"):
        o = results["ort"]
        m = o["metrics"]
        lines.append(f"| ONNX Runtime | 1 | {m['models']} | {o['instances']} | {o['unique']} | {m['mean_accuracy']:.1%} | "
                     f"{m['min_accuracy']:.1%} | {m['within_5']:.0%} | {m['within_10']:.0%} | {m['rmspe']:.1%} | "
                     f"{o['e2e_wall_s']:.0f} s | {o['bricks_wall_s']:.0f} s | {o['e2e_wall_s'] / o['bricks_wall_s']:.2f}x | |")
    per_model = results["options"].get("per_model_tolerance", False)
    lines += ["", "Statistical quality of both sides (same runner, same clock; " +
              ("bricks stop on the per-model error budget: a brick with share s of a model is measured to "
               "tolerance / sqrt(s), at most 25%, so that each model's *prediction* reaches the tolerance the "
               "end-to-end measurement of the model gets):" if per_model else "every brick and every model to the same tolerance):"), ""]
    for r in results["bricklab"]:
        pred_ci = (f"; the predictions' CI (from the bricks' CIs, distinct bricks independent) is "
                   f"{r['pred_mean_ci_rel']:.1%} on average, at most {r['pred_max_ci_rel']:.1%}") if "pred_mean_ci_rel" in r else ""
        if r.get("reference_passes", 1) > 1:
            ms = r["metrics_single_pass"]
            lines.append(f"* batch {r['batch']}: each model measured end to end in {r['reference_passes']} passes over the suite, "
                         f"minutes apart; reference = their median. The passes of one model differ by {r['mean_pass_spread']:.1%} "
                         f"on average (max - min over median), at most {r['max_pass_spread']:.1%}. Against the single timed pass "
                         f"alone: mean accuracy {ms['mean_accuracy']:.1%}, min {ms['min_accuracy']:.1%}, within ±10% "
                         f"{ms['within_10']:.0%}.")
        if r.get("e2e_budget_pass_wall_s"):
            walls = r["e2e_budget_pass_wall_s"]
            lines.append(f"* batch {r['batch']}: the timed end-to-end pass ran with a {r['e2e_budget_s']:g} s budget per model "
                         f"({r['e2e_wall_s']:.0f} s); the reference passes with the {results['options']['budget_s']:g} s budget took "
                         f"{', '.join(f'{w:.0f} s' for w in walls)} with {', '.join(str(c) for c in r['e2e_budget_pass_converged'])} "
                         f"of {len(r['rows'])} models converged: against those the speedup is "
                         f"{statistics.median(walls) / r['bricks_wall_s']:.2f}x.")
        lines.append(f"* batch {r['batch']}: bricks converged {r['bricks_converged']}/{r['bricks_measured']} "
                     f"(mean CI half-width {r['bricks_mean_ci_rel']:.1%}); models converged {r['models_converged']}/"
                     f"{len(r['rows'])} (mean CI half-width {r['models_mean_ci_rel']:.1%}){pred_ci}; mean signed error "
                     f"{r['metrics']['mean_signed_error']:+.1%}.")
    lines += ["", "## Per model", "",
              "| model | family | batch | measured ms | CI ± | passes spread | predicted ms (sum) | CI ± | critical path ms | accuracy |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["bricklab"]:
        for row in r["rows"]:
            pci = f"{row['pred_ci_rel']:.1%}" if "pred_ci_rel" in row else ""
            spread = f"{row['meas_pass_spread']:.1%}" if "meas_pass_spread" in row else ""
            lines.append(f"| {row['model']} | {row['family']} | {row['batch']} | {row['meas_ms']:.2f} | {row['meas_ci_rel']:.1%} | "
                         f"{spread} | {row['pred_ms']:.2f} | {pci} | {row['pred_cp_ms']:.2f} | {row['accuracy']:.1%} |")
    if results.get("ort"):
        o = results["ort"]
        lines += ["", "## ONNX Runtime from emitted bricks (batch 1)", ""]
        if "metrics_with_conversions" in o:
            mc = o["metrics_with_conversions"]
            lines += ["Each emitted brick is timed in its own ORT session (the same stopping rule and clock), less ORT's "
                      f"per-run overhead ({o['per_run_overhead_ms'] * 1e3:.1f} µs, an Identity model), less the layout "
                      "conversions ORT adds because the brick stands alone (ReorderInput / ReorderOutput of its NCHWc "
                      "transformer at the brick's edges; their kernel times from ORT's profiler, median of 10 runs). "
                      "The conversions the whole model does are read off ORT's optimized graph of the model (its "
                      "ReorderInput / ReorderOutput nodes and their shapes; nothing of the model is timed) and priced "
                      "at the same conversion measured in the bricks, else on a straight line (fixed cost + cost per element) "
                      "fitted to the measured conversions of that operator. "
                      "Predicted = the sum over the model's layers + the model's conversions + the per-run overhead of "
                      "a model with its outputs. Counting the bricks' own conversions instead (as before): mean "
                      f"accuracy {mc['mean_accuracy']:.1%}, min {mc['min_accuracy']:.1%}, within ±10% "
                      f"{mc['within_10']:.0%}, mean signed error {mc['mean_signed_error']:+.1%} (here "
                      f"{o['metrics']['mean_signed_error']:+.1%}).", ""]
            if len(o.get("repeats", [])) > 1:
                lines += [f"The whole ONNX Runtime part (bricks and models measured anew) ran {len(o['repeats'])} times; "
                          "the per-model table below is the first run.", "",
                          "| run | mean accuracy | min | within ±10% | mean signed error | RMSPE | with the bricks' conversions: mean accuracy | min | within ±10% | mean signed error | RMSPE |",
                          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
                for k, rep in enumerate(o["repeats"], 1):
                    a, c = rep["metrics"], rep["metrics_with_conversions"]
                    lines.append(f"| {k} | {a['mean_accuracy']:.1%} | {a['min_accuracy']:.1%} | {a['within_10']:.0%} | "
                                 f"{a['mean_signed_error']:+.1%} | {a['rmspe']:.1%} | {c['mean_accuracy']:.1%} | "
                                 f"{c['min_accuracy']:.1%} | {c['within_10']:.0%} | {c['mean_signed_error']:+.1%} | {c['rmspe']:.1%} |")
                med = lambda key, which: statistics.median(rep[which][key] for rep in o["repeats"])  # noqa: E731
                lines += ["", f"Median over the runs: mean accuracy {med('mean_accuracy', 'metrics'):.1%} "
                          f"(with the bricks' conversions {med('mean_accuracy', 'metrics_with_conversions'):.1%}), "
                          f"mean signed error {med('mean_signed_error', 'metrics'):+.1%} "
                          f"({med('mean_signed_error', 'metrics_with_conversions'):+.1%}).", ""]
            lines += ["| model | measured ms | predicted ms | accuracy | model's conversions (priced from bricks) | ms "
                      "| bricks' own conversions ms | predicted with those instead | accuracy |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for row in o["rows"]:
                lines.append(f"| {row['model']} | {row['meas_ms']:.2f} | {row['pred_ms']:.2f} | {row['accuracy']:.1%} | "
                             f"{row['model_conversions']} ({row['model_conversions_matched']} same-shape) | "
                             f"{row['model_conversions_ms']:.2f} | {row['brick_conversions_ms']:.2f} | "
                             f"{row['pred_with_conversions_ms']:.2f} | {row['accuracy_with_conversions']:.1%} |")
        else:
            lines += ["| model | measured ms | predicted ms | accuracy |", "|---|---:|---:|---:|"]
            for row in o["rows"]:
                lines.append(f"| {row['model']} | {row['meas_ms']:.2f} | {row['pred_ms']:.2f} | {row['accuracy']:.1%} |")
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--models", default="all", help="comma-separated zoo names, or 'all'")
    ap.add_argument("--batch8-max-gmacs", type=float, default=1e9,
                    help="at batch > 1, only models whose batch-1 MACs are at most this many G (time limits)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="cpu: the thread's CPU time (for a machine shared with other jobs); wall: wall clock")
    ap.add_argument("--cold-weights", action="store_true",
                    help="evict caches before every repetition (bricks and models alike)")
    ap.add_argument("--hot-weights", action="store_true",
                    help="bricks keep their weights in cache between repetitions (default: evicted, as in a model run)")
    ap.add_argument("--per-brick-tolerance", action="store_true",
                    help="every brick to --tolerance (default: the per-model error budget)")
    ap.add_argument("--burn-in", type=float, default=20.0,
                    help="seconds of untimed model runs first (on this VM the first seconds of a process run slow)")
    ap.add_argument("--tolerance", type=float, default=0.03)
    ap.add_argument("--budget", type=float, default=3.0)
    ap.add_argument("--min-reps", type=int, default=7)
    ap.add_argument("--e2e-budget", type=float, default=None,
                    help="time budget of each model in the end-to-end pass the speedup counts (default: --budget); "
                         "large enough, every model converges as the bricks do, and the speedup compares equal confidence")
    ap.add_argument("--reference-passes", type=int, default=3,
                    help="measure every model end to end this many times, minutes apart; the reference latency is the "
                         "median (the benchmarking time counted for the speedup is one pass)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ort", type=int, default=0, help="also ONNX Runtime on the N smallest models at batch 1")
    ap.add_argument("--ort-repeats", type=int, default=5,
                    help="run the ONNX Runtime part this many times (bricks and models measured anew each time; "
                         "it takes seconds and one run's accuracy moves by several points on a shared machine): "
                         "the report shows the first run's rows and every run's summary")
    ap.add_argument("--ort-only", action="store_true",
                    help="rerun only the ONNX Runtime part, keeping the bricklab results of --out")
    ap.add_argument("--out", default=str(REPO / "docs" / "bricks-evaluation.json"))
    ap.add_argument("--report", default=str(REPO / "docs" / "bricks-evaluation.md"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "img" / "bricks_pred_vs_meas.png"))
    args = ap.parse_args()
    manifest = {m["name"]: m for m in json.loads((ZOO / "MANIFEST.json").read_text())["models"]}
    names = list(manifest) if args.models == "all" else args.models.split(",")
    opts = {"threads": args.threads, "tolerance": args.tolerance, "budget_s": args.budget, "min_reps": args.min_reps,
            "warmup": args.warmup, "max_reps": 500, "clock": args.clock,
            "cold_weights": args.cold_weights, "evict_weights": not args.hot_weights,
            "per_model_tolerance": not args.per_brick_tolerance}
    results = {"command": " ".join(["scripts/bricks_evaluation.py"] + sys.argv[1:]), "options": opts,
               "fingerprint": bricklab.bricks.fingerprint(threads=args.threads, clock=args.clock,
                                                          cold_weights=args.cold_weights,
                                                          evict_weights=not args.hot_weights),
               "platform": platform.platform(),
               "load_start": load_avg(), "bricklab": []}
    if args.ort_only:
        results = json.loads(pathlib.Path(args.out).read_text())
        small = sorted(names, key=lambda n: manifest[n]["ref_macs"])[: args.ort]
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="bricks_eval_") as tmp:
            results["ort"] = run_ort_repeated(small, manifest, opts, pathlib.Path(tmp), args.ort_repeats)
        results["ort_command"] = " ".join(["scripts/bricks_evaluation.py"] + sys.argv[1:])
        results["ort_s"] = time.time() - t0
        pathlib.Path(args.out).write_text(json.dumps(results, indent=1))
        report(results, args.report)
        plot(results, args.plot)
        print(f"rewrote {args.out}, {args.report}, {args.plot}")
        return
    t_all = time.time()
    burn_until = time.time() + args.burn_in
    while time.time() < burn_until:
        for n in ["mobilenet_v2", "resnet18", "densenet121"]:
            bricklab.bricks.measure_model(str(ZOO / manifest[n]["file"]), **dict(opts, max_reps=20))
    with tempfile.TemporaryDirectory(prefix="bricks_eval_") as tmp:
        work = pathlib.Path(tmp)
        for b in [int(x) for x in args.batches.split(",")]:
            sel = names if b == 1 else [n for n in names if manifest[n]["ref_macs"] / 1e9 <= args.batch8_max_gmacs]
            results["bricklab"].append(run_bricklab(sel, manifest, b, opts, work, args.reference_passes, args.e2e_budget))
            m = results["bricklab"][-1]["metrics"]
            print(f"[b{b}] mean accuracy {m['mean_accuracy']:.3f}, within 10% {m['within_10']:.2f}, "
                  f"speedup {results['bricklab'][-1]['speedup']:.2f}x", flush=True)
        if args.ort:
            small = sorted(names, key=lambda n: manifest[n]["ref_macs"])[: args.ort]
            results["ort"] = run_ort_repeated(small, manifest, opts, work, args.ort_repeats)
    results["total_s"] = time.time() - t_all
    results["load_end"] = load_avg()
    pathlib.Path(args.out).write_text(json.dumps(results, indent=1))
    report(results, args.report)
    plot(results, args.plot)
    print(f"wrote {args.out}, {args.report}, {args.plot} in {results['total_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
