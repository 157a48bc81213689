"""bricklab.tensor: quantized tensor recovery from Python.

Independent references: scipy.stats / scipy.special for the CDFs, mpmath (50 digits) for the far
tails, finite differences, numpy (einsum MTTKRP, FFT t-product, dense reconstructions)."""
import gc
import threading
import time

import numpy as np
import pytest
from scipy import special, stats

import bricklab
from bricklab import tensor as bt

W = [-0.5, -0.15, 0.15, 0.5]


def cp_tensor(shape, rank, seed):
    rng = np.random.default_rng(seed)
    factors = [rng.normal(size=(n, rank)) for n in shape]
    X = np.einsum("ir,jr,kr->ijk", *factors) if len(shape) == 3 else factors[0] @ factors[1].T
    s = np.abs(X).max()
    factors[0] /= s
    return X / s, factors


def interval_prob(dist, a, b):
    """P(a < Z <= b) without cancellation: the upper tail goes through the survival function."""
    upper = a + b > 0
    return np.where(upper, dist.sf(np.where(upper, a, 0)) - dist.sf(np.where(upper, b, 0)),
                    dist.cdf(np.where(upper, 0, b)) - dist.cdf(np.where(upper, 0, a)))


def dense_cp(factors):
    letters = "abcdefgh"[: len(factors)]
    return np.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


# ---- likelihood ----------------------------------------------------------------------------

def test_probit_terms_match_scipy_and_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    u = np.array([-np.inf, -3.0, -0.4, 0.2, 1.5, -40.0, -80.0, 35.0, -np.inf, 2.0])
    v = np.array([-1.0, -2.5, 0.3, 0.25, np.inf, -39.0, -79.99, np.inf, 60.0, 9.0])
    nll, du, dv, dxs = bt.level_terms(u, v, "probit")

    def cdf(t):
        return mpmath.mpf(0) if t == -np.inf else mpmath.mpf(1) if t == np.inf else mpmath.ncdf(mpmath.mpf(t))

    for j in range(len(u)):
        a, b = (u[j], v[j]) if u[j] + v[j] <= 0 else (-v[j], -u[j])  # mirror: both CDF values small
        P = cdf(b) - cdf(a)
        assert nll[j] == pytest.approx(float(-mpmath.log(P)), rel=1e-12, abs=1e-15)
        pu = mpmath.npdf(u[j]) / P if np.isfinite(u[j]) else 0
        pv = mpmath.npdf(v[j]) / P if np.isfinite(v[j]) else 0
        assert du[j] == pytest.approx(float(pu), rel=1e-10, abs=1e-14)
        assert dv[j] == pytest.approx(float(-pv), rel=1e-10, abs=1e-14)
        assert dxs[j] == pytest.approx(float(pv - pu), rel=1e-9, abs=1e-12)
    # Body of the distribution: scipy directly.
    uu = np.linspace(-3, 2, 41)
    vv = uu + 0.7
    nll, *_ = bt.level_terms(uu, vv, "probit")
    np.testing.assert_allclose(nll, -np.log(stats.norm.cdf(vv) - stats.norm.cdf(uu)), rtol=1e-12)


def test_logistic_terms_match_scipy():
    u = np.linspace(-8, 6, 57)
    v = u + np.linspace(0.05, 4, 57)
    nll, du, dv, dxs = bt.level_terms(u, v, "logistic")
    P = stats.logistic.cdf(v) - stats.logistic.cdf(u)
    np.testing.assert_allclose(nll, -np.log(P), rtol=1e-11)
    np.testing.assert_allclose(du, stats.logistic.pdf(u) / P, rtol=1e-9)
    np.testing.assert_allclose(dv, -stats.logistic.pdf(v) / P, rtol=1e-9)
    np.testing.assert_allclose(dxs, (stats.logistic.pdf(v) - stats.logistic.pdf(u)) / P, rtol=1e-8, atol=1e-12)


