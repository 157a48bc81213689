"""Experiments for docs/tensor-recovery.md: quantized tensor recovery with bricklab.tensor.

    .venv/bin/python scripts/tensor_experiments.py [--quick]

1. relative error vs dimension n (order 3, ranks 3 and 10): the error must fall as n grows;
2. error vs the number of levels K, the observed fraction and the noise level, with known and
   with estimated boundaries;
3. against the baselines on the same data (1-bit, unquantized CP by least squares on level
   values, quantized matrix recovery of the mode-1 unfolding);
4. Fashion-MNIST images of one class stacked as a 28 x 28 x N tensor, quantized to 4 levels with
   missing pixels (CP and t-SVD);
5. a synthetic ratings tensor (users x items x contexts, 1..5 stars, 98% missing) with known
   ground truth and an unknown quantization rule.

Writes docs/img/tensor_*.png and replaces the block between the "results" markers in
docs/tensor-recovery.md with the tables. Seeds are fixed; the whole run takes about 10 minutes
on 2 cores (--quick: about 1 minute, smaller sizes, for checking the script).
"""
import argparse
import gzip
import json
import math
import os
import pathlib
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # shared machine: do not spin idle workers

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from bricklab import tensor as bt  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
IMG = REPO / "docs" / "img"
DOC = REPO / "docs" / "tensor-recovery.md"
FMNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]

SIGNAL_STD = 0.3  # entries of the synthetic X have this standard deviation


def cp_inner(a, b):
    g = np.ones((a[0].shape[1], b[0].shape[1]))
    for fa, fb in zip(a, b):
        g *= fa.T @ fb
    return g.sum()


def cp_rel_error(est, true):
    """||[[est]] - [[true]]||_F / ||[[true]]||_F from the factors (no dense tensor needed)."""
    e2 = cp_inner(est, est) - 2 * cp_inner(est, true) + cp_inner(true, true)
    return math.sqrt(max(e2, 0.0) / cp_inner(true, true))


def synthetic(n, rank, seed, order=3):
    """Random rank-`rank` CP tensor with entry standard deviation SIGNAL_STD (dense, for quantize)."""
    rng = np.random.default_rng(seed)
    factors = [rng.normal(size=(n, rank)) for _ in range(order)]
    scale = SIGNAL_STD / math.sqrt(cp_inner(factors, factors) / n ** order)
    factors[0] *= scale
    X = np.einsum("ir,jr,kr->ijk", *factors)
    return X, factors


def quantile_boundaries(K, sigma):
    """Boundaries giving equally likely levels for X + Z with X ~ N(0, SIGNAL_STD^2), Z ~ N(0, sigma^2)."""
    s = math.sqrt(SIGNAL_STD ** 2 + sigma ** 2)
    return [s * stats.norm.ppf(l / K) for l in range(1, K)]


def alpha_for(X):
    """The bound |X| <= alpha given to the solver: 3 max |X|. The row-norm projection enforces
    |X| <= prod of row norms <= alpha (Hoelder), much tighter than |X| <= alpha itself, so alpha
    needs head room (docs/tensor-recovery.md, "Choosing alpha")."""
    return 3.0 * float(np.abs(X).max())


def run(fn, **kw):
    t0 = time.perf_counter()
    est = fn(**kw)
    return est, time.perf_counter() - t0


# ---- 1. error vs n ---------------------------------------------------------------------------

def exp_dimension(quick):
    ns = [30, 50, 80] if quick else [50, 100, 150, 200, 300, 400]
    ranks = [3, 10]
    frac, sigma, K = 0.05, 0.1, 5
    w = quantile_boundaries(K, sigma)
    rows = []
    for r in ranks:
        for n in ns:
            X, F = synthetic(n, r, seed=n + r)
            idx, lev = bt.quantize(X, w, sigma=sigma, observed_fraction=frac, seed=1)
            alpha = alpha_for(X)
            del X
            est, secs = run(bt.recover, indices=idx, levels=lev, shape=(n, n, n), rank=r, sigma=sigma,
                            alpha=alpha, boundaries=w, max_iter=150)
            err = cp_rel_error(list(est.factors), F)
            rows.append(dict(rank=r, n=n, m=len(lev), err=err, iters=est.iterations, secs=secs))
            print(f"[dimension] rank {r} n {n}: |Omega| {len(lev)}, rel. error {err:.4f}, {est.iterations} it, "
                  f"{secs:.1f} s", flush=True)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in ranks:
        pts = [(q["n"], q["err"]) for q in rows if q["rank"] == r]
        ax.plot(*zip(*pts), "o-", label=f"rank {r}")
    ax.set_xlabel("n (tensor n x n x n, 5% observed)")
    ax.set_ylabel("relative error ||X_hat - X|| / ||X||")
    ax.set_title("Error falls as the dimension grows")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "tensor_error_vs_n.png", dpi=120)
    plt.close(fig)
    return rows


