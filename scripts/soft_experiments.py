#!/usr/bin/env python3
"""Soft-training experiments on Fashion-MNIST (docs/soft-training.md has the discussion).

    .venv/bin/python scripts/soft_experiments.py [--seeds 1 2 3] [--rounds 30] [--quick]
    .venv/bin/python scripts/soft_experiments.py --tune      # choose soft_factor on validation data
    .venv/bin/python scripts/soft_experiments.py --profiler-repeats 5   # profiler error, N independent runs
    .venv/bin/python scripts/soft_experiments.py --add-missing   # runs a split added since the last main run

Writes docs/soft-training-results.md, docs/img/soft_*.png and docs/soft_results.json (``--tune``:
docs/soft_tuning.json).

Set-up: 10 clients with 300 training images each; 30% of the clients (chosen at random per seed)
are stragglers slowed 2x or 4x. Four splits: IID; Dirichlet(0.5) and Dirichlet(0.1) label skew
("dirichlet", "dirichlet0.1": each client's class mix drawn from the distribution); and "skew", where
the stragglers hold the data the others lack (3 classes, drawn per seed, make up 80% of every
straggler's data and 5% of every fast client's). LeNet-like CNN and MLP; 5 local SGD steps of
batch 32 per round; 30 rounds; test accuracy on 1000 test images every ``--eval-every`` rounds.
Clients draw from the first 58,000 training images; the last 2,000 are the validation set that
``--tune`` uses, so that no setting is chosen on the test set.

Wall-clock is simulated: a client's round time is the profiler's predicted step time of the
(sub-)model it trains x its slowdown x the local steps, the round time is the maximum over the
clients the server waits for. The profile is measured on this machine first (one torch thread,
configurations interleaved, median of fresh copies), and its accuracy is reported (predicted vs
measured on held-out configurations, and the speed-up at r = 0.5).

Methods: FedAvg waiting for all clients; FedAvg dropping the stragglers (waits for the fast ones
only); and three sub-model methods whose straggler keep ratios come from the planner (deadline =
the fast clients' full-model round time): static (HeteroFL-style nested sub-models), random
(Federated Dropout), rotating (ELFISH/Helios soft-training), all aggregated with the same
``--soft-factor``. Training is real (PyTorch on the CPU, ``--workers`` processes of one thread
each), only the clock is simulated.
"""
import argparse
import json
import multiprocessing
import pathlib
import sys
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]

from bricklab.soft import Client, Server, evaluate, plan, profile  # noqa: E402
from bricklab.soft.data import load_fashion_mnist, split_dirichlet, split_iid, split_straggler_skew  # noqa: E402
from bricklab.soft.models import MLP, LeNet  # noqa: E402

MODELS = {"cnn": lambda: LeNet(width=16, hidden=128), "mlp": lambda: MLP(hidden=256)}
METHODS = ["fedavg_wait", "fedavg_drop", "static", "random", "rotating"]
SPLITS = ["iid", "dirichlet", "dirichlet0.1", "skew"]
SUBMODEL = ("static", "random", "rotating")
CLIENT_POOL = 58000   # clients draw from the first 58,000 training images; the rest is validation
SOFT_FACTOR = 1.0     # chosen once by --tune on seed 0 and validation data (docs/soft_tuning.json)
TUNE_FACTORS = (0.25, 0.5, 1.0)
CALIBRATION_RATIOS = (1.0, 0.85, 0.6, 0.4, 0.3, 0.15)
TUNE_SEED = 0         # the reported seeds are 1, 2, 3

_DATA = {}  # set in the parent before the worker processes fork


def stragglers_of(seed, clients):
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(clients, round(0.3 * clients), replace=False).tolist())


def split_of(name, labels, args, seed, stragglers):
    labels = labels[:CLIENT_POOL]
    if name == "iid":
        return split_iid(len(labels), args.clients, args.per_client, seed=seed)
    if name == "dirichlet":
        return split_dirichlet(labels, args.clients, args.per_client, alpha=0.5, seed=seed)
    if name == "dirichlet0.1":
        return split_dirichlet(labels, args.clients, args.per_client, alpha=0.1, seed=seed)
    parts, _ = split_straggler_skew(labels, args.clients, args.per_client, stragglers, rare_classes=3,
                                    straggler_rare_share=0.8, fast_rare_share=0.05, seed=seed)
    return parts