def test_log_normal_cdf_and_erfcx_match_scipy():
    t = np.concatenate([np.linspace(-1e4, -50, 30), np.linspace(-50, 5, 200)])
    np.testing.assert_allclose(bt.log_normal_cdf(t), special.log_ndtr(t), rtol=1e-13)
    y = np.linspace(-5, 1e3, 300)
    np.testing.assert_allclose(bt.erfcx(y), special.erfcx(y), rtol=1e-13)


def test_negative_log_likelihood_gradients_by_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.6, 40)
    lev = rng.integers(1, 6, 40)
    for noise in ("probit", "logistic"):
        f, gx, gw = bt.negative_log_likelihood(x, lev, W, noise, 0.3)
        ref_cdf = stats.norm if noise == "probit" else stats.logistic
        lo = np.array([-np.inf] + W)[lev - 1]
        hi = np.array(W + [np.inf])[lev - 1]
        ref = -np.log(interval_prob(ref_cdf, (lo - x) / 0.3, (hi - x) / 0.3)).sum()
        assert f == pytest.approx(ref, rel=1e-11)
        h = 1e-6
        for j in range(0, 40, 9):
            xp, xm = x.copy(), x.copy()
            xp[j] += h
            xm[j] -= h
            fd = (bt.negative_log_likelihood(xp, lev, W, noise, 0.3)[0] - bt.negative_log_likelihood(xm, lev, W, noise, 0.3)[0]) / (2 * h)
            assert gx[j] == pytest.approx(fd, rel=1e-6, abs=1e-7)
        for l in range(len(W)):
            wp, wm = list(W), list(W)
            wp[l] += h
            wm[l] -= h
            fd = (bt.negative_log_likelihood(x, lev, wp, noise, 0.3)[0] - bt.negative_log_likelihood(x, lev, wm, noise, 0.3)[0]) / (2 * h)
            assert gw[l] == pytest.approx(fd, rel=1e-6, abs=1e-7)


def test_cp_gradient_matches_numpy_mttkrp():
    X, _ = cp_tensor((6, 5, 4), 2, 1)
    idx, lev = bt.quantize(X, W, sigma=0.2, observed_fraction=0.7, seed=3)
    rng = np.random.default_rng(4)
    F = [rng.normal(0, 0.7, (n, 3)) for n in X.shape]
    f, grads, gw = bt.cp_gradient(idx, lev, X.shape, F, W, "probit", 0.2)
    x = np.einsum("nr,nr,nr->n", F[0][idx[:, 0]], F[1][idx[:, 1]], F[2][idx[:, 2]])
    lo = np.array([-np.inf] + W)[lev - 1]
    hi = np.array(W + [np.inf])[lev - 1]
    a, b = (lo - x) / 0.2, (hi - x) / 0.2
    P = interval_prob(stats.norm, a, b)
    assert f == pytest.approx(-np.log(P).sum(), rel=1e-11)
    d = (stats.norm.pdf(b) - stats.norm.pdf(a)) / P / 0.2  # d nll / dx
    for k in range(3):
        others = [F[q][idx[:, q]] for q in range(3) if q != k]
        ref = np.zeros_like(F[k])
        np.add.at(ref, idx[:, k], d[:, None] * others[0] * others[1])
        np.testing.assert_allclose(grads[k], ref, rtol=1e-9, atol=1e-11)
    assert gw.shape == (4,)