# ---- 2. sweeps: K, observed fraction, sigma -------------------------------------------------

def exp_sweeps(quick):
    n, r = (40, 4) if quick else (100, 5)
    X, F = synthetic(n, r, seed=7)
    alpha = alpha_for(X)
    base = dict(K=5, frac=0.1, sigma=0.1)
    settings = {
        "K": [2, 3, 4, 5, 6, 8],
        "frac": [0.02, 0.05, 0.1, 0.2, 0.4],
        "sigma": [0.02, 0.05, 0.1, 0.2, 0.4],
    }
    if quick:
        settings = {k: v[:3] for k, v in settings.items()}
    rows = []
    for name, values in settings.items():
        for v in values:
            cfg = dict(base, **{name: v})
            w = quantile_boundaries(cfg["K"], cfg["sigma"])
            idx, lev = bt.quantize(X, w, sigma=cfg["sigma"], observed_fraction=cfg["frac"], seed=3)
            for known in (True, False):
                est = bt.recover(idx, lev, X.shape, rank=r, sigma=cfg["sigma"], alpha=alpha,
                                 boundaries=w if known else None, num_levels=cfg["K"], max_iter=200)
                err = cp_rel_error(list(est.factors), F)
                werr = float(np.max(np.abs(np.asarray(est.boundaries) - w)))
                rows.append(dict(param=name, value=v, known=known, err=err, w_err=werr, iters=est.iterations))
                print(f"[sweep] {name} = {v} {'known' if known else 'estimated'} boundaries: rel. error {err:.4f}"
                      f" (max boundary error {werr:.3f}), {est.iterations} it", flush=True)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    labels = {"K": "levels K", "frac": "observed fraction", "sigma": "noise sigma (signal std 0.3)"}
    for ax, name in zip(axes, settings):
        for known, style in ((True, "o-"), (False, "s--")):
            pts = [(q["value"], q["err"]) for q in rows if q["param"] == name and q["known"] == known]
            ax.plot(*zip(*pts), style, label="known boundaries" if known else "estimated boundaries")
        ax.set_xlabel(labels[name])
        ax.set_ylabel("relative error")
        if name != "K":
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{n}x{n}x{n}, rank {r}; defaults K = 5, 10% observed, sigma = 0.1")
    fig.tight_layout()
    fig.savefig(IMG / "tensor_sweeps.png", dpi=120)
    plt.close(fig)
    return rows


def best_of_rules(fn, common):
    """The baseline with both step rules, keeping the lower objective (no oracle): on 1-bit data
    the Newton rule's near-exact block steps can settle in a worse local minimum than the
    curvature rule's partial ones."""
    a = fn(**common)
    b = fn(**common, step="curvature", extrapolate=True)
    return a if a.objective[-1] <= b.objective[-1] else b


# ---- 3. baselines --------------------------------------------------------------------------

def exp_baselines(quick):
    n, r = (40, 4) if quick else (100, 5)
    X, F = synthetic(n, r, seed=11)
    alpha = alpha_for(X)
    sigma, K = 0.1, 5
    w = quantile_boundaries(K, sigma)
    rows = []
    for frac in ([0.05, 0.2] if quick else [0.02, 0.05, 0.1, 0.2]):
        idx, lev = bt.quantize(X, w, sigma=sigma, observed_fraction=frac, seed=5)
        common = dict(indices=idx, levels=lev, shape=X.shape, rank=r, sigma=sigma, alpha=alpha, boundaries=w)
        res = {
            "quantized CP (this work)": bt.recover(**common),
            "1-bit CP": best_of_rules(bt.recover_one_bit, common),
            "unquantized CP (LS on level values)": bt.recover_least_squares(**common),
            "quantized matrix (mode-1 unfolding)": best_of_rules(bt.recover_unfolding, common),
        }
        errs = {k: v.relative_error(X) for k, v in res.items()}
        rows.append(dict(frac=frac, m=len(lev), **errs))
        print(f"[baselines] fraction {frac}: " + ", ".join(f"{k} {v:.4f}" for k, v in errs.items()), flush=True)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key in rows[0]:
        if key in ("frac", "m"):
            continue
        ax.plot([q["frac"] for q in rows], [q[key] for q in rows], "o-", label=key)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("observed fraction")
    ax.set_ylabel("relative error")
    ax.set_title(f"Same observations, {n}x{n}x{n} rank {r}, K = 5")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMG / "tensor_baselines.png", dpi=120)
    plt.close(fig)
    return rows