def run(task):
    """One federated run (in a worker process); returns (key, per-evaluation rows)."""
    torch.set_num_threads(1)
    x_tr, y_tr = _DATA["x_train"], _DATA["y_train"]
    x_ev, y_ev = _DATA["x_eval"], _DATA["y_eval"]
    method, slowdown, stragglers = task["method"], task["slowdown"], set(task["stragglers"])
    torch.manual_seed(task["seed"])
    model = MODELS[task["model"]]()
    policy = method if method in SUBMODEL else "rotating"
    server = Server(model, x_tr[:2], policy=policy, seed=task["seed"], soft_factor=task["soft_factor"], threads=1,
                    scale=task.get("scale", False))
    clients = [Client(f"c{i}", x_tr[p], y_tr[p], steps=task["steps"], batch_size=task["batch"], lr=task["lr"],
                      slowdown=slowdown if i in stragglers else 1.0, seed=task["seed"])
               for i, p in enumerate(task["parts"])]
    ratios, active = {}, clients
    if method == "fedavg_drop":
        active = [c for i, c in enumerate(clients) if i not in stragglers]
    elif method in SUBMODEL:
        ratios = {f"c{i}": {int(k): v for k, v in task["plan"].items()} for i in stragglers}
    step_time = {c.client_id: task["sub_step_s"] if c.client_id in ratios else task["full_step_s"] for c in clients}
    clock, rows = 0.0, []
    for r in range(1, task["rounds"] + 1):
        server.run_round(active, ratios)
        round_time = max(step_time[c.client_id] * c.slowdown * c.steps for c in active)
        clock += round_time
        if r % task["eval_every"] == 0 or r == 1 or r == task["rounds"]:
            acc = evaluate(server.global_model(), x_ev, y_ev)
            rows.append({"round": r, "time_s": clock, "round_s": round_time, "accuracy": acc})
    return task["key"], rows


def time_to(rows, target):
    for row in rows:
        if row["accuracy"] >= target:
            return row["time_s"]
    return None


def profile_model(name, batch_x, batch_y, args):
    """Profile, held-out validation (measured in one interleaved batch with the whole model and
    uniform ratios), and the planner's straggler ratios."""
    torch.manual_seed(0)
    model = MODELS[name]()
    t0 = time.time()
    # Calibration at uniform ratios other than the 0.75 / 0.5 / 0.25 checked below (and 6 random
    # configurations from another seed than the held-out ones), so that every check is out of sample.
    prof = profile(model, batch_x, batch_y, repeats=2, rounds=12, calibration_ratios=CALIBRATION_RATIOS,
                   calibration_random=6, threads=1, seed=12345)
    t_prof = time.time() - t0
    spaces = prof.graph.maskable()
    uniform = (1.0, 0.75, 0.5, 0.25)
    rows = prof.validate(batch_x, batch_y, configs=8, seed=1000 + args.seeds[0], repeats=2, rounds=12,
                         extra=[{s: r for s in spaces} for r in uniform])
    held_out, by_r = rows[:8], dict(zip(uniform, rows[8:]))
    full = by_r[1.0]
    drift = full["measured_s"] / full["predicted_s"]  # the machine's speed now against the profile's
    for row in rows:
        row["error"] = row["predicted_s"] / row["measured_s"] - 1
        row["error_vs_full"] = drift * row["predicted_s"] / row["measured_s"] - 1
        row.pop("ratios", None)
    speed = {str(r): {"full_measured_s": full["measured_s"], "measured_s": by_r[r]["measured_s"],
                 "predicted_s": by_r[r]["predicted_s"], "error": by_r[r]["error"],
                 "error_vs_full": by_r[r]["error_vs_full"], "speedup": full["measured_s"] / by_r[r]["measured_s"]}
             for r in uniform[1:]}
    deadline = prof.predict_time({}) * args.steps
    plans = {s: plan(prof, deadline, args.steps, slowdown=s, min_ratio=0.1) for s in (2.0, 4.0)}
    t0c, k = prof.time_calibration
    info = {
        "seconds_to_profile": t_prof, "held_out": held_out, "uniform": speed,
        "calibration": {"t0_s": t0c, "k": k, "activation_s_per_byte": prof.activation_scale,
                        "residuals": [prof.predict_time(c) / t - 1 for c, t, _ in prof.calibration]},
        "full_step_predicted_s": prof.predict_time({}),
        "plans": {str(s): {"ratios": {str(sp): v for sp, v in p.ratios.items()}, "feasible": p.feasible,
                           "predicted_s": p.predicted_seconds, "full_s": p.full_seconds,
                           "mean_ratio": p.mean_ratio(), "step_s": prof.predict_time(p.ratios)}
                  for s, p in plans.items()},
    }
    print(f"[{name}] profiled in {t_prof:.1f}s; r=0.5 speed-up {speed['0.5']['speedup']:.2f}x, prediction error "
          f"{100 * speed['0.5']['error']:+.1f}% ({100 * speed['0.5']['error_vs_full']:+.1f}% against the whole model "
          f"measured alongside); held-out {min(r['error'] for r in held_out) * 100:+.0f}.."
          f"{max(r['error'] for r in held_out) * 100:+.0f}%", flush=True)
    return info


