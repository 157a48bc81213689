"""Benchmark: quantized CP recovery (bricklab.tensor.recover, C++ T-APGD) against

  * numpy:    the same algorithm written in vectorised NumPy/SciPy (same likelihood formulas,
              same per-row curvature step with the exact ball prox, same start): it reproduces
              bricklab's objective trajectory, so per-iteration times compare like for like;
  * tensorly: TensorLy's masked CP (parafac(..., mask=...), EM imputation + ALS on the dense
              tensor of level values), where the dense tensor fits in memory.

Prints one table: median time per iteration, time to a given accuracy (relative error of X),
memory, and ratios measured in the same run. Usage:

    .venv/bin/python benchmarks/bench_tensor_recovery.py [--sizes 1e5,1e6,1e7] [--rank 10]
        [--numpy-max 1e7] [--tensorly-max 1e8] [--repeat 3] [--threads 0]
"""
import argparse
import math
import os
import resource
import sys
import time

# Spinning OpenMP workers steal the CPU from the working ones when other processes share the
# cores (this machine is shared); passive waiting is set before libgomp loads, and printed.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

from bricklab import tensor as bt  # noqa: E402

SQRT1_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


# ---- data ---------------------------------------------------------------------------------------

def make_problem(m_target, rank, seed=0, sigma_rel=0.1):
    """Order-3 cube n^3 with about m_target observed entries (fraction 0.1 or more), rank-`rank` X
    scaled to max |X_obs| = 1, boundaries at the 20/40/60/80% quantiles, probit noise."""
    rng = np.random.default_rng(seed)
    frac = 0.1 if m_target >= 1e5 else 0.3
    n = int(round((m_target / frac) ** (1 / 3)))
    shape = (n, n, n)
    total = n ** 3
    lin = np.unique(rng.integers(0, total, size=int(m_target * 1.06)))
    lin = rng.permutation(lin)[: int(m_target)]
    lin.sort()
    idx = np.stack(np.unravel_index(lin, shape), axis=1).astype(np.int64)
    factors = [rng.normal(size=(n, rank)) for _ in range(3)]
    x = np.empty(len(lin))
    for s in range(0, len(lin), 1 << 20):
        sl = slice(s, s + (1 << 20))
        x[sl] = np.einsum("ir,ir,ir->i", factors[0][idx[sl, 0]], factors[1][idx[sl, 1]], factors[2][idx[sl, 2]])
    scale = np.abs(x).max()
    x /= scale
    factors[0] /= scale
    w = np.quantile(x, [0.2, 0.4, 0.6, 0.8])
    sigma = sigma_rel * x.std() / 0.3
    lev = (np.searchsorted(w, x + rng.normal(0, sigma, x.size)) + 1).astype(np.int32)
    return dict(shape=shape, idx=idx, lev=lev, w=w, sigma=sigma, factors=factors, alpha=2.0, rank=rank)


def cp_rel_error(est, true):
    """||[[est]] - [[true]]||_F / ||[[true]]||_F from the factors (CP Gram identity, no dense tensor)."""
    def inner(a, b):
        g = np.ones((a[0].shape[1], b[0].shape[1]))
        for fa, fb in zip(a, b):
            g *= fa.T @ fb
        return g.sum()
    e2 = inner(est, est) - 2 * inner(est, true) + inner(true, true)
    return math.sqrt(max(e2, 0.0) / inner(true, true))


def initial_factors(p, seed=1):
    """The start both implementations use: N(0, s^2) entries with |X| ~ alpha/4, rows clipped."""
    rng = np.random.default_rng(seed)
    r, n_modes = p["rank"], len(p["shape"])
    s = (p["alpha"] / 4 / math.sqrt(r)) ** (1 / n_modes)
    radius = p["alpha"] ** (1 / n_modes)
    out = []
    for n in p["shape"]:
        a = rng.normal(0, s, (n, r))
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        out.append(np.where(norms > radius, a * radius / np.maximum(norms, 1e-300), a))
    return out


# ---- the same algorithm in NumPy ----------------------------------------------------------------