# ---- 4. Fashion-MNIST ------------------------------------------------------------------------

def load_fmnist(label, count):
    raw = gzip.open(FMNIST / "train-images-idx3-ubyte.gz").read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.open(FMNIST / "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    sel = images[labels == label][:count].astype(np.float64) / 255.0
    return np.ascontiguousarray(sel.transpose(1, 2, 0))  # 28 x 28 x count


def exp_images(quick):
    label, count = 7, (60 if quick else 300)  # sneakers
    X = load_fmnist(label, count) * 2 - 1          # pixels in [-1, 1]
    sigma, frac = 0.1, 0.5
    w = [-0.6, 0.0, 0.6]                           # 4 levels
    idx, lev = bt.quantize(X, w, sigma=sigma, observed_fraction=frac, seed=2)
    # alpha = 8, not 1: the outer levels are half-lines, so the likelihood pushes their pixels
    # towards +-alpha, and the row-norm projection (|X| <= prod of row norms) binds long before
    # |X| = alpha. A loose alpha lets the estimate reach the extremes; it is then clipped to the
    # known pixel range [-1, 1] (both errors are reported).
    alpha = 8.0
    common = dict(indices=idx, levels=lev, shape=X.shape, sigma=sigma, alpha=alpha, boundaries=w)
    rows = []
    results = {}
    for name, kw in [("quantized CP, rank 10", dict(rank=10)),
                     ("quantized CP, rank 20", dict(rank=20)),
                     ("quantized t-SVD, tubal rank 4", dict(rank=4, method="tsvd")),
                     ("unquantized CP (LS), rank 20", dict(rank=20, baseline=True)),
                     ("1-bit CP, rank 20", dict(rank=20, onebit=True))]:
        kw = dict(kw)
        t0 = time.perf_counter()
        if kw.pop("baseline", False):
            est = bt.recover_least_squares(**common, **kw)
        elif kw.pop("onebit", False):
            est = bt.recover_one_bit(**common, **kw)
        elif kw.get("method") == "tsvd":
            # The t-SVD transforms along mode 3, which should be an ordered axis: the images are
            # arranged 28 x N x 28 (image columns along mode 3) for it, and transposed back.
            est = bt.recover(**dict(common, indices=idx[:, [0, 2, 1]], shape=(28, count, 28)), max_iter=150, **kw)
        else:
            est = bt.recover(**common, max_iter=150, **kw)
        secs = time.perf_counter() - t0
        raw = est.dense()
        if raw.shape != X.shape:
            raw = np.ascontiguousarray(raw.transpose(0, 2, 1))
        D = np.clip(raw, -1, 1)
        err = float(np.linalg.norm(D - X) / np.linalg.norm(X))
        err_raw = float(np.linalg.norm(raw - X) / np.linalg.norm(X))
        results[name] = D
        rows.append(dict(method=name, err=err, err_raw=err_raw, iters=est.iterations, secs=secs))
        print(f"[images] {name}: rel. error {err:.4f} (unclipped {err_raw:.4f}), {est.iterations} it, {secs:.1f} s",
              flush=True)
    # Observed image: the level's representative value where observed, grey where missing.
    vals = bt.level_values(w, sigma, 1.0)
    obs = np.full(X.shape, np.nan)
    obs[tuple(idx.T)] = vals[lev - 1]
    show = [0, 1, 2, 3, 4, 5]
    names = ["original", "observed (4 levels, 50%)", "quantized CP, rank 20", "quantized t-SVD, tubal rank 4",
             "unquantized CP (LS), rank 20"]
    fig, axes = plt.subplots(len(names), len(show), figsize=(1.6 * len(show), 1.7 * len(names)))
    for i, name in enumerate(names):
        stack = X if name == "original" else obs if name.startswith("observed") else results[name]
        for j, k in enumerate(show):
            ax = axes[i, j]
            img = np.ma.masked_invalid(stack[:, :, k])
            cmap = plt.get_cmap("gray").copy()
            cmap.set_bad("#c8a2c8")
            ax.imshow(img, cmap=cmap, vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"Fashion-MNIST '{FMNIST_CLASSES[label]}': {count} images as 28 x 28 x {count} (missing = violet)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(IMG / "tensor_images.png", dpi=110)
    plt.close(fig)
    return rows, dict(label=FMNIST_CLASSES[label], count=count, observed=len(lev))


# ---- 5. ratings ------------------------------------------------------------------------------

def exp_ratings(quick):
    users, items, contexts, r = (150, 100, 4, 3) if quick else (600, 400, 6, 4)
    rng = np.random.default_rng(21)
    # Ground truth: user taste x item profile x context modulation, plus a positive bias so that
    # ratings lean towards 4 stars (as real ratings do); the bias is one more rank-1 term.
    U = rng.normal(size=(users, r))
    V = rng.normal(size=(items, r))
    C = 1 + 0.3 * rng.normal(size=(contexts, r))
    F = [np.hstack([U * 0.35, np.ones((users, 1))]), np.hstack([V, np.full((items, 1), 0.6)]),
         np.hstack([C, np.ones((contexts, 1))])]
    X = np.einsum("ir,jr,kr->ijk", *F)
    w_true = [-0.4, 0.1, 0.6, 1.2]   # 1 | 2 | 3 | 4 | 5 stars
    sigma = 0.3
    frac = 0.02
    idx, lev = bt.quantize(X, w_true, noise="logistic", sigma=sigma, observed_fraction=frac, seed=4)
    # Hold out 10% of the observed ratings.
    perm = rng.permutation(len(lev))
    test, train = perm[: len(lev) // 10], perm[len(lev) // 10:]
    train.sort()
    alpha = alpha_for(X)
    est = bt.recover(idx[train], lev[train], X.shape, rank=r + 1, noise="logistic", sigma=sigma, alpha=alpha,
                     num_levels=5, max_iter=300)
    ls = bt.recover_least_squares(idx[train], lev[train], X.shape, rank=r + 1, alpha=5.0, max_iter=300)
    x_hat = est.entries(idx[test])
    w_hat = np.asarray(est.boundaries)

    def level_probs(x, w):
        cdf = stats.logistic.cdf((np.asarray(w)[None, :] - x[:, None]) / sigma)
        cdf = np.hstack([np.zeros((len(x), 1)), cdf, np.ones((len(x), 1))])
        return np.diff(cdf, axis=1)

    p_hat = level_probs(x_hat, w_hat)
    pred_mode = p_hat.argmax(1) + 1
    pred_mean = p_hat @ np.arange(1, 6)
    true_mean = level_probs(X[tuple(idx[test].T)], w_true) @ np.arange(1, 6)
    ls_pred = np.clip(ls.entries(idx[test]), 1, 5)
    res = dict(
        shape=[users, items, contexts], observed=len(lev), train=len(train), test=len(test),
        w_true=w_true, w_hat=w_hat.tolist(),
        rmse_expected=float(np.sqrt(np.mean((pred_mean - true_mean) ** 2))),
        rmse_observed=float(np.sqrt(np.mean((pred_mean - lev[test]) ** 2))),
        exact=float(np.mean(pred_mode == lev[test])),
        ls_rmse_expected=float(np.sqrt(np.mean((ls_pred - true_mean) ** 2))),
        ls_rmse_observed=float(np.sqrt(np.mean((ls_pred - lev[test]) ** 2))),
        ls_exact=float(np.mean(np.clip(np.round(ls_pred), 1, 5) == lev[test])),
        oracle_rmse_observed=float(np.sqrt(np.mean((true_mean - lev[test]) ** 2))),
        oracle_exact=float(np.mean(level_probs(X[tuple(idx[test].T)], w_true).argmax(1) + 1 == lev[test])),
        iters=est.iterations,
    )
    print("[ratings] " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}),
          flush=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].hist([lev[test], pred_mode], bins=np.arange(0.5, 6), label=["held-out ratings", "predicted (mode)"])
    axes[0].set_xlabel("stars")
    axes[0].legend()
    axes[0].set_title("Rating distribution")
    axes[1].plot(est.objective, label="quantized CP, F (negative log-likelihood)")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("objective")
    axes[1].set_yscale("log")
    axes[1].set_title("Monotone objective (boundaries estimated)")
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMG / "tensor_ratings.png", dpi=120)
    plt.close(fig)
    return res


