#!/usr/bin/env python3
"""Benchmark: load and compile time against graph length, on activation chains (Relu, Sigmoid,
Tanh, Abs, LeakyRelu repeated) of 10^3 to 10^5 nodes, fused and unfused. Prints a markdown table
(medians of --repeat runs) and the machine load; compile time should grow linearly.

    .venv/bin/python benchmarks/bench_compile.py [--lengths 1000,10000,100000] [--repeat 3]
"""
import argparse
import os
import statistics
import tempfile
import time

import onnx
from onnx import TensorProto, helper

import bricklab

OPS = ["Relu", "Sigmoid", "Tanh", "Abs", "LeakyRelu"]


def chain(path, length):
    nodes, prev = [], "x"
    for i in range(length):
        out = "y" if i == length - 1 else f"t{i}"
        op = OPS[i % len(OPS)]
        nodes.append(helper.make_node(op, [prev], [out], **({"alpha": 0.3} if op == "LeakyRelu" else {})))
        prev = out
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; bricklab {bricklab.__version__}")
    print("| nodes | load s | compile s (fused) | steps (fused) | compile s (unfused) | unfused µs per node |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in lengths:
            path = os.path.join(tmp, f"chain{n}.onnx")
            chain(path, n)
            loads, fused, unfused, steps = [], [], [], 0
            for _ in range(args.repeat):
                t = time.perf_counter()
                model = bricklab.load(path)
                loads.append(time.perf_counter() - t)
                t = time.perf_counter()
                s = bricklab.Session(model, threads=1)
                fused.append(time.perf_counter() - t)
                steps = repr(s)
                t = time.perf_counter()
                bricklab.Session(model, threads=1, fusion=False)
                unfused.append(time.perf_counter() - t)
            steps = steps.split(": ")[1].split(" steps")[0]
            u = statistics.median(unfused)
            print(f"| {n} | {statistics.median(loads):.3f} | {statistics.median(fused):.3f} | {steps} | {u:.3f} | {u / n * 1e6:.1f} |",
                  flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