def profiler_repeats(names, batch_x, batch_y, args, out, t_start):
    """The profiler's step-time error, profiled and validated ``--profiler-repeats`` times
    independently (each a new profile, calibration and interleaved validation, one after the
    other): how much of a single run's error is the machine's drift between phases."""
    runs = {name: [] for name in names}
    for i in range(args.profiler_repeats):
        for name in names:
            info = profile_model(name, batch_x, batch_y, args)
            runs[name].append({"uniform": info["uniform"], "held_out": [r["error"] for r in info["held_out"]],
                               "seconds_to_profile": info["seconds_to_profile"]})
    res = {"config": vars(args), "runs": runs, "seconds": time.time() - t_start}
    (out / "soft_profiler_repeats.json").write_text(json.dumps(res, indent=1))
    lines = ["# Soft-training profiler: prediction error over independent runs", "",
             "<!-- Generated by scripts/soft_experiments.py --profiler-repeats; do not edit by hand. -->", "",
             f"Command: `scripts/soft_experiments.py --profiler-repeats {args.profiler_repeats}` "
             f"({res['seconds'] / 60:.1f} min). Each run profiles the model anew (one torch thread, batch "
             f"{args.batch}), calibrates, and measures the uniform keep ratios and 8 held-out random configurations "
             "interleaved (`Profile.validate`). Error = predicted / measured - 1.", "",
             "| model | keep ratio r | error per run | median | runs within 10% | measured speed-up (median) |",
             "|---|---:|---|---:|---:|---:|"]
    for name, rr in runs.items():
        for r in ("0.75", "0.5", "0.25"):
            errs = [x["uniform"][r]["error"] for x in rr]
            sp = float(np.median([x["uniform"][r]["speedup"] for x in rr]))
            lines.append(f"| {name} | {r} | {' / '.join(f'{100 * e:+.1f}%' for e in errs)} | {100 * float(np.median(errs)):+.1f}% | "
                         f"{sum(abs(e) <= 0.10 for e in errs)} of {len(errs)} | {sp:.2f}x |")
        held = [e for x in rr for e in x["held_out"]]
        lines.append(f"| {name} | held-out random | {min(held) * 100:+.0f}% .. {max(held) * 100:+.0f}% | "
                     f"{100 * float(np.median(held)):+.1f}% | {sum(abs(e) <= 0.10 for e in held)} of {len(held)} | |")
    (out / "soft-profiler-repeats.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def make_tasks(args, profiles, labels, methods, splits, seeds, factors):
    tasks = []
    for name in profiles:
        p = profiles[name]
        for seed in seeds:
            stragglers = stragglers_of(seed, args.clients)
            for split in splits:
                parts = split_of(split, labels, args, seed, stragglers)
                for slowdown in (2.0, 4.0):
                    for method in methods:
                        if slowdown == 4.0 and method in ("fedavg_wait", "fedavg_drop"):
                            continue  # same training as at 2x; only the clock differs (scaled later)
                        for factor in factors:
                            pl = p["plans"][str(slowdown)]
                            key = f"{name}/{split}/{int(slowdown)}x/{method}/seed{seed}"
                            if len(factors) > 1:
                                key += f"/soft_factor={factor}"
                            tasks.append({"key": key, "model": name, "method": method, "slowdown": slowdown,
                                          "seed": seed, "stragglers": stragglers, "parts": parts,
                                          "plan": pl["ratios"], "sub_step_s": pl["step_s"],
                                          "full_step_s": p["full_step_predicted_s"], "soft_factor": factor,
                                          "rounds": args.rounds, "eval_every": args.eval_every, "steps": args.steps,
                                          "batch": args.batch, "lr": args.lr})
    return tasks


def run_all(tasks, workers):
    out, t0 = {}, time.time()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        for i, (key, rows) in enumerate(pool.imap_unordered(run, tasks)):
            out[key] = rows
            print(f"  [{i + 1}/{len(tasks)} {time.time() - t0:.0f}s] {key:<48} final acc {rows[-1]['accuracy']:.3f}",
                  flush=True)
    return out


def tune_scale(args, labels, out, t_start):
    """HeteroFL's scaler on or off for the sub-model methods: rotating, seed 0, every split, final
    accuracy on the 2,000 validation images, with the committed run's profiles and plans."""
    res = json.loads((out / "soft_results.json").read_text())
    args.eval_every = args.rounds
    tasks = []
    for scale in (False, True):
        for t in make_tasks(args, res["profiles"], labels, ["rotating"], SPLITS, [TUNE_SEED], [args.soft_factor]):
            tasks.append(dict(t, scale=scale, key=t["key"] + f"/scale={int(scale)}"))
    runs = run_all(tasks, args.workers)
    final = {k: rows[-1]["accuracy"] for k, rows in sorted(runs.items())}
    table = {}
    for split in SPLITS:
        for scale in (0, 1):
            table[f"{split}/scale={scale}"] = float(np.mean([a for k, a in final.items()
                                                             if f"/{split}/" in k and k.endswith(f"scale={scale}")]))
    print("mean validation accuracy (rotating, seed 0):", json.dumps(table, indent=1))
    (out / "soft_tuning_scale.json").write_text(json.dumps(
        {"config": vars(args), "mean_validation_accuracy": table, "runs": final, "seconds": time.time() - t_start},
        indent=1))
    return 0


def with_4x_baselines(runs):
    """FedAvg-wait and FedAvg-drop train the same at 2x and 4x; only the clock differs: the 4x runs
    are the 2x runs with wait's round times doubled."""
    for key in list(runs):
        name, split, sd, method, seed = key.split("/")
        if sd == "2x" and method in ("fedavg_wait", "fedavg_drop"):
            scale = 2.0 if method == "fedavg_wait" else 1.0
            runs[f"{name}/{split}/4x/{method}/{seed}"] = [dict(r, time_s=r["time_s"] * scale, round_s=r["round_s"] * scale)
                                                         for r in runs[key]]
    return runs


def load_eval_data(cfg):
    torch.set_num_threads(1)
    x_all, y_all, x_test, y_test = load_fashion_mnist()
    _DATA.update(x_train=x_all, y_train=y_all, x_eval=x_test[:cfg.test], y_eval=y_test[:cfg.test])
    return y_all.numpy()


def run_missing(out, workers):
    """The runs OUT/soft_results.json lacks for the script's current splits (a split added after the
    main run), with the main run's profiles, plans, seeds and settings, so that every split shares
    one profile; then their --budget runs when the main run has them."""
    res = json.loads((out / "soft_results.json").read_text())
    cfg = argparse.Namespace(**res["config"])
    t_start = time.time()
    labels = load_eval_data(cfg)
    tasks = [t for t in make_tasks(cfg, res["profiles"], labels, METHODS, SPLITS, cfg.seeds, [cfg.soft_factor])
             if t["key"] not in res["runs"]]
    if not tasks:
        print("no main runs missing")
        return run_budget(out, workers, only_missing=True) if "budget_runs" in res else 0
    for t in tasks:
        t["scale"] = bool(getattr(cfg, "scale", False))
    tasks.sort(key=lambda t: t["model"] != "cnn")
    res["runs"] = dict(sorted({**res["runs"], **with_4x_baselines(run_all(tasks, workers))}.items()))
    res["added_seconds"] = res.get("added_seconds", 0.0) + time.time() - t_start
    res["added_splits"] = sorted(set(res.get("added_splits", [])) | {t["key"].split("/")[1] for t in tasks})
    (out / "soft_results.json").write_text(json.dumps(res, indent=1))
    write_page(res, out)
    print(f"added {len(tasks)} runs in {time.time() - t_start:.0f}s")
    if "budget_runs" in res:
        return run_budget(out, workers, only_missing=True)
    return 0


def run_budget(out, workers, only_missing=False):
    """Rotating and FedAvg-drop for 60% of FedAvg-wait's simulated time (the goal's budget), from the
    main run's profiles, plans and settings; the first ``rounds`` rounds repeat the main run's.
    ``only_missing``: only the groups OUT/soft_results.json has no budget runs for yet."""
    res = json.loads((out / "soft_results.json").read_text())
    cfg = argparse.Namespace(**res["config"])
    t_start = time.time()
    labels = load_eval_data(cfg)
    tasks = make_tasks(cfg, res["profiles"], labels, ["fedavg_drop", "rotating"], SPLITS, cfg.seeds,
                       [cfg.soft_factor])
    if only_missing:
        tasks = [t for t in tasks if t["key"] not in res.get("budget_runs", {})]
    keep = []
    for t in tasks:
        name, split, _, method, seed = t["key"].split("/")
        wait = res["runs"][f"{name}/{split}/{int(t['slowdown'])}x/fedavg_wait/{seed}"][-1]["time_s"]
        if method == "fedavg_drop":  # one run to the 4x budget serves 2x too (its first rounds)
            wait *= 2.0
        round_s = res["runs"][t["key"]][0]["round_s"]
        t["rounds"] = int(np.floor(0.6 * wait / round_s + 1e-9))
        keep.append(t)
    keep.sort(key=lambda t: (t["model"] != "cnn", -t["rounds"]))
    runs = run_all(keep, workers)
    budget = {}
    for key, rows in runs.items():
        name, split, sd, method, seed = key.split("/")
        budget[key] = rows
        if method == "fedavg_drop":
            wait = res["runs"][f"{name}/{split}/2x/fedavg_wait/{seed}"][-1]["time_s"]
            budget[f"{name}/{split}/4x/{method}/{seed}"] = rows
            budget[key] = [r for r in rows if r["time_s"] <= 0.6 * wait + 1e-9]
    kept = res.get("budget_runs", {}) if only_missing else {}
    res["budget_runs"] = dict(sorted({**kept, **budget}.items()))
    res["budget_seconds"] = (res.get("budget_seconds", 0.0) if only_missing else 0.0) + time.time() - t_start
    (out / "soft_results.json").write_text(json.dumps(res, indent=1))
    write_page(res, out)
    print(f"budget runs done in {res['budget_seconds']:.0f}s")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--per-client", type=int, default=300)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--soft-factor", type=float, default=SOFT_FACTOR)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 rounds, one seed, the MLP only: a smoke run")
    ap.add_argument("--tune", action="store_true",
                    help=f"rotating only, soft_factor in {TUNE_FACTORS}, seed {TUNE_SEED}, non-IID splits, final "
                         "accuracy on the 2,000 validation images; writes OUT/soft_tuning.json")
    ap.add_argument("--scale", action="store_true",
                    help="HeteroFL's scaler in the sub-models of static, random and rotating (extract(scale=True))")
    ap.add_argument("--tune-scale", action="store_true",
                    help="rotating with and without the scaler, seed 0, every split, validation data (~5 min); "
                         "uses OUT/soft_results.json's profiles")
    ap.add_argument("--budget", action="store_true",
                    help="after a main run: continue rotating and FedAvg-drop (same seeds, same start) for as many "
                         "rounds as fit in 60%% of FedAvg-wait's simulated time; adds them to OUT/soft_results.json")
    ap.add_argument("--add-missing", action="store_true",
                    help="run what OUT/soft_results.json lacks for the current splits (e.g. a split added to the "
                         "script), with its profiles, plans and settings, then the --budget runs of those")
    ap.add_argument("--profiler-repeats", type=int, default=0,
                    help="only profile + validate both models this many times, independently (writes "
                         "OUT/soft_profiler_repeats.json and OUT/soft-profiler-repeats.md)")
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--page-only", action="store_true", help="rewrite the page from OUT/soft_results.json")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    if args.page_only:
        write_page(json.loads((out / "soft_results.json").read_text()), out)
        return 0
    if args.budget:
        return run_budget(out, args.workers)
    if args.add_missing:
        return run_missing(out, args.workers)
    if args.quick:
        args.rounds, args.seeds = 3, args.seeds[:1]
    torch.set_num_threads(1)
    (out / "img").mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    x_all, y_all, x_test, y_test = load_fashion_mnist()
    labels = y_all.numpy()
    _DATA.update(x_train=x_all, y_train=y_all)
    if args.tune or args.tune_scale:
        _DATA.update(x_eval=x_all[CLIENT_POOL:CLIENT_POOL + 2000], y_eval=y_all[CLIENT_POOL:CLIENT_POOL + 2000])
    else:
        _DATA.update(x_eval=x_test[:args.test], y_eval=y_test[:args.test])
    if args.tune_scale:
        return tune_scale(args, labels, out, t_start)
    batch_x, batch_y = x_all[:args.batch], y_all[:args.batch]
    names = ["mlp"] if args.quick else list(MODELS)
    if args.profiler_repeats:
        return profiler_repeats(names, batch_x, batch_y, args, out, t_start)
    profiles = {name: profile_model(name, batch_x, batch_y, args) for name in names}

    if args.tune:
        args.eval_every = args.rounds  # only the final accuracy is compared
        tasks = make_tasks(args, profiles, labels, ["rotating"], ["dirichlet", "skew"], [TUNE_SEED], TUNE_FACTORS)
        runs = run_all(tasks, args.workers)
        table = {f: float(np.mean([rows[-1]["accuracy"] for k, rows in runs.items() if k.endswith(f"={f}")]))
                 for f in TUNE_FACTORS}
        best = max(table, key=table.get)
        print("mean validation accuracy per soft_factor:", table, "-> best", best)
        (out / "soft_tuning.json").write_text(json.dumps(
            {"config": vars(args), "mean_validation_accuracy": {str(f): v for f, v in table.items()}, "best": best,
             "runs": {k: rows[-1]["accuracy"] for k, rows in sorted(runs.items())},
             "seconds": time.time() - t_start}, indent=1))
        return 0

    tasks = make_tasks(args, profiles, labels, METHODS, SPLITS, args.seeds, [args.soft_factor])
    for t in tasks:
        t["scale"] = bool(args.scale)
    tasks.sort(key=lambda t: t["model"] != "cnn")  # the slower model first, for a better balance
    runs = with_4x_baselines(run_all(tasks, args.workers))
    results = {"config": vars(args), "stragglers": {str(s): stragglers_of(s, args.clients) for s in args.seeds},
               "profiles": profiles, "runs": dict(sorted(runs.items())), "seconds": time.time() - t_start}
    (out / "soft_results.json").write_text(json.dumps(results, indent=1))
    write_page(results, out)
    print(f"done in {results['seconds']:.0f}s -> {out / 'soft-training-results.md'}")


