#!/usr/bin/env python3
"""Benchmark: bricklab's CPU engine vs ONNX Runtime (and OpenVINO when installed) on the ONNX
Model Zoo classics that the onnx wheel ships (onnx/backend/test/data/light: Caffe2-era ResNet-50
with `Sum` residual adds, ShuffleNet, SqueezeNet, DenseNet-121, Inception v1/v2, VGG-19, AlexNet,
ZFNet-512; their weights are ConstantOfShape nodes, which bricklab folds at load).

These are the models of other exporters than torchvision's: Sum instead of Add, old opsets,
BatchNormalization with spatial attributes, LRN. For each model the runtimes run interleaved
(a 50 ms pause, one untimed and two timed runs each, in turn) with the same thread count after warm-up; the
outputs are compared (max abs difference to ONNX Runtime). Prints medians and ratios and writes a
Markdown table with the machine's load.

    .venv/bin/python benchmarks/bench_onnx_zoo.py --threads 2 --out docs/onnx-zoo-benchmark.md
"""
import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

import bricklab

LIGHT = pathlib.Path(onnx.__file__).parent / "backend/test/data/light"
NOTES = ("* The light models' weights are one value per tensor, so their outputs are nearly constant and the "
         "difference column checks little; tests/python/test_onnx_light_models.py gives them random weights and "
         "compares against ONNX Runtime.\n"
         "* The load average counts this benchmark's own threads (and a run just before it); the two runtimes run "
         "interleaved, so what load there is hits both alike.\n")
DEFAULT_MODELS = "resnet50,shufflenet,squeezenet,densenet121,inception_v1,inception_v2,bvlc_alexnet,zfnet512,vgg19"


def openvino_runner(path, threads):
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    return lambda feeds: request.infer(feeds)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated names of light_<name>.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", help="write the table as Markdown here")
    args = ap.parse_args()
    if not LIGHT.is_dir():
        sys.exit(f"error: {LIGHT} not found: this onnx wheel does not ship the light model-zoo models")
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        sys.exit("error: --threads and --repeats must be >= 1, --warmup >= 0")

    load_start = os.getloadavg()[0]
    rows = []
    names = args.models.split(",")
    for i, name in enumerate(names):
        path = LIGHT / f"light_{name}.onnx"
        if not path.exists():
            sys.exit(f"error: {path} not found (known: {', '.join(sorted(p.stem[6:] for p in LIGHT.glob('light_*.onnx')))})")
        proto = onnx.load(str(path), load_external_data=False)
        # Old exporters list the weights among the graph inputs too: the real input is the first
        # that is not an initializer.
        weights = {t.name for t in proto.graph.initializer}
        inp = next(i for i in proto.graph.input if i.name not in weights)
        shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        ort_session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ours = bricklab.Session(str(path), threads=args.threads)
        feeds = {inp.name: x}
        runners = {"bricklab": lambda: ours.run(feeds), "onnxruntime": lambda: ort_session.run(None, feeds)}
        ov = openvino_runner(path, args.threads)
        if ov:
            runners["openvino"] = lambda: ov(feeds)
        want = ort_session.run(None, feeds)[0]
        got = next(iter(ours.run(feeds).values()))
        diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
        samples = {k: [] for k in runners}
        for fn in runners.values():
            for _ in range(args.warmup):
                fn()
        while len(samples["bricklab"]) < args.repeats:
            for key, fn in runners.items():
                # The previous runtime's worker threads spin-wait for a while after a run; on a
                # machine with as many cores as threads they would take cores from this one.
                time.sleep(0.05)
                fn()  # untimed
                for _ in range(2):
                    t0 = time.perf_counter()
                    fn()
                    samples[key].append((time.perf_counter() - t0) * 1e3)
        med = {k: statistics.median(v) for k, v in samples.items()}
        row = {"model": name, "opset": proto.opset_import[0].version, "diff": diff, **med}
        rows.append(row)
        extra = f"  OpenVINO {med['openvino']:8.2f} ms  ratio/OV {med['bricklab'] / med['openvino']:.2f}" if "openvino" in med else ""
        print(f"[{i + 1}/{len(names)}] {name:14s} bricklab {med['bricklab']:8.2f} ms  ORT {med['onnxruntime']:8.2f} ms  "
              f"ratio/ORT {med['bricklab'] / med['onnxruntime']:.2f}{extra}  max|diff| {diff:.2e}", flush=True)

    has_ov = all("openvino" in r for r in rows)
    header = "| model | opset | bricklab ms | ONNX Runtime ms | bricklab / ORT |" + (" OpenVINO ms | bricklab / OpenVINO |" if has_ov else "")
    header += " max abs diff to ORT |\n|---|---:|---:|---:|---:|" + ("---:|---:|" if has_ov else "") + "---:|\n"
    body = ""
    for r in rows:
        body += f"| {r['model']} | {r['opset']} | {r['bricklab']:.2f} | {r['onnxruntime']:.2f} | {r['bricklab'] / r['onnxruntime']:.2f} |"
        if has_ov:
            body += f" {r['openvino']:.2f} | {r['bricklab'] / r['openvino']:.2f} |"
        body += f" {r['diff']:.1e} |\n"
    summary = f"median bricklab / ONNX Runtime {statistics.median(r['bricklab'] / r['onnxruntime'] for r in rows):.2f} over {len(rows)} models"
    if has_ov:
        summary += f"; median bricklab / OpenVINO {statistics.median(r['bricklab'] / r['openvino'] for r in rows):.2f}"
    print("\n" + summary)
    if args.out:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
        text = (f"# ONNX Model Zoo classics (the onnx wheel's light models): bricklab vs ONNX Runtime\n\n"
                f"Machine: {cpu}, {os.cpu_count()} cores; threads {args.threads}; onnxruntime {ort.__version__}, onnx {onnx.__version__}, "
                f"bricklab {bricklab.__version__}. Medians of {args.repeats} runs per runtime, interleaved in blocks (a 50 ms pause, one untimed + two "
                f"timed runs), after {args.warmup} warm-up runs; batch 1, random normal input. Load average (1 min) {load_start:.1f} "
                f"at the start and {os.getloadavg()[0]:.1f} at the end.\n\nReproduce: `.venv/bin/python benchmarks/bench_onnx_zoo.py "
                f"--threads {args.threads} --repeats {args.repeats} --out {args.out}`\n\n" + header + body + "\n* " + summary + "\n" + NOTES)
        pathlib.Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