class NumpyTAPGD:
    """T-APGD, curvature rule, no extrapolation: for each mode, per factor row i the minimiser of
    g^T d + 1/2 d^T (c G_i + rho I) d over ||a_i|| <= alpha^(1/N), G_i = sum of Khatri-Rao row outer
    products, g_i the sparse MTTKRP. Vectorised over observations and rows."""

    def __init__(self, p):
        self.shape, self.rank, self.sigma = p["shape"], p["rank"], p["sigma"]
        self.c = 1 / self.sigma ** 2
        self.radius = p["alpha"] ** (1 / len(self.shape))
        w = np.asarray(p["w"])
        self.lower = np.concatenate([[-np.inf], w]) / self.sigma
        self.upper = np.concatenate([w, [np.inf]]) / self.sigma
        idx, lev = p["idx"], p["lev"]
        # Per mode: observations sorted by that mode's index (as bricklab's index does).
        self.modes = []
        for n in range(len(self.shape)):
            order = np.argsort(idx[:, n], kind="stable")
            rows = idx[order, n]
            others = [idx[order, k] for k in range(len(self.shape)) if k != n]
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            self.modes.append(dict(rows=rows, others=others, lev=lev[order] - 1, starts=starts, urows=rows[starts]))

    def loss(self, x, l, grad):
        xs = x / self.sigma
        u, v = self.lower[l] - xs, self.upper[l] - xs
        flip = u + v > 0
        a, b = np.where(flip, -v, u), np.where(flip, -u, v)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = 0.5 * (special.erfc(-b * SQRT1_2) - special.erfc(-a * SQRT1_2))
            nll = -np.log(p)
            d = (np.exp(-0.5 * b * b) - np.exp(-0.5 * a * a)) * INV_SQRT_2PI / p if grad else None
        # Far tail (the same cut as bricklab's kernel): log-space with scipy's log_ndtr.
        tail = b <= -30
        if tail.any():
            la, lb = special.log_ndtr(a[tail]), special.log_ndtr(b[tail])
            logp = lb + np.log(-np.expm1(la - lb))
            nll[tail] = -logp
            if grad:
                d[tail] = (np.exp(-0.5 * b[tail] ** 2 - logp) - np.exp(-0.5 * a[tail] ** 2 - logp)) * INV_SQRT_2PI
        f = nll.sum()
        if not grad:
            return f, None
        return f, np.where(flip, -d, d) / self.sigma

    def objective(self, A):
        md = self.modes[0]
        H = A[1][md["others"][0]] * A[2][md["others"][1]]
        x = np.einsum("ij,ij->i", H, A[0][md["rows"]])
        return self.loss(x, md["lev"], False)[0]

    def ball_step(self, M, p, g):
        r = self.rank
        rhs = np.einsum("nij,nj->ni", M, p) - g
        a = np.linalg.solve(M, rhs[..., None])[..., 0]
        norms = np.linalg.norm(a, axis=1)
        out = norms > self.radius
        if out.any():
            lam, Q = np.linalg.eigh(M[out])
            z = np.einsum("nji,nj->ni", Q, rhs[out])
            mu = np.zeros(out.sum())
            for _ in range(100):
                den = lam + mu[:, None]
                t = z / den
                s = (t * t).sum(1)
                s3 = (t * t / den).sum(1)
                norm = np.sqrt(s)
                active = norm > self.radius * (1 + 1e-12)
                if not active.any():
                    break
                phi = 1 / self.radius - 1 / norm
                dphi = -s3 / (s * norm)
                mu = np.where(active, mu - phi / dphi, mu)
            aa = np.einsum("nij,nj->ni", Q, z / (lam + mu[:, None]))
            nn = np.linalg.norm(aa, axis=1, keepdims=True)
            a[out] = np.where(nn > self.radius, aa * self.radius / nn, aa)
        return a

    def iterate(self, A):
        r = self.rank
        for n, md in enumerate(self.modes):
            B, C = [A[k] for k in range(3) if k != n]
            H = B[md["others"][0]] * C[md["others"][1]]
            P = A[n][md["urows"]]
            x = np.einsum("ij,ij->i", H, np.repeat(P, np.diff(np.r_[md["starts"], len(H)]), axis=0))
            _, d = self.loss(x, md["lev"], True)
            g = np.add.reduceat(H * d[:, None], md["starts"], axis=0)
            G = np.empty((len(md["starts"]), r, r))
            step = 1 << 16  # chunked outer products keep the memory bounded
            bounds = np.r_[md["starts"], len(H)]
            i0 = 0
            while i0 < len(md["starts"]):
                i1 = min(len(md["starts"]), np.searchsorted(bounds, bounds[i0] + step, side="right"))
                i1 = max(i1, i0 + 1)
                lo, hi = bounds[i0], bounds[i1]
                Hc = H[lo:hi]
                G[i0:i1] = np.add.reduceat(Hc[:, :, None] * Hc[:, None, :], md["starts"][i0:i1] - lo, axis=0)
                i0 = i1
            tr = np.trace(G, axis1=1, axis2=2)
            M = self.c * G + (1e-9 * self.c * tr / r + 1e-12 * self.c)[:, None, None] * np.eye(r)
            A[n] = A[n].copy()
            A[n][md["urows"]] = self.ball_step(M, P, g)
        return A


