#!/usr/bin/env python3
"""Soft-training experiments on Fashion-MNIST (docs/soft-training.md has the results).

    .venv/bin/python scripts/soft_experiments.py [--rounds 20] [--clients 10] [--quick]

Writes docs/soft-training-results.md, docs/img/soft_*.png and docs/soft_results.json.

Set-up: 10 clients with 300 training images each (IID, or Dirichlet(0.5) label skew), 30% of the
clients (chosen at random, seeded) are stragglers slowed 2x or 4x; LeNet-like CNN and MLP; 5
local SGD steps of batch 32 per round; 15 rounds; test accuracy on 1000 test images after every round.

Wall-clock is simulated: a client's round time is the profiler's predicted step time of the
(sub-)model it trains x its slowdown x the local steps, the round time is the maximum over the
clients the server waits for. The profile is measured on this machine first, and its accuracy is
reported (predicted vs measured on held-out configurations, and the speed-up at r = 0.5).

Methods: FedAvg waiting for all clients; FedAvg dropping the stragglers (waits for the fast ones
only); and three sub-model methods whose straggler keep ratios come from the planner (deadline =
the fast clients' full-model round time): static (HeteroFL-style nested sub-models), random
(Federated Dropout), rotating (ELFISH/Helios soft-training). Each runs for the same number of
rounds with the same seed; training is real (PyTorch on the CPU), only the clock is simulated.
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]

from bricklab.soft import (ChannelGraph, Client, MaskScheduler, Server, evaluate, extract, measure_step, plan,  # noqa: E402
                           profile)
from bricklab.soft.data import load_fashion_mnist, split_dirichlet, split_iid  # noqa: E402
from bricklab.soft.models import MLP, LeNet  # noqa: E402

MODELS = {"cnn": lambda: LeNet(width=16, hidden=128), "mlp": lambda: MLP(hidden=256)}
METHODS = ["fedavg_wait", "fedavg_drop", "static", "random", "rotating"]


def run(method, make_model, data, stragglers, slowdown, prof, plans, args, seed, soft_factor=1.0):
    """One federated run; returns per-round accuracy and simulated time."""
    x_tr, y_tr, parts, x_te, y_te = data
    torch.manual_seed(seed)
    model = make_model()
    policy = method if method in ("static", "random", "rotating") else "rotating"
    server = Server(model, x_tr[:2], policy=policy, seed=seed, soft_factor=soft_factor)
    clients = [Client(f"c{i}", x_tr[p], y_tr[p], steps=args.steps, batch_size=args.batch, lr=args.lr,
                      slowdown=slowdown if i in stragglers else 1.0, seed=seed) for i, p in enumerate(parts)]
    full_step = prof.predict_time({})
    ratios, active, drop = {}, clients, []
    if method == "fedavg_drop":
        active = [c for i, c in enumerate(clients) if i not in stragglers]
    elif method in ("static", "random", "rotating"):
        ratios = {f"c{i}": plans[slowdown].ratios for i in stragglers}
    step_time = {c.client_id: (prof.predict_time(ratios[c.client_id]) if c.client_id in ratios else full_step)
                 for c in clients}
    clock, rows = 0.0, []
    for r in range(args.rounds):
        server.run_round(active, ratios)
        round_time = max(step_time[c.client_id] * c.slowdown * c.steps for c in active)
        clock += round_time
        acc = evaluate(server.global_model(), x_te, y_te)
        rows.append({"round": r + 1, "time_s": clock, "round_s": round_time, "accuracy": acc})
    return rows


def time_to(rows, target):
    for row in rows:
        if row["accuracy"] >= target:
            return row["time_s"]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--per-client", type=int, default=300)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3 rounds, one model: a smoke run")
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--page-only", action="store_true", help="rewrite the page from OUT/soft_results.json")
    ap.add_argument("--ablation", action="store_true",
                    help="only rotating soft-training with soft_factor 0.5 / 1 / 2 (same profile and plans); "
                         "prints a table and writes OUT/soft_ablation.json")
    args = ap.parse_args()
    if args.page_only:
        out = pathlib.Path(args.out)
        write_page(json.loads((out / "soft_results.json").read_text()), out)
        return 0
    if args.quick:
        args.rounds = 3
    torch.set_num_threads(1)
    out = pathlib.Path(args.out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    x_all, y_all, x_test, y_test = load_fashion_mnist()
    x_te, y_te = x_test[:args.test], y_test[:args.test]
    rng = np.random.default_rng(args.seed)
    n_strag = round(0.3 * args.clients)
    stragglers = set(rng.choice(args.clients, n_strag, replace=False).tolist())
    splits = {
        "iid": split_iid(len(y_all), args.clients, args.per_client, seed=args.seed),
        "noniid": split_dirichlet(y_all.numpy(), args.clients, args.per_client, alpha=0.5, seed=args.seed),
    }
    results = {"config": vars(args), "stragglers": sorted(stragglers), "profiles": {}, "runs": {}}
    batch_x, batch_y = x_all[:args.batch], y_all[:args.batch]

    for model_name, make in list(MODELS.items())[:1 if args.quick else None]:
        # ---- profile, validate, plan ---------------------------------------------------------
        torch.manual_seed(0)
        model = make()
        t0 = time.time()
        prof = profile(model, batch_x, batch_y, repeats=7)
        t_prof = time.time() - t0
        held_out = prof.validate(batch_x, batch_y, configs=6, repeats=15, seed=args.seed)
        g = prof.graph
        speed = {}
        for r in (0.75, 0.5, 0.25):
            keep = MaskScheduler(g, "rotating", 0).masks(0, r)
            full_model, sub_model = extract(g, {}).module, extract(g, keep).module
            full = sub = float("inf")
            for _ in range(5):  # interleaved, best of all: load from other processes hits both alike
                full = min(full, measure_step(full_model, batch_x, batch_y, repeats=5))
                sub = min(sub, measure_step(sub_model, batch_x, batch_y, repeats=5))
            pred = prof.predict_time({s: r for s in g.maskable()})
            speed[r] = {"full_measured_s": full, "measured_s": sub, "predicted_s": pred,
                        "error": pred / sub - 1, "speedup": full / sub}
        deadline = prof.predict_time({}) * args.steps
        plans = {s: plan(prof, deadline, args.steps, slowdown=s, min_ratio=0.1) for s in (2.0, 4.0)}
        results["profiles"][model_name] = {
            "seconds_to_profile": t_prof, "held_out": held_out, "uniform": speed,
            "full_step_predicted_s": prof.predict_time({}),
            "plans": {str(s): {"ratios": {str(k): v for k, v in p.ratios.items()}, "feasible": p.feasible,
                               "predicted_s": p.predicted_seconds, "full_s": p.full_seconds, "mean_ratio": p.mean_ratio()}
                      for s, p in plans.items()},
        }
        print(f"[{model_name}] profiled in {t_prof:.1f}s; r=0.5 measured speed-up {speed[0.5]['speedup']:.2f}x, "
              f"prediction error {100 * speed[0.5]['error']:+.1f}%", flush=True)

        if args.ablation:
            for split_name, parts in splits.items():
                data = (x_all, y_all, parts, x_te, y_te)
                for slowdown in (2.0, 4.0):
                    for factor in (0.5, 1.0, 2.0):
                        key = f"{model_name}/{split_name}/{int(slowdown)}x/rotating/soft_factor={factor}"
                        rows = run("rotating", make, data, stragglers, slowdown, prof, plans, args, args.seed, factor)
                        results["runs"][key] = rows
                        print(f"| {key} | {rows[-1]['accuracy']:.3f} |", flush=True)
            continue

        # ---- federated runs ------------------------------------------------------------------
        for split_name, parts in splits.items():
            data = (x_all, y_all, parts, x_te, y_te)
            for slowdown in (2.0, 4.0):
                for method in METHODS:
                    key = f"{model_name}/{split_name}/{int(slowdown)}x/{method}"
                    same = f"{model_name}/{split_name}/2x/{method}"
                    if slowdown == 4.0 and method in ("fedavg_wait", "fedavg_drop"):
                        # Same training as at 2x (all full, or stragglers absent): only the clock differs.
                        base = results["runs"][same]
                        scale = slowdown / 2.0 if method == "fedavg_wait" else 1.0
                        rows = [dict(r, time_s=r["time_s"] * scale, round_s=r["round_s"] * scale) for r in base]
                    else:
                        t0 = time.time()
                        rows = run(method, make, data, stragglers, slowdown, prof, plans, args, args.seed)
                        print(f"  {key:<32} final acc {rows[-1]['accuracy']:.3f}  sim {rows[-1]['time_s']:.2f}s  "
                              f"(ran {time.time() - t0:.0f}s)", flush=True)
                    results["runs"][key] = rows

    results["seconds"] = time.time() - t_start
    if args.ablation:
        (out / "soft_ablation.json").write_text(json.dumps(results, indent=1))
        return 0
    (out / "soft_results.json").write_text(json.dumps(results, indent=1))
    write_page(results, out)
    print(f"done in {results['seconds']:.0f}s -> {out / 'soft-training-results.md'}")


def write_page(res, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# Soft-training results (generated)", "",
             "Produced by `.venv/bin/python scripts/soft_experiments.py` "
             f"({res['seconds'] / 60:.1f} min on this machine; settings: {json.dumps(res['config'])}). "
             f"Stragglers: clients {res['stragglers']}. See [soft-training.md](soft-training.md) for the set-up "
             "and the discussion.", ""]
    lines += ["## Profiler: predicted vs measured step time (held-out random masks)", "",
              "| model | config | mean keep ratio | predicted ms | measured ms | error | predicted MB | measured MB |",
              "|---|---|---|---|---|---|---|---|"]
    for m, p in res["profiles"].items():
        for row in p["held_out"]:
            err = row["predicted_s"] / row["measured_s"] - 1
            lines.append(f"| {m} | {row['config']} | {row['mean_ratio']:.2f} | {1e3 * row['predicted_s']:.2f} | "
                         f"{1e3 * row['measured_s']:.2f} | {100 * err:+.1f}% | {row['predicted_bytes'] / 1e6:.2f} | "
                         f"{row['measured_bytes'] / 1e6:.2f} |")
    lines += ["", "## Step time at uniform keep ratio r (rotating masks, extracted sub-model)", "",
              "| model | r | full ms | sub-model ms | predicted ms | prediction error | speed-up |", "|---|---|---|---|---|---|---|"]
    for m, p in res["profiles"].items():
        for r, s in p["uniform"].items():
            lines.append(f"| {m} | {r} | {1e3 * s['full_measured_s']:.2f} | {1e3 * s['measured_s']:.2f} | "
                         f"{1e3 * s['predicted_s']:.2f} | {100 * s['error']:+.1f}% | {s['speedup']:.2f}x |")
    lines += ["", "## Planner: straggler keep ratios (deadline = fast clients' full-model round)", "",
              "| model | slowdown | feasible | mean keep ratio | per-space ratios | predicted round s | full-model round s |",
              "|---|---|---|---|---|---|---|"]
    for m, p in res["profiles"].items():
        for s, pl in p["plans"].items():
            lines.append(f"| {m} | {float(s):.0f}x | {pl['feasible']} | {pl['mean_ratio']:.2f} | {pl['ratios']} | "
                         f"{pl['predicted_s']:.3f} | {pl['full_s']:.3f} |")
    lines += ["", "## Federated runs", "",
              "Target accuracy = FedAvg-wait's final accuracy minus 1 point. Times are simulated seconds.", "",
              "| model | split | stragglers | method | s / round | final acc | time to target | vs FedAvg-wait time |",
              "|---|---|---|---|---|---|---|---|"]
    groups = sorted({k.rsplit("/", 1)[0] for k in res["runs"]})
    for grp in groups:
        wait = res["runs"][f"{grp}/fedavg_wait"]
        target = wait[-1]["accuracy"] - 0.01
        t_wait = wait[-1]["time_s"]
        m, split, sd = grp.split("/")
        for method in METHODS:
            rows = res["runs"][f"{grp}/{method}"]
            tt = time_to(rows, target)
            lines.append(f"| {m} | {split} | {sd} | {method} | {np.mean([r['round_s'] for r in rows]):.3f} | "
                         f"{rows[-1]['accuracy']:.3f} | {'-' if tt is None else f'{tt:.2f}'} | "
                         f"{'-' if tt is None else f'{100 * tt / t_wait:.0f}%'} |")
    lines += ["", "## Goals", "", "| goal | case | value | met |", "|---|---|---|---|"]
    for m, p in res["profiles"].items():
        u = p["uniform"]["0.5"] if "0.5" in p["uniform"] else p["uniform"][0.5]
        lines.append(f"| step time at r = 0.5 within 10% of prediction | {m} | {100 * u['error']:+.1f}% | "
                     f"{'yes' if abs(u['error']) <= 0.10 else 'no'} |")
        lines.append(f"| >= 1.8x faster at r = 0.5 | {m} | {u['speedup']:.2f}x | {'yes' if u['speedup'] >= 1.8 else 'no'} |")
    for grp in groups:
        wait = res["runs"][f"{grp}/fedavg_wait"]
        rot = res["runs"][f"{grp}/rotating"]
        drop = res["runs"][f"{grp}/fedavg_drop"]
        tt = time_to(rot, wait[-1]["accuracy"] - 0.01)
        frac = None if tt is None else tt / wait[-1]["time_s"]
        lines.append(f"| rotating within 1 point of FedAvg-wait's final accuracy in <= 60% of its time | {grp} | "
                     f"{'never' if frac is None else f'{100 * frac:.0f}%'} | {'yes' if frac is not None and frac <= 0.6 else 'no'} |")
        if "/noniid/" in grp:
            d = rot[-1]["accuracy"] - drop[-1]["accuracy"]
            lines.append(f"| rotating beats dropping stragglers (non-IID, final accuracy) | {grp} | "
                         f"{100 * d:+.1f} points | {'yes' if d > 0 else 'no'} |")
    lines += ["", "## Plots", ""]
    fig, axes = plt.subplots(len(groups) // 4 or 1, 4, figsize=(18, 4 * max(1, len(groups) // 4)), squeeze=False)
    for ax, grp in zip(axes.flat, groups):
        for method in METHODS:
            rows = res["runs"][f"{grp}/{method}"]
            ax.plot([r["time_s"] for r in rows], [r["accuracy"] for r in rows], label=method, marker=".")
        ax.set_title(grp)
        ax.set_xlabel("simulated wall-clock (s)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(out / "img" / "soft_accuracy_vs_time.png", dpi=90)
    plt.close(fig)
    lines.append("![accuracy vs simulated wall-clock](img/soft_accuracy_vs_time.png)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for m, p in res["profiles"].items():
        pred = [1e3 * r["predicted_s"] for r in p["held_out"]]
        meas = [1e3 * r["measured_s"] for r in p["held_out"]]
        ax.scatter(meas, pred, label=f"{m} held-out")
        pred = [1e3 * s["predicted_s"] for s in p["uniform"].values()]
        meas = [1e3 * s["measured_s"] for s in p["uniform"].values()]
        ax.scatter(meas, pred, marker="x", label=f"{m} uniform r")
    lim = ax.get_xlim()
    ax.plot(lim, lim, "k--", lw=1)
    ax.set_xlabel("measured step ms")
    ax.set_ylabel("predicted step ms")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "img" / "soft_profiler.png", dpi=90)
    plt.close(fig)
    lines += ["", "![profiler predicted vs measured](img/soft_profiler.png)", ""]
    (out / "soft-training-results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
