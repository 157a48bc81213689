"""Aggregation throughput against this machine's memory bandwidth (prints a table).

    .venv/bin/python benchmarks/bench_aggregate.py [--params 1e8] [--clients 4] [--repeats 5]

Bandwidth reference, measured in the same run: ``np.copyto`` of a ``params``-element float32
array (bytes read + bytes written, best of ``repeats``) and a STREAM-style add ``c = a + b``;
the ratio is taken against the larger of the two. Aggregation bytes are what the pass moves: the
output (4 B per element), each client's values (4 B) and, for soft clients, its mask (1 B), plus
the global values (4 B) of tensors no client trained whole. Half the clients (``--all-soft``:
all) are soft-trained with random masks keeping 50%. Also shown: the same average in plain numpy.
"""
import argparse
import time

import numpy as np

from bricklab.soft import ClientUpdate, aggregate, aggregate_stats


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_masked_average(glob, updates):
    out = {}
    for name, g in glob.items():
        num = np.zeros_like(g)
        den = np.zeros_like(g)
        for u in updates:
            v, m = u.values[name], u.masks.get(name)
            if m is None:
                num += u.num_samples * v
                den += u.num_samples
            else:
                num += np.where(m, u.num_samples * v, 0)
                den += np.where(m, u.num_samples, 0)
        out[name] = np.where(den > 0, num / np.where(den > 0, den, 1), g)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=float, default=1e8)
    ap.add_argument("--tensors", type=int, default=100, help="the parameters are split into this many tensors")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 0])
    ap.add_argument("--numpy", action="store_true", help="also time the plain numpy average (slow, extra memory)")
    ap.add_argument("--all-soft", action="store_true",
                    help="every client soft (masked): no tensor is trained whole, so the global values are read too")
    args = ap.parse_args()
    n = int(args.params)
    per = n // args.tensors
    rng = np.random.default_rng(0)

    src = rng.standard_normal(n, dtype=np.float32)
    dst = np.empty_like(src)
    t_copy = best(lambda: np.copyto(dst, src), args.repeats)
    bandwidth = 2 * 4 * n / t_copy
    other = rng.standard_normal(n, dtype=np.float32)
    t_add = best(lambda: np.add(src, other, out=dst), args.repeats)  # STREAM "add": 2 reads + 1 write
    add_bandwidth = 3 * 4 * n / t_add
    del dst, other

    glob = {f"t{i}": src[i * per:(i + 1) * per] for i in range(args.tensors)}
    updates = []
    for c in range(args.clients):
        vals = rng.standard_normal(per * args.tensors, dtype=np.float32)
        soft = args.all_soft or c % 2 == 1
        masks = rng.random(per * args.tensors, dtype=np.float32) < 0.5 if soft else None
        updates.append(ClientUpdate(
            f"c{c}", 100 + c, {f"t{i}": vals[i * per:(i + 1) * per] for i in range(args.tensors)},
            {f"t{i}": masks[i * per:(i + 1) * per] for i in range(args.tensors)} if soft else {}, soft=soft))
    out = {k: np.empty_like(v) for k, v in glob.items()}

    print(f"params {n:.3g} in {args.tensors} tensors, {args.clients} clients "
          f"({sum(u.soft for u in updates)} soft with 50% masks)")
    print(f"memory bandwidth (np.copyto, read+write): {bandwidth / 1e9:.2f} GB/s ({t_copy * 1e3:.1f} ms); "
          f"STREAM add (np.add, 2 reads + 1 write): {add_bandwidth / 1e9:.2f} GB/s")
    print("ratios below are against the larger of the two")
    bandwidth = max(bandwidth, add_bandwidth)
    print(f"{'implementation':<28} {'threads':>7} {'ms':>9} {'GB/s':>7} {'x bandwidth':>12}")
    for threads in args.threads:
        t = best(lambda: aggregate(glob, updates, threads=threads, out=out), args.repeats)
        moved = aggregate_stats()["bytes_moved"]
        label = "all" if threads == 0 else str(threads)
        print(f"{'bricklab.soft.aggregate':<28} {label:>7} {t * 1e3:9.1f} {moved / t / 1e9:7.2f} "
              f"{moved / t / bandwidth:12.2f}")
    if args.numpy:
        t = best(lambda: numpy_masked_average(glob, updates), max(1, args.repeats // 2))
        print(f"{'numpy (np.where)':<28} {'1':>7} {t * 1e3:9.1f} {moved / t / 1e9:7.2f} {moved / t / bandwidth:12.2f}")


if __name__ == "__main__":
    main()