# ---- runners ------------------------------------------------------------------------------------

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bricklab(p, iters, threads, init, step="curvature", extrapolate=False):
    """bricklab with the rule NumpyTAPGD replicates (curvature, no extrapolation) unless told."""
    return bt.recover(p["idx"], p["lev"], p["shape"], rank=p["rank"], sigma=p["sigma"], alpha=p["alpha"],
                      boundaries=p["w"], max_iter=iters, tol=0, init=init, threads=threads, step=step,
                      extrapolate=extrapolate)


def bricklab_history(p, max_iter, threads, init):
    """One run; the relative error of X after every iteration (computed in the callback, whose
    time the solver excludes from its iteration times)."""
    errors = []

    def callback(it, f, factors, w):
        errors.append(cp_rel_error(factors, p["factors"]))

    est = bt.recover(p["idx"], p["lev"], p["shape"], rank=p["rank"], sigma=p["sigma"], alpha=p["alpha"],
                     boundaries=p["w"], max_iter=max_iter, tol=1e-7, init=init, threads=threads, callback=callback)
    # (defaults: step="newton", extrapolate=True)
    times = est.setup_seconds + np.cumsum(est.iteration_seconds)
    return dict(times=times, errors=np.array(errors), final=errors[-1], iters=est.iterations)