# ---- page ------------------------------------------------------------------------------------

def tables(dim, sweeps, base, images, image_info, ratings, seconds, command):
    out = [f"Generated by `{command}` ({seconds / 60:.1f} min on this machine).", ""]
    out += ["**1. Relative error vs n** (order 3, 5% observed, K = 5, probit sigma = 0.1, signal std 0.3):", "",
            "| rank | n | observed entries | relative error | iterations | seconds |", "|---|---|---|---|---|---|"]
    out += [f"| {q['rank']} | {q['n']} | {q['m']:,} | {q['err']:.4f} | {q['iters']} | {q['secs']:.1f} |" for q in dim]
    out += ["", "**2. Sweeps** (one parameter at a time from K = 5, 10% observed, sigma = 0.1):", "",
            "| parameter | value | error, known boundaries | error, estimated boundaries | max boundary error |",
            "|---|---|---|---|---|"]
    keyed = {}
    for q in sweeps:
        keyed.setdefault((q["param"], q["value"]), {})[q["known"]] = q
    for (p, v), d in keyed.items():
        out.append(f"| {p} | {v} | {d[True]['err']:.4f} | {d[False]['err']:.4f} | {d[False]['w_err']:.3f} |")
    names = [k for k in base[0] if k not in ("frac", "m")]
    out += ["", "**3. Baselines on the same observations** (relative error; K = 5, sigma = 0.1):", "",
            "| observed fraction | " + " | ".join(names) + " | best baseline / quantized CP |",
            "|---|" + "---|" * (len(names) + 1)]
    for q in base:
        ratio = min(q[k] for k in names[1:]) / q[names[0]]
        out.append(f"| {q['frac']} | " + " | ".join(f"{q[k]:.4f}" for k in names) + f" | {ratio:.2f}x |")
    out += ["", f"**4. Fashion-MNIST** ('{image_info['label']}', {image_info['count']} training images, 28 x 28 x "
            f"{image_info['count']}, pixels scaled to [-1, 1], 4 levels at -0.6 / 0 / 0.6, probit sigma = 0.1, "
            f"50% of the pixels observed: {image_info['observed']:,} observations; alpha = 8, estimates clipped to "
            f"the pixel range [-1, 1]):", "",
            "| method | relative error (clipped) | relative error (raw) | iterations | seconds |", "|---|---|---|---|---|"]
    out += [f"| {q['method']} | {q['err']:.4f} | {q['err_raw']:.4f} | {q['iters']} | {q['secs']:.1f} |" for q in images]
    r = ratings
    out += ["", f"**5. Ratings** ({r['shape'][0]} users x {r['shape'][1]} items x {r['shape'][2]} contexts, "
            f"{r['observed']:,} ratings = 2% observed, logistic noise, boundaries unknown to the solver; "
            f"{r['test']:,} held out):", "",
            "| | quantized CP (boundaries estimated) | least squares on stars | oracle (true X and boundaries) |",
            "|---|---|---|---|",
            f"| RMSE vs the true expected rating | {r['rmse_expected']:.3f} | {r['ls_rmse_expected']:.3f} | 0 |",
            f"| RMSE vs the held-out rating | {r['rmse_observed']:.3f} | {r['ls_rmse_observed']:.3f} | "
            f"{r['oracle_rmse_observed']:.3f} |",
            f"| exact star predicted | {100 * r['exact']:.1f}% | {100 * r['ls_exact']:.1f}% | "
            f"{100 * r['oracle_exact']:.1f}% |", "",
            f"Estimated boundaries {', '.join(f'{v:.3f}' for v in r['w_hat'])} (true "
            f"{', '.join(f'{v:.2f}' for v in r['w_true'])}: the same spacing up to a shift, which X absorbs "
            f"through its constant 'bias' component); {r['iters']} iterations."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script (does not touch the doc)")
    args = ap.parse_args()
    IMG.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dim = exp_dimension(args.quick)
    sweeps = exp_sweeps(args.quick)
    base = exp_baselines(args.quick)
    images, info = exp_images(args.quick)
    ratings = exp_ratings(args.quick)
    seconds = time.perf_counter() - t0
    text = tables(dim, sweeps, base, images, info, ratings, seconds, ".venv/bin/python scripts/tensor_experiments.py")
    print(text)
    if args.quick:
        return 0
    doc = DOC.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + "\n" + doc[doc.index(end):]
        DOC.write_text(doc)
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