def summarise_runs(res):
    """Per model/split/slowdown and method: per-seed final accuracy and time-to-target fraction."""
    seeds = res["config"]["seeds"]
    groups = sorted({k.rsplit("/", 2)[0] for k in res["runs"]})
    out = {}
    for grp in groups:
        wait = {s: res["runs"][f"{grp}/fedavg_wait/seed{s}"] for s in seeds}
        for method in METHODS:
            finals, fracs, per_round = [], [], []
            for s in seeds:
                rows = res["runs"][f"{grp}/{method}/seed{s}"]
                finals.append(rows[-1]["accuracy"])
                per_round.append(np.mean([r["round_s"] for r in rows]))
                tt = time_to(rows, wait[s][-1]["accuracy"] - 0.01)
                fracs.append(None if tt is None else tt / wait[s][-1]["time_s"])
            out[(grp, method)] = {"finals": finals, "fracs": fracs, "round_s": float(np.mean(per_round))}
    return groups, out


def summarise_budget(res):
    """Per group: rotating and FedAvg-drop at the end of the 60% budget, and rotating's time to target."""
    seeds = res["config"]["seeds"]
    out = {}
    for grp in sorted({k.rsplit("/", 2)[0] for k in res["runs"]}):
        if any(f"{grp}/rotating/seed{s}" not in res["budget_runs"] for s in seeds):
            continue  # a split added since the budget runs (--add-missing runs them next)
        b = {"rot": [], "drop": [], "rot_fracs": []}
        for s in seeds:
            wait = res["runs"][f"{grp}/fedavg_wait/seed{s}"]
            rot, drop = res["budget_runs"][f"{grp}/rotating/seed{s}"], res["budget_runs"][f"{grp}/fedavg_drop/seed{s}"]
            b["rot"].append(rot[-1]["accuracy"])
            b["drop"].append(drop[-1]["accuracy"])
            tt = time_to(rot, wait[-1]["accuracy"] - 0.01)
            b["rot_fracs"].append(None if tt is None else tt / wait[-1]["time_s"])
            b["rounds_rot"], b["rounds_drop"] = rot[-1]["round"], drop[-1]["round"]
        out[grp] = b
    return out


