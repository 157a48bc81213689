#!/usr/bin/env python3
"""Benchmark: bricklab's CPU engine vs ONNX Runtime vs PyTorch on zoo models.

For each model and batch size the three runtimes run interleaved (short blocks of each in turn,
so that machine noise hits all three alike) with the same thread count, after warm-up. Prints the
per-model medians and the ratios bricklab/ORT and bricklab/PyTorch, and writes a Markdown table.

    .venv/bin/python benchmarks/bench_engine.py --threads 2 --batches 1,8 --out docs/engine-benchmark.md
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

import bricklab
import bricklab.zoo as zoo

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("resnet18,resnet50,resnext50_32x4d,mobilenet_v2,mobilenet_v3_large,squeezenet1_1,shufflenet_v2_x1_0,"
                  "mnasnet1_0,efficientnet_b0,densenet121,googlenet,inception_v3,regnet_y_400mf,alexnet,convnext_tiny,vit_b_32")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", help="write the table as Markdown here")
    args = ap.parse_args()

    load_start = os.getloadavg()[0]
    manifest = {m["name"]: m for m in json.loads((REPO / "models/zoo/MANIFEST.json").read_text())["models"]}
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as bricklab and ONNX Runtime do: fair on tiny random weights
    rows = []
    tmp = pathlib.Path(tempfile.mkdtemp())
    names = args.models.split(",")
    for i, name in enumerate(names):
        entry = manifest[name]
        full = tmp / f"{name}.onnx"
        zoo.materialize_file(str(REPO / "models/zoo" / entry["file"]), str(full), seed=0)
        module = zoo.torch_module(entry)
        for batch in [int(b) for b in args.batches.split(",")]:
            shape = [batch] + [d for d in entry["input_shape"][1:]]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            ort_session = ort.InferenceSession(str(full), so, providers=["CPUExecutionProvider"])
            ort_input = ort_session.get_inputs()[0].name
            ours = bricklab.Session(str(full), batch=batch, threads=args.threads)
            xt = torch.from_numpy(x)
            runners = {
                "bricklab": lambda: ours.run({"input": x}),
                "onnxruntime": lambda: ort_session.run(None, {ort_input: x}),
                "pytorch": lambda: module(xt),
            }
            samples = {k: [] for k in runners}
            with torch.no_grad():
                for fn in runners.values():
                    for _ in range(args.warmup):
                        fn()
                # Interleaved blocks: one untimed run (absorbs the previous runtime's idle-spinning
                # threads), then two timed runs, rotating through the runtimes until enough samples.
                while len(samples["bricklab"]) < args.repeats:
                    for key, fn in runners.items():
                        fn()
                        for _ in range(2):
                            t0 = time.perf_counter()
                            fn()
                            samples[key].append((time.perf_counter() - t0) * 1e3)
            med = {k: statistics.median(v) for k, v in samples.items()}
            row = (name, batch, med["bricklab"], med["onnxruntime"], med["pytorch"],
                   med["bricklab"] / med["onnxruntime"], med["bricklab"] / med["pytorch"])
            rows.append(row)
            print(f"[{i + 1}/{len(names)}] {name:20s} batch {batch:2d}  bricklab {row[2]:9.2f} ms  ORT {row[3]:9.2f} ms  "
                  f"PyTorch {row[4]:9.2f} ms  ratio/ORT {row[5]:.2f}  ratio/PyTorch {row[6]:.2f}", flush=True)

    header = "| model | batch | bricklab ms | ONNX Runtime ms | PyTorch ms | bricklab / ORT | bricklab / PyTorch |\n|---|---:|---:|---:|---:|---:|---:|\n"
    body = "".join(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} |\n" for r in rows)
    summary = []
    for batch in sorted({r[1] for r in rows}):
        sel = [r for r in rows if r[1] == batch]
        summary.append(f"batch {batch}: median ratio to ONNX Runtime {statistics.median(r[5] for r in sel):.2f}, "
                       f"to PyTorch {statistics.median(r[6] for r in sel):.2f} over {len(sel)} models")
    print("\n" + "\n".join(summary))
    if args.out:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
        text = (f"# CPU engine benchmark\n\nMachine: {cpu}, {os.cpu_count()} cores; threads {args.threads}; "
                f"onnxruntime {ort.__version__}, torch {torch.__version__}, bricklab {bricklab.__version__}. "
                f"Medians of {args.repeats} runs per runtime, interleaved in blocks (one untimed + two timed runs per block), after {args.warmup} warm-up runs; random weights "
                f"(`bricklab.zoo.materialize`), random inputs. Load average (1 min) {load_start:.1f} at the start and "
                f"{os.getloadavg()[0]:.1f} at the end of the run (the benchmark itself adds up to its thread count).\n\nReproduce: `.venv/bin/python benchmarks/bench_engine.py "
                f"--threads {args.threads} --batches {args.batches} --repeats {args.repeats} --out {args.out}`\n\n"
                + header + body + "\n" + "\n".join(f"* {s}" for s in summary) + "\n")
        pathlib.Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