def test_two_iterations_match_a_numpy_implementation():
    """The curvature rule (no extrapolation) re-implemented in numpy, row by row, from the same
    start: the factors after two full iterations agree."""
    X, _ = cp_tensor((8, 7, 6), 2, 12)
    sigma = 0.25
    idx, lev = bt.quantize(X, W, sigma=sigma, observed_fraction=0.7, seed=5)
    rng = np.random.default_rng(1)
    A = [rng.normal(0, 0.5, (n, 2)) for n in X.shape]
    est = bt.recover(idx, lev, X.shape, rank=2, sigma=sigma, alpha=50.0, boundaries=W, max_iter=2, tol=0,
                     step="curvature", extrapolate=False, init=A)
    lo = np.array([-np.inf] + W)[lev - 1]
    hi = np.array(W + [np.inf])[lev - 1]
    c = 1 / sigma ** 2
    A = [a.copy() for a in A]
    for _ in range(2):
        for n in range(3):
            others = [k for k in range(3) if k != n]
            for i in range(X.shape[n]):
                sel = idx[:, n] == i
                H = A[others[0]][idx[sel, others[0]]] * A[others[1]][idx[sel, others[1]]]
                x = H @ A[n][i]
                a, b = (lo[sel] - x) / sigma, (hi[sel] - x) / sigma
                d = (stats.norm.pdf(b) - stats.norm.pdf(a)) / interval_prob(stats.norm, a, b) / sigma
                G = H.T @ H
                M = c * G + (1e-9 * c * np.trace(G) / 2 + 1e-12 * c) * np.eye(2)
                A[n][i] = A[n][i] - np.linalg.solve(M, H.T @ d)
    for got, want in zip(est.factors, A):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


# ---- quantize --------------------------------------------------------------------------------

def test_quantize_level_frequencies_and_sampling():
    X = np.zeros((40, 50, 30))
    for noise, cdf in (("probit", stats.norm.cdf), ("logistic", stats.logistic.cdf)):
        idx, lev = bt.quantize(X, W, noise=noise, sigma=0.4, observed_fraction=0.25, seed=7)
        assert idx.dtype == np.int64 and lev.dtype == np.int32 and idx.flags.c_contiguous
        m = len(lev)
        assert abs(m / X.size - 0.25) < 0.01
        lin = np.ravel_multi_index(tuple(idx.T), X.shape)
        assert np.all(np.diff(lin) > 0)  # unique, C order
        want = np.diff(np.concatenate([[0], cdf(np.array(W) / 0.4), [1]]))
        got = np.bincount(lev, minlength=6)[1:] / m
        assert np.all(np.abs(got - want) <= 4 * np.sqrt(want * (1 - want) / m) + 1e-3), (got, want)
    a = bt.quantize(X, W, sigma=0.4, observed_fraction=0.25, seed=11)
    b = bt.quantize(X, W, sigma=0.4, observed_fraction=0.25, seed=11)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    full_idx, full_lev = bt.quantize(np.array([[-1.0, 1.0], [-0.3, 0.3]]), [0.0], sigma=1e-9, seed=0)
    assert full_lev.tolist() == [1, 2, 1, 2] and full_idx.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


# ---- recover ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def problem():
    X, factors = cp_tensor((30, 30, 30), 3, 5)
    idx, lev = bt.quantize(X, W, sigma=0.1, observed_fraction=0.3, seed=2)
    return X, factors, idx, lev


def test_recover_monotone_error_bound_and_dense(problem):
    X, _, idx, lev = problem
    est = bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, alpha=1.0, boundaries=W, max_iter=150)
    obj = est.objective
    assert len(obj) == est.iterations + 1
    assert np.all(np.diff(obj) <= 0)
    assert est.stop_reason in ("tolerance", "max_iter", "stalled")
    err = est.relative_error(X)
    assert err < 0.3, err
    D = est.dense()
    np.testing.assert_allclose(D, dense_cp(est.factors), rtol=1e-12, atol=1e-14)
    assert np.abs(D).max() <= 1.0 + 1e-12
    some = idx[::50]
    np.testing.assert_allclose(est.entries(some), D[tuple(some.T)], rtol=1e-12, atol=1e-14)
    assert est.shape == X.shape and est.rank == 3 and est.method == "cp"
    np.testing.assert_array_equal(est.boundaries, W)