def _pm(values, scale=100.0, digits=1):
    v = scale * np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.{digits}f}"


def write_page(res, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = res["config"]
    (out / "img").mkdir(parents=True, exist_ok=True)
    lines = ["# Soft-training results (generated)", "",
             "Produced by `.venv/bin/python scripts/soft_experiments.py` "
             f"({res['seconds'] / 60:.1f} min on this machine"
             + (f", then `--budget` {res['budget_seconds'] / 60:.1f} min" if "budget_seconds" in res else "")
             + (f"; the {', '.join(res['added_splits'])} split(s) added afterwards with `--add-missing` "
                f"({res['added_seconds'] / 60:.1f} min, the same profiles, plans, seeds and settings; their budget "
                "runs are included in the `--budget` time)" if res.get("added_splits") else "")
             + f"; settings: {json.dumps(cfg)}). "
             f"Stragglers per seed: {res['stragglers']}. See [soft-training.md](soft-training.md) for the set-up "
             "and the discussion.", ""]
    lines += ["## Profiler", "",
              "Timings: one torch thread, median of 12 rounds x 2 steps per configuration, configurations "
              "interleaved in a new random order every round, a fresh copy of each model every round. "
              "\"error\" = predicted / measured - 1. \"vs whole model\" rescales the prediction by the whole "
              "model's measured/predicted time in the same batch of measurements (it removes the machine's "
              "speed drift between profiling and validation, and leaves the cost model's own error).", "",
              "| model | profile s | t0 ms | k | e (ns / activation byte) | calibration residuals |", "|---|---|---|---|---|---|"]
    for m, p in res["profiles"].items():
        c = p["calibration"]
        lines.append(f"| {m} | {p['seconds_to_profile']:.1f} | {1e3 * c['t0_s']:.2f} | {c['k']:.3f} | "
                     f"{1e9 * c['activation_s_per_byte']:.3f} | {100 * min(c['residuals']):+.0f}% .. "
                     f"{100 * max(c['residuals']):+.0f}% |")
    lines += ["", "Held-out random per-space keep ratios (uniform in [0.2, 1], not used for fitting):", "",
              "| model | config | mean keep ratio | predicted ms | measured ms | error | vs whole model | predicted MB | measured MB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m, p in res["profiles"].items():
        for row in p["held_out"]:
            lines.append(f"| {m} | {row['config']} | {row['mean_ratio']:.2f} | {1e3 * row['predicted_s']:.2f} | "
                         f"{1e3 * row['measured_s']:.2f} | {100 * row['error']:+.1f}% | {100 * row['error_vs_full']:+.1f}% | "
                         f"{row['predicted_bytes'] / 1e6:.2f} | {row['measured_bytes'] / 1e6:.2f} |")
    lines += ["", "## Step time at uniform keep ratio r (extracted sub-model)", "",
              "| model | r | full ms | sub-model ms | predicted ms | prediction error | vs whole model | speed-up |",
              "|---|---|---|---|---|---|---|---|"]
    for m, p in res["profiles"].items():
        for r, s in p["uniform"].items():
            lines.append(f"| {m} | {r} | {1e3 * s['full_measured_s']:.2f} | {1e3 * s['measured_s']:.2f} | "
                         f"{1e3 * s['predicted_s']:.2f} | {100 * s['error']:+.1f}% | {100 * s['error_vs_full']:+.1f}% | "
                         f"{s['speedup']:.2f}x |")
    lines += ["", "## Planner: straggler keep ratios (deadline = fast clients' full-model round)", "",
              "| model | slowdown | feasible | mean keep ratio | per-space ratios | predicted round s | full-model round s |",
              "|---|---|---|---|---|---|---|"]
    for m, p in res["profiles"].items():
        for s, pl in p["plans"].items():
            lines.append(f"| {m} | {float(s):.0f}x | {pl['feasible']} | {pl['mean_ratio']:.2f} | {pl['ratios']} | "
                         f"{pl['predicted_s']:.3f} | {pl['full_s']:.3f} |")
    groups, summ = summarise_runs(res)
    seeds = cfg["seeds"]
    lines += ["", "## Federated runs", "",
              f"Seeds {seeds}; accuracy in % (mean ± sample standard deviation over the seeds, then the per-seed "
              f"values); soft_factor {cfg['soft_factor']} for static, random and rotating. Target = the same seed's "
              "FedAvg-wait final accuracy minus 1 point; time to target as a fraction of FedAvg-wait's total "
              "simulated time (mean over the seeds that reach it, and how many do). Times are simulated seconds.", "",
              "| model | split | stragglers | method | s / round | final acc % | per seed | time to target | reached |",
              "|---|---|---|---|---|---|---|---|---|"]
    for grp in groups:
        m, split, sd = grp.split("/")
        for method in METHODS:
            s = summ[(grp, method)]
            fr = [f for f in s["fracs"] if f is not None]
            lines.append(f"| {m} | {split} | {sd} | {method} | {s['round_s']:.3f} | {_pm(s['finals'])} | "
                         f"{' / '.join(f'{100 * a:.1f}' for a in s['finals'])} | "
                         f"{f'{100 * np.mean(fr):.0f}%' if fr else '-'} | {len(fr)}/{len(seeds)} |")
    lines += ["", "## Goals", "", "| goal | case | value | met |", "|---|---|---|---|"]
    for m, p in res["profiles"].items():
        u = p["uniform"]["0.5"]
        for r, s in p["uniform"].items():
            lines.append(f"| step time at r = {r} within 10% of prediction | {m} | {100 * s['error']:+.1f}% "
                         f"({100 * s['error_vs_full']:+.1f}% vs whole model) | {'yes' if abs(s['error']) <= 0.10 else 'no'} |")
        errs = [row["error"] for row in p["held_out"]]
        inside = sum(abs(e) <= 0.10 for e in errs)
        lines.append(f"| held-out random configurations within 10% | {m} | {100 * min(errs):+.0f}% .. "
                     f"{100 * max(errs):+.0f}% ({inside}/{len(errs)} inside) | {'yes' if inside == len(errs) else 'no'} |")
        lines.append(f"| >= 1.8x faster at r = 0.5 | {m} | {u['speedup']:.2f}x | {'yes' if u['speedup'] >= 1.8 else 'no'} |")
    budget = summarise_budget(res) if "budget_runs" in res else {}
    for grp in groups:
        rot, drop = summ[(grp, "rotating")], summ[(grp, "fedavg_drop")]
        fracs = budget[grp]["rot_fracs"] if grp in budget else rot["fracs"]
        ok = [f is not None and f <= 0.6 for f in fracs]
        fr = ", ".join("never" if f is None else f"{100 * f:.0f}%" for f in fracs)
        how = " (within the 60% budget)" if grp in budget else f" (in {cfg['rounds']} rounds)"
        lines.append(f"| rotating within 1 point of FedAvg-wait's final accuracy in <= 60% of its time{how} | {grp} | "
                     f"{fr} | {'yes' if all(ok) else ('no' if not any(ok) else f'{sum(ok)}/{len(ok)} seeds')} |")
        if "/iid/" not in grp:
            diffs = [("after %d rounds" % cfg["rounds"], np.array(rot["finals"]) - np.array(drop["finals"]))]
            if grp in budget:
                diffs.append(("at 60% of FedAvg-wait's time", np.array(budget[grp]["rot"]) - np.array(budget[grp]["drop"])))
            for when, d in diffs:
                wins = int((d > 0).sum())
                verdict = "yes" if wins == len(d) else ("no" if d.mean() <= 0 else f"on average ({wins}/{len(d)} seeds)")
                lines.append(f"| rotating beats dropping stragglers (non-IID, final accuracy {when}) | {grp} | "
                             f"{_pm(d)} points ({' / '.join(f'{100 * x:+.1f}' for x in d)}) | {verdict} |")
    if budget:
        lines += ["", "## Equal wall-clock budget: 60% of FedAvg-wait's time", "",
                  "The goal allows rotating soft-training 60% of FedAvg-wait's simulated time; with the same number "
                  "of rounds it stops at 50% (2x) or 25% (4x). `--budget` continues rotating and FedAvg-drop from "
                  "the same start (same seeds; their first rounds repeat the main run's) for as many rounds as fit "
                  "in 60% of FedAvg-wait's time. Accuracy in %, mean ± standard deviation, then per seed.", "",
                  "| group | rounds (rotating / drop) | FedAvg-wait final | rotating at budget | FedAvg-drop at budget | "
                  "rotating - drop | rotating time to target |", "|---|---|---|---|---|---|---|"]
        for grp in (g for g in groups if g in budget):
            b = budget[grp]
            fr = ", ".join("never" if f is None else f"{100 * f:.0f}%" for f in b["rot_fracs"])
            lines.append(f"| {grp} | {b['rounds_rot']} / {b['rounds_drop']} | {_pm(summ[(grp, 'fedavg_wait')]['finals'])} | "
                         f"{_pm(b['rot'])} ({' / '.join(f'{100 * a:.1f}' for a in b['rot'])}) | "
                         f"{_pm(b['drop'])} ({' / '.join(f'{100 * a:.1f}' for a in b['drop'])}) | "
                         f"{_pm(np.array(b['rot']) - np.array(b['drop']))} | {fr} |")
    lines += ["", "## Plots", ""]
    ncol = 4
    nrow = (len(groups) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(18, 3.8 * nrow), squeeze=False)
    for ax, grp in zip(axes.flat, groups):
        for method in METHODS:
            src = res["budget_runs"] if "budget_runs" in res and method in ("rotating", "fedavg_drop") else res["runs"]
            runs = [src[f"{grp}/{method}/seed{s}"] for s in seeds]
            t = np.mean([[r["time_s"] for r in rows] for rows in runs], 0)
            a = np.array([[r["accuracy"] for r in rows] for rows in runs])
            ax.plot(t, a.mean(0), label=method, marker=".", ms=3)
            ax.fill_between(t, a.min(0), a.max(0), alpha=0.15)
        wait_end = np.mean([res["runs"][f"{grp}/fedavg_wait/seed{s}"][-1]["time_s"] for s in seeds])
        ax.axvline(0.6 * wait_end, color="k", ls=":", lw=1)
        ax.set_title(grp, fontsize=10)
        ax.set_xlabel("simulated wall-clock (s)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "img" / "soft_accuracy_vs_time.png", dpi=80)
    plt.close(fig)
    lines.append("![accuracy vs simulated wall-clock (mean over seeds, band: min..max; dotted: 60% of FedAvg-wait's "
                 "time; rotating and FedAvg-drop continue to it when --budget has run)](img/soft_accuracy_vs_time.png)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for m, p in res["profiles"].items():
        ax.scatter([1e3 * r["measured_s"] for r in p["held_out"]], [1e3 * r["predicted_s"] for r in p["held_out"]],
                   label=f"{m} held-out")
        ax.scatter([1e3 * s["measured_s"] for s in p["uniform"].values()],
                   [1e3 * s["predicted_s"] for s in p["uniform"].values()], marker="x", label=f"{m} uniform r")
    lim = np.array(ax.get_xlim())
    ax.plot(lim, lim, "k--", lw=1)
    ax.fill_between(lim, 0.9 * lim, 1.1 * lim, color="k", alpha=0.08, label="±10%")
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