def run_tensorly(p, max_iter, seed=0):
    """TensorLy masked CP on the dense tensor of level values; per-iteration wall times (the error
    evaluation in the callback is excluded) and relative errors of X. tol=1e-30, not 0: TensorLy
    0.8.1 only computes the error it passes to the callback when tol is non-zero."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    shape = p["shape"]
    lin = np.ravel_multi_index(tuple(p["idx"].T), shape)
    vals = bt.level_values(p["w"], p["sigma"], p["alpha"])[p["lev"] - 1]
    dense = np.zeros(int(np.prod(shape)))
    dense[lin] = vals
    mask = np.zeros(int(np.prod(shape)))
    mask[lin] = 1.0
    dense, mask = dense.reshape(shape), mask.reshape(shape)
    times, errors = [], []
    state = {"excluded": 0.0}

    def callback(cp, rec_error):
        times.append(time.perf_counter() - state["t0"] - state["excluded"])
        t0 = time.perf_counter()
        w, f = cp
        errors.append(cp_rel_error([f[0] * w] + list(f[1:]), p["factors"]))
        state["excluded"] += time.perf_counter() - t0

    state["t0"] = time.perf_counter()
    parafac(tl.tensor(dense), p["rank"], mask=tl.tensor(mask), n_iter_max=max_iter, init="random", tol=1e-30,
            random_state=seed, callback=callback)
    return dict(per_iter=float(np.median(np.diff(times))), times=np.array(times), errors=np.array(errors),
                best=float(np.min(errors)), iters=len(errors) - 1)


def first_time_below(times, errors, target):
    hit = np.flatnonzero(errors <= target)
    return None if hit.size == 0 else float(times[hit[0]])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--numpy-max", type=float, default=1e7)
    ap.add_argument("--tensorly-max", type=float, default=1e8, help="largest dense tensor (entries) for TensorLy")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--target", type=float, default=None,
                    help="relative error for time-to-accuracy (default: 1.1 x TensorLy's best, else 0.5)")
    ap.add_argument("--check", action="store_true", help="also check numpy and bricklab agree (first iterations)")
    args = ap.parse_args()

    load = os.getloadavg()
    print(f"# bricklab tensor recovery benchmark: rank {args.rank}, probit, K = 5, order 3; "
          f"{os.cpu_count()} cores, load average {load[0]:.2f}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}",
          flush=True)
    rows = []
    for m in [float(s) for s in args.sizes.split(",")]:
        p = make_problem(m, args.rank)
        mobs = len(p["lev"])
        init = initial_factors(p)
        print(f"# |Omega| = {mobs:.3g}, shape {p['shape']}", flush=True)
        # bricklab: per-iteration medians over `repeat` runs of 5 iterations (first excluded: it also
        # evaluates the starting objective).
        ours, newton = [], []
        for _ in range(args.repeat):
            est = run_bricklab(p, 6, args.threads, init)
            ours.extend(est.iteration_seconds[1:])
            newton.extend(run_bricklab(p, 6, args.threads, init, "newton", True).iteration_seconds[1:])
        ours_it = float(np.median(ours))
        newton_it = float(np.median(newton))
        setup = est.setup_seconds
        index_mb = est.index_bytes / 1e6
        # numpy: same algorithm, same start.
        np_it = None
        if mobs <= args.numpy_max:
            impl = NumpyTAPGD(p)
            A = [a.copy() for a in init]
            t = []
            reps = 1 if mobs >= 5e6 else 2
            for _ in range(reps):
                t0 = time.perf_counter()
                A = impl.iterate(A)
                t.append(time.perf_counter() - t0)
            np_it = float(np.median(t))
            if args.check or mobs <= 1e6:
                ref = run_bricklab(p, reps, args.threads, init)
                f_np = impl.objective(A)
                agree = abs(f_np - ref.objective[-1]) / abs(ref.objective[-1])
                print(f"#   numpy vs bricklab objective after {reps} iterations: {f_np:.10g} vs "
                      f"{ref.objective[-1]:.10g} (rel. diff {agree:.1e})", flush=True)
        # TensorLy, then time to a common accuracy target (both must be able to reach it).
        tly = None
        if np.prod(p["shape"]) <= args.tensorly_max:
            tly = run_tensorly(p, max_iter=60 if mobs < 5e6 else 20)
        hist = bricklab_history(p, 200 if mobs < 5e6 else 60, args.threads, init)
        final = hist["final"]
        target = args.target or (1.05 * max(final, tly["best"]) if tly else 1.05 * final)
        hit = np.flatnonzero(hist["errors"] <= target)
        tta = None if hit.size == 0 else (float(hist["times"][hit[0]]), int(hit[0]) + 1)
        tly_tta = first_time_below(tly["times"], tly["errors"], target) if tly else None
        rows.append(dict(m=mobs, shape=p["shape"], ours=ours_it, newton=newton_it, numpy=np_it, tly=tly, tly_tta=tly_tta,
                         setup=setup,
                         index_mb=index_mb, target=target, tta=tta, final=final, final_iters=hist["iters"]))
        print(f"#   bricklab {ours_it:.4f} s/iter, numpy {np_it}, tensorly {tly and tly['per_iter']}, "
              f"target {target:.3f}, bricklab tta {tta}, tensorly tta {tly_tta}", flush=True)

    print()
    print("| observed entries | shape | bricklab s/iter (curvature) | numpy s/iter (same algorithm) | numpy / bricklab | "
          "bricklab s/iter (default: newton) | TensorLy s/iter | TensorLy / bricklab default | target rel. error | "
          "bricklab time to target (iters) | TensorLy time to target | bricklab final error (iters) | TensorLy best error | "
          "setup s | index MB (bytes/obs) |")
    print("|" + "---|" * 15)
    for r in rows:
        fmt = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"
        ratio_np = "-" if r["numpy"] is None else f"{r['numpy'] / r['ours']:.0f}x"
        tl_it = r["tly"]["per_iter"] if r["tly"] else None
        ratio_tl = "-" if tl_it is None else f"{tl_it / r['newton']:.1f}x"
        tta = "not reached" if r["tta"] is None else f"{r['tta'][0]:.2f} s ({r['tta'][1]})"
        tly_tta = "-" if r["tly"] is None else ("not reached" if r["tly_tta"] is None else f"{r['tly_tta']:.2f} s")
        print(f"| {r['m']:.3g} | {'x'.join(map(str, r['shape']))} | {r['ours']:.4f} | {fmt(r['numpy'])} | {ratio_np} | "
              f"{r['newton']:.4f} | {fmt(tl_it)} | {ratio_tl} | {r['target']:.3f} | {tta} | {tly_tta} | "
              f"{r['final']:.3f} ({r['final_iters']}) | {fmt(r['tly']['best'] if r['tly'] else None)} | "
              f"{r['setup']:.2f} | {r['index_mb']:.0f} ({r['index_mb'] * 1e6 / r['m']:.0f}) |")
    print(f"\npeak RSS of this process: {rss_mb():.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