def test_factors_are_read_only_views_that_outlive_the_result(problem):
    X, _, idx, lev = problem
    est = bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, boundaries=W, max_iter=5)
    f0 = est.factors[0]
    total = f0.sum()
    assert not f0.flags.writeable
    with pytest.raises(ValueError):
        f0[0, 0] = 1.0
    del est
    gc.collect()
    assert f0.sum() == total


def test_inputs_are_not_copied_when_dtypes_match(problem):
    _, _, idx, lev = problem
    assert bt._integer_array("indices", idx, 2) is idx
    assert bt._integer_array("levels", lev, 1) is lev
    as_float = bt._integer_array("indices", idx.astype(np.float64), 2)
    assert as_float.dtype == np.int64 and np.array_equal(as_float, idx)


def test_callback_sees_every_iteration_and_can_stop(problem):
    X, _, idx, lev = problem
    seen = []

    def watch(it, f, factors, w):
        seen.append((it, f, [a.copy() for a in factors], w.copy()))
        return it == 7

    est = bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, boundaries=W, max_iter=50, callback=watch, n_init=1)
    assert est.stop_reason == "callback" and est.iterations == 7
    assert [s[0] for s in seen] == list(range(1, 8))
    np.testing.assert_array_equal([s[1] for s in seen], est.objective[1:])
    for a, b in zip(seen[-1][2], est.factors):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(seen[-1][3], W)

    def boom(*_):
        raise RuntimeError("stop from Python")

    with pytest.raises(RuntimeError, match="stop from Python"):
        bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, boundaries=W, max_iter=5, callback=boom, n_init=1)
    # With several random starts the callback begins after the start-selection phase.
    later = []
    bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, boundaries=W, max_iter=14, tol=0, n_init=2,
               callback=lambda it, *_: later.append(it))
    assert later == [11, 12, 13, 14]


def test_error_falls_with_dimension():
    errs = {}
    for n in (12, 36):
        e = []
        for seed in (1, 2):
            X, _ = cp_tensor((n, n, n), 2, seed)
            idx, lev = bt.quantize(X, W, sigma=0.1, observed_fraction=0.25, seed=seed)
            e.append(bt.recover(idx, lev, X.shape, rank=2, sigma=0.1, boundaries=W, seed=seed).relative_error(X))
        errs[n] = np.mean(e)
    assert errs[36] < errs[12]
    assert errs[36] < 0.25, errs


def test_boundaries_are_estimated(problem):
    X, _, idx, lev = problem
    est = bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, alpha=1.0, max_iter=150)
    assert np.all(np.diff(est.objective) <= 0)
    np.testing.assert_allclose(est.boundaries, W, atol=0.05)
    assert est.relative_error(X) < 0.3
    with_k = bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, num_levels=5, max_iter=3)
    assert len(with_k.boundaries) == 4


@pytest.mark.parametrize("step", ["newton", "curvature", "lipschitz", "backtracking"])
@pytest.mark.parametrize("extrapolate", [False, True])
def test_every_step_rule_is_monotone(problem, step, extrapolate):
    X, _, idx, lev = problem
    est = bt.recover(idx, lev, X.shape, rank=3, noise="logistic", sigma=0.06, boundaries=W, max_iter=15, tol=0,
                     step=step, extrapolate=extrapolate)
    assert np.all(np.diff(est.objective) <= 0)
    assert est.objective[-1] < est.objective[0]


def test_gil_is_released_while_solving():
    X, _ = cp_tensor((60, 60, 60), 5, 3)
    idx, lev = bt.quantize(X, W, sigma=0.1, observed_fraction=0.5, seed=1)
    done = threading.Event()
    result = {}

    def work():
        result["est"] = bt.recover(idx, lev, X.shape, rank=5, sigma=0.1, boundaries=W, max_iter=25, tol=0, threads=1)
        done.set()

    t = threading.Thread(target=work)
    ticks = 0
    start = time.perf_counter()
    t.start()
    time.sleep(0.05)
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    elapsed = time.perf_counter() - start
    assert result["est"].iterations == 25
    # With the GIL held for the whole solve this loop could not run while it works.
    assert elapsed > 0.2 and ticks > 20, (elapsed, ticks)


def test_tsvd_recovery_and_t_product():
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(16, 2, 8)), rng.normal(size=(2, 14, 8))
    X = bt.t_product(A, B)
    X /= np.abs(X).max()
    idx, lev = bt.quantize(X, W, sigma=0.05, observed_fraction=0.7, seed=4)
    est = bt.recover(idx, lev, X.shape, rank=2, sigma=0.05, alpha=1.0, boundaries=W, method="tsvd", max_iter=150)
    assert est.method == "tsvd"
    assert np.all(np.diff(est.objective) <= 0)
    Fa, Fb = est.factors
    assert Fa.shape == (16, 2, 8) and Fb.shape == (2, 14, 8)
    D = est.dense()
    np.testing.assert_allclose(bt.t_product(Fa, Fb), D, atol=1e-10 * np.abs(D).max())
    # Independent check of the tubal rank: every Fourier slice of the estimate has rank <= 2.
    sv = np.linalg.svd(np.fft.fft(D, axis=2).transpose(2, 0, 1), compute_uv=False)
    assert np.all(sv[:, 2:] <= 1e-9 * sv[:, :1])
    assert est.relative_error(X) < 0.4


def test_baselines_on_the_same_data(problem):
    X, _, idx, lev = problem
    cp = bt.recover(idx, lev, X.shape, rank=3, sigma=0.1, boundaries=W)
    ls = bt.recover_least_squares(idx, lev, X.shape, rank=3, boundaries=W, sigma=0.1)
    one = bt.recover_one_bit(idx, lev, X.shape, rank=3, sigma=0.1, boundaries=W)
    mat = bt.recover_unfolding(idx, lev, X.shape, rank=3, sigma=0.1, boundaries=W)
    for r in (ls, one, mat):
        assert np.all(np.diff(r.objective) <= 0)
    assert len(one.boundaries) == 1
    assert mat.method == "unfold" and mat.factors[1].shape == (900, 3)
    np.testing.assert_allclose(mat.dense().reshape(30, -1), mat.factors[0] @ mat.factors[1].T, rtol=1e-12, atol=1e-14)
    e = {name: r.relative_error(X) for name, r in (("cp", cp), ("ls", ls), ("one", one), ("mat", mat))}
    assert e["cp"] < min(e["ls"], e["one"], e["mat"]), e
    vals = bt.level_values(W, 0.1, 1.0)
    np.testing.assert_allclose(vals, [-0.5 - 1 / 6, -0.325, 0.0, 0.325, 0.5 + 1 / 6])
    # Least squares on exact values (no quantization) is plain CP completion.
    Xs, _ = cp_tensor((10, 9, 8), 2, 9)
    i2, _ = bt.quantize(Xs, W, sigma=0.1, observed_fraction=0.6, seed=1)
    exact = bt.recover_values(i2, Xs[tuple(i2.T)], Xs.shape, rank=2, alpha=10.0, max_iter=400, tol=1e-15)
    assert exact.relative_error(Xs) < 1e-5


def test_matrix_case_and_order_four():
    X, _ = cp_tensor((80, 60), 2, 8)
    idx, lev = bt.quantize(X, W, sigma=0.1, observed_fraction=0.5, seed=2)
    est = bt.recover(idx, lev, X.shape, rank=2, sigma=0.1, boundaries=W)
    assert est.relative_error(X) < 0.3
    rng = np.random.default_rng(0)
    F = [rng.normal(size=(n, 2)) for n in (6, 5, 4, 5)]
    X4 = dense_cp(F)
    X4 /= np.abs(X4).max()
    i4, l4 = bt.quantize(X4, W, sigma=0.1, observed_fraction=0.6, seed=3)
    e4 = bt.recover(i4, l4, X4.shape, rank=2, sigma=0.1, boundaries=W)
    assert e4.dense().shape == X4.shape and np.all(np.diff(e4.objective) <= 0)


# ---- bad input ---------------------------------------------------------------------------------

def make_small():
    X, _ = cp_tensor((5, 4, 3), 2, 0)
    idx, lev = bt.quantize(X, W, sigma=0.1, observed_fraction=0.9, seed=0)
    return X, idx, lev


def bad_cases(small):
    X, idx, lev = small
    nan_idx = idx.astype(float)
    nan_idx[0, 1] = np.nan
    inf_idx = idx.astype(float)
    inf_idx[2, 0] = np.inf
    frac_idx = idx.astype(float)
    frac_idx[1, 1] = 0.5
    out = idx.copy()
    out[3, 2] = 3
    neg = idx.copy()
    neg[0, 0] = -1
    dup = np.vstack([idx, idx[:1]])
    dup_lev = np.concatenate([lev, lev[:1]])
    lev0 = lev.copy()
    lev0[0] = 0
    lev6 = lev.copy()
    lev6[0] = 6
    nan_lev = lev.astype(float)
    nan_lev[0] = np.nan
    call = lambda **kw: bt.recover(**{**dict(indices=idx, levels=lev, shape=X.shape, rank=2, sigma=0.1, boundaries=W, max_iter=2), **kw})
    return {
        "nan index": lambda: call(indices=nan_idx),
        "inf index": lambda: call(indices=inf_idx),
        "fractional index": lambda: call(indices=frac_idx),
        "index out of range": lambda: call(indices=out),
        "negative index": lambda: call(indices=neg),
        "duplicate index": lambda: call(indices=dup, levels=dup_lev),
        "level 0": lambda: call(levels=lev0),
        "level K+1": lambda: call(levels=lev6),
        "nan level": lambda: call(levels=nan_lev),
        "rank 0": lambda: call(rank=0),
        "rank -2": lambda: call(rank=-2),
        "rank float": lambda: call(rank=2.5),
        "non-increasing boundaries": lambda: call(boundaries=[-0.5, 0.2, 0.2, 0.5]),
        "nan boundary": lambda: call(boundaries=[-0.5, np.nan, 0.2, 0.5]),
        "empty observations": lambda: call(indices=np.zeros((0, 3), np.int64), levels=np.zeros(0, np.int32)),
        "sigma nan": lambda: call(sigma=float("nan")),
        "sigma 0": lambda: call(sigma=0.0),
        "alpha inf": lambda: call(alpha=float("inf")),
        "wrong method": lambda: call(method="tucker"),
        "wrong noise": lambda: call(noise="gaussian"),
        "wrong step": lambda: call(step="adam"),
        "shape mismatch": lambda: call(shape=(5, 4)),
        "1-D indices": lambda: call(indices=idx[:, 0]),
        "levels length": lambda: call(levels=lev[:-1]),
        "tsvd order 2": lambda: bt.recover(np.array([[0, 0], [1, 1]]), np.array([1, 2]), (2, 2), rank=1,
                                           boundaries=W, method="tsvd"),
        "quantize nan X": lambda: bt.quantize(np.full((2, 2), np.nan), W),
        "quantize fraction 0": lambda: bt.quantize(X, W, observed_fraction=0.0),
        "quantize fraction > 1": lambda: bt.quantize(X, W, observed_fraction=1.5),
        "quantize bad boundaries": lambda: bt.quantize(X, [0.5, 0.1]),
        "quantize 1-D X": lambda: bt.quantize(np.zeros(5), W),
        "entries out of range": lambda: call().entries(np.array([[5, 0, 0]])),
    }


@pytest.mark.parametrize("case", list(bad_cases(make_small()).keys()))
def test_bad_input_raises_invalid_argument(case):
    fn = bad_cases(make_small())[case]
    with pytest.raises(bricklab.InvalidArgument) as info:
        fn()
    assert isinstance(info.value, ValueError)
    assert str(info.value)
