"""Tensor recovery from noisy, multi-level quantized, partially observed measurements.

    >>> import numpy as np, bricklab
    >>> idx, lev = bricklab.tensor.quantize(X, boundaries=[-0.5, 0, 0.5], sigma=0.1,
    ...                                     observed_fraction=0.2, seed=0)
    >>> est = bricklab.tensor.recover(idx, lev, X.shape, rank=3, sigma=0.1, alpha=1.0,
    ...                               boundaries=[-0.5, 0, 0.5])
    >>> est.relative_error(X), est.objective[-1], est.dense().shape

Model: Y = Q(X + Z) on the observed entries, Z i.i.d. probit (normal, std sigma) or logistic
(scale sigma) noise, Q(x) = l when w_{l-1} < x <= w_l. ``recover`` minimises the negative
log-likelihood over rank-r tensors with |X| <= alpha: ``method="cp"`` (T-APGD over CP factors,
any order >= 2; boundaries estimated when not given) or ``method="tsvd"`` (projected gradient
descent with tubal rank r, 3-way). Observations stay in coordinate form (indices + levels).
Baselines on the same data: ``recover_least_squares``, ``recover_one_bit``,
``recover_unfolding``. Bad input raises ``bricklab.InvalidArgument`` (a ``ValueError``).
See docs/tensor-recovery.md.
"""
from __future__ import annotations

import numbers
from typing import Optional, Sequence

import numpy as np

from ._core import InvalidArgument
from ._core import tensor as _t

__all__ = [
    "quantize", "recover", "Recovery", "recover_least_squares", "recover_one_bit", "recover_unfolding",
    "recover_values", "negative_log_likelihood", "level_terms", "cp_gradient", "log_normal_cdf", "erfcx",
    "level_values", "project_ordered", "curvature_bound", "t_product",
]

_NOISES = ("probit", "logistic")


def _check_noise(noise):
    if noise not in _NOISES:
        raise InvalidArgument(f"noise must be one of {_NOISES}, got {noise!r}")


def _finite_scalar(name, value, positive=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or (positive and v <= 0):
        raise InvalidArgument(f"{name} must be finite{' and > 0' if positive else ''}, got {value!r}")
    return v


def _int_param(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _boundaries(boundaries, allow_none=True):
    if boundaries is None:
        if allow_none:
            return None
        raise InvalidArgument("boundaries are required")
    w = np.asarray(boundaries, dtype=np.float64).reshape(-1)
    if w.size == 0:
        raise InvalidArgument("boundaries must hold at least one value (K >= 2 levels)")
    if not np.all(np.isfinite(w)):
        raise InvalidArgument("boundaries must be finite (no NaN or inf)")
    if np.any(np.diff(w) <= 0):
        raise InvalidArgument(f"boundaries must be strictly increasing, got {w.tolist()}")
    return w


def _shape(shape):
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError:
        raise InvalidArgument(f"shape must be a sequence of integers, got {shape!r}") from None
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in shape):
        raise InvalidArgument(f"shape must be a sequence of integers, got {shape!r}")
    if len(dims) < 2:
        raise InvalidArgument(f"shape needs at least 2 dimensions, got {dims}")
    if any(d < 1 for d in dims):
        raise InvalidArgument(f"shape entries must be >= 1, got {dims}")
    return dims


def _integer_array(name, a, ndim):
    """An int64 (indices) or int32 (levels) array; float input must hold finite integers."""
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise InvalidArgument(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InvalidArgument(f"{name} contain NaN or infinite values")
        if np.any(arr != np.round(arr)):
            raise InvalidArgument(f"{name} must be integers, got non-integral values")
    elif arr.dtype.kind == "b" or arr.dtype.kind not in "iu":
        raise InvalidArgument(f"{name} must be an integer array, got dtype {arr.dtype}")
    want = np.int64 if ndim == 2 else np.int32
    if arr.dtype.kind in "iu" and arr.size and (arr.max() > np.iinfo(want).max or arr.min() < np.iinfo(want).min):
        raise InvalidArgument(f"{name} hold values outside the {np.dtype(want).name} range")
    return np.ascontiguousarray(arr, dtype=want)  # no copy when already int64 / int32 and C order


def _observations(indices, levels, shape):
    dims = _shape(shape)
    idx = _integer_array("indices", indices, 2)
    lev = _integer_array("levels", levels, 1)
    if idx.shape[1] != len(dims):
        raise InvalidArgument(f"indices have {idx.shape[1]} columns but shape {dims} has {len(dims)} dimensions")
    if idx.shape[0] != lev.shape[0]:
        raise InvalidArgument(f"{idx.shape[0]} indices but {lev.shape[0]} levels")
    if idx.shape[0] == 0:
        raise InvalidArgument("no observations (empty index list)")
    return idx, lev, dims


def quantize(X, boundaries, noise: str = "probit", sigma: float = 1.0, observed_fraction: float = 1.0,
             seed: Optional[int] = None):
    """Draw noisy quantized observations of the dense tensor ``X``.

    Each entry is observed independently with probability ``observed_fraction``; an observed
    entry gets level ``l`` (1..K) when ``w_{l-1} < X + Z <= w_l``, Z ~ probit (normal, std
    ``sigma``) or logistic (scale ``sigma``). Returns ``(indices, levels)``: int64 (m x N)
    C-order indices, sorted in C order, and int32 levels.
    """
    _check_noise(noise)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2:
        raise InvalidArgument(f"X must have at least 2 dimensions, got shape {X.shape}")
    if X.size == 0:
        raise InvalidArgument("X is empty")
    if not np.all(np.isfinite(X)):
        raise InvalidArgument("X contains NaN or infinite values")
    w = _boundaries(boundaries, allow_none=False)
    sigma = _finite_scalar("sigma", sigma)
    p = _finite_scalar("observed_fraction", observed_fraction)
    if p > 1:
        raise InvalidArgument(f"observed_fraction must be in (0, 1], got {observed_fraction}")
    rng = np.random.default_rng(seed)
    flat = X.reshape(-1)
    if p >= 1:
        lin = np.arange(flat.size, dtype=np.int64)
    else:
        lin = np.flatnonzero(rng.random(flat.size) < p).astype(np.int64)
    if lin.size == 0:
        raise InvalidArgument("no entry was observed; raise observed_fraction")
    x = flat[lin]
    z = rng.normal(0.0, sigma, x.size) if noise == "probit" else rng.logistic(0.0, sigma, x.size)
    levels = (np.searchsorted(w, x + z, side="left") + 1).astype(np.int32)
    indices = np.stack(np.unravel_index(lin, X.shape), axis=1).astype(np.int64)
    return np.ascontiguousarray(indices), levels


class Recovery:
    """Result of :func:`recover` (and of the baselines).

    Attributes: ``method`` ("cp", "tsvd", "unfold"), ``shape``, ``rank``, ``factors`` (list of
    read-only numpy views: cp: n_k x rank per mode; unfold: U (n_1 x r), V (prod n_2.. x r);
    tsvd: A (n1 x r x n3), B (r x n2 x n3) with X = A * B), ``boundaries`` (used or estimated),
    ``objective`` (F after each iteration, [0] = start), ``kkt_residual``,
    ``iteration_seconds``, ``iterations``, ``stop_reason``, ``setup_seconds``,
    ``solve_seconds``, ``restarts``, ``rejected_steps``.
    """

    def __init__(self, core):
        self._core = core

    def __getattr__(self, name):
        return getattr(self._core, name)

    @property
    def shape(self):
        """The recovered tensor's shape, a tuple of ints."""
        return tuple(self._core.shape)

    def dense(self, threads: int = 0) -> np.ndarray:
        """The dense estimate (float64, C order)."""
        return self._core.dense(_int_param("threads", threads, 0))

    def entries(self, indices, threads: int = 0) -> np.ndarray:
        """The estimate at the given (m x N) indices."""
        idx = _integer_array("indices", indices, 2)
        return self._core.entries(idx, _int_param("threads", threads, 0))

    def relative_error(self, X) -> float:
        """||X_hat - X||_F / ||X||_F against a dense reference tensor."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape != self.shape:
            raise InvalidArgument(f"reference shape {X.shape} differs from the estimate's {self.shape}")
        return float(np.linalg.norm(self.dense() - X) / np.linalg.norm(X))

    def __repr__(self):
        return (f"<bricklab.tensor.Recovery {self.method} rank {self.rank} shape {self.shape}: "
                f"{self.iterations} iterations ({self.stop_reason}), F = {self.objective[-1]:.6g}>")


def _solve(method, indices, levels, shape, rank, noise, sigma, alpha, boundaries, num_levels, max_iter, tol, seed,
           step="newton", extrapolate=True, min_gap=None, grad_tol=0.0, init=None, init_scale=None, threads=0,
           verbose=False, threshold_level=0, n_init=3, callback=None):
    _check_noise(noise)
    idx, lev, dims = _observations(indices, levels, shape)
    rank = _int_param("rank", rank, 1)
    sigma = _finite_scalar("sigma", sigma)
    alpha = _finite_scalar("alpha", alpha)
    w = _boundaries(boundaries)
    num_levels = 0 if num_levels is None else _int_param("num_levels", num_levels, 2)
    max_iter = _int_param("max_iter", max_iter, 0)
    tol = _finite_scalar("tol", tol, positive=False)
    grad_tol = _finite_scalar("grad_tol", grad_tol, positive=False)
    if tol < 0 or grad_tol < 0:
        raise InvalidArgument("tol and grad_tol must be >= 0")
    min_gap = 0.0 if min_gap is None else _finite_scalar("min_gap", min_gap)
    init_scale = 0.0 if init_scale is None else _finite_scalar("init_scale", init_scale)
    seed = 0 if seed is None else _int_param("seed", seed, 0)
    threads = _int_param("threads", threads, 0)
    n_init = _int_param("n_init", n_init, 1)
    if callback is not None and not callable(callback):
        raise InvalidArgument("callback must be callable or None")
    factors = []
    if init is not None:
        if len(init) != len(dims):
            raise InvalidArgument(f"init needs {len(dims)} factors, got {len(init)}")
        for k, f in enumerate(init):
            f = np.asarray(f, dtype=np.float64)
            if f.shape != (dims[k], rank):
                raise InvalidArgument(f"init factor {k} must have shape {(dims[k], rank)}, got {f.shape}")
            factors.append(f.reshape(-1).tolist())
    core = _t.solve(method, idx, lev, list(dims), rank, noise, sigma, alpha, [] if w is None else w.tolist(),
                    num_levels, min_gap, max_iter, tol, grad_tol, step, bool(extrapolate), seed, threads, factors,
                    init_scale, bool(verbose), int(threshold_level), n_init, callback)
    return Recovery(core)


def recover(indices, levels, shape: Sequence[int], rank: int, noise: str = "probit", sigma: float = 1.0,
            alpha: float = 1.0, boundaries=None, method: str = "cp", max_iter: int = 200, tol: float = 1e-6,
            seed: Optional[int] = 0, *, num_levels: Optional[int] = None, step: str = "newton",
            extrapolate: bool = True, min_gap: Optional[float] = None, grad_tol: float = 0.0, init=None,
            init_scale: Optional[float] = None, threads: int = 0, verbose: bool = False, n_init: int = 3,
            callback=None) -> Recovery:
    """Recover a low-rank tensor from quantized observations (``indices``: m x N, ``levels``: m).

    ``method="cp"``: T-APGD over rank-``rank`` CP factors (order >= 2); ``"tsvd"``: tubal rank
    ``rank`` (3-way only). ``boundaries=None`` estimates the K - 1 boundaries jointly (K =
    ``num_levels`` or the largest level seen), starting from the empirical level frequencies.
    ``step``: "newton" (default: per-row variable metric from the likelihood's second derivatives,
    with a line search), "curvature" (majoriser from the curvature bound; cheapest per iteration),
    "lipschitz" or "backtracking" (scalar steps); ``extrapolate`` (default on) adds Nesterov
    extrapolation with restarts. Stops when the objective's relative decrease over an iteration
    is <= ``tol``, the KKT residual <= ``grad_tol`` (if > 0), or after ``max_iter`` iterations.
    The objective never increases. Runs without the GIL on ``threads`` threads (0 = all cores).
    ``n_init`` random starts run ``10`` iterations each and the best is continued (ignored when
    ``init`` factors are given). ``callback(iteration, objective, factors, boundaries)`` (CP) is
    called after every iteration with copies of the factors; returning True stops the solver
    (with ``n_init > 1`` it starts after the 10-iteration start-selection phase).
    """
    if method not in ("cp", "tsvd"):
        raise InvalidArgument(f"method must be 'cp' or 'tsvd', got {method!r}")
    return _solve(method, indices, levels, shape, rank, noise, sigma, alpha, boundaries, num_levels, max_iter, tol,
                  seed, step, extrapolate, min_gap, grad_tol, init, init_scale, threads, verbose, 0, n_init, callback)


def recover_least_squares(indices, levels, shape, rank, boundaries=None, sigma: float = 1.0, alpha: float = 1.0,
                          max_iter: int = 200, tol: float = 1e-6, seed: Optional[int] = 0, **kw) -> Recovery:
    """Baseline: unquantized CP completion, least squares on level values (each level replaced by
    its bin's representative value, see ``level_values``; the level numbers when no boundaries)."""
    return _solve("least_squares", indices, levels, shape, rank, "probit", sigma, alpha, boundaries,
                  kw.pop("num_levels", None), max_iter, tol, seed, **kw)


def recover_one_bit(indices, levels, shape, rank, noise: str = "probit", sigma: float = 1.0, alpha: float = 1.0,
                    boundaries=None, threshold_level: Optional[int] = None, max_iter: int = 200, tol: float = 1e-6,
                    seed: Optional[int] = 0, **kw) -> Recovery:
    """Baseline: 1-bit recovery (K = 2) from the same observations, levels merged at
    ``threshold_level`` (default: the split closest to half of the observations)."""
    t = 0 if threshold_level is None else _int_param("threshold_level", threshold_level, 1)
    return _solve("one_bit", indices, levels, shape, rank, noise, sigma, alpha, boundaries,
                  kw.pop("num_levels", None), max_iter, tol, seed, threshold_level=t, **kw)


def recover_unfolding(indices, levels, shape, rank, noise: str = "probit", sigma: float = 1.0, alpha: float = 1.0,
                      boundaries=None, max_iter: int = 200, tol: float = 1e-6, seed: Optional[int] = 0,
                      **kw) -> Recovery:
    """Baseline: quantized matrix recovery (rank ``rank``) of the mode-1 unfolding."""
    return _solve("unfold", indices, levels, shape, rank, noise, sigma, alpha, boundaries,
                  kw.pop("num_levels", None), max_iter, tol, seed, **kw)


def recover_values(indices, values, shape, rank, alpha: float = 1.0, max_iter: int = 200, tol: float = 1e-6,
                   seed: Optional[int] = 0, method: str = "cp", step: str = "curvature", threads: int = 0) -> Recovery:
    """Least-squares CP (or t-SVD) completion from real-valued observations."""
    dims = _shape(shape)
    idx = _integer_array("indices", indices, 2)
    vals = np.ascontiguousarray(values, dtype=np.float64)
    if vals.ndim != 1 or vals.shape[0] != idx.shape[0]:
        raise InvalidArgument("values must be a 1-D array with one value per index row")
    if not np.all(np.isfinite(vals)):
        raise InvalidArgument("values contain NaN or infinite values")
    if method not in ("cp", "tsvd"):
        raise InvalidArgument(f"method must be 'cp' or 'tsvd', got {method!r}")
    core = _t.solve_values(idx, vals, list(dims), _int_param("rank", rank, 1), _finite_scalar("alpha", alpha),
                           _int_param("max_iter", max_iter, 0), _finite_scalar("tol", tol, positive=False), step,
                           0 if seed is None else _int_param("seed", seed, 0), _int_param("threads", threads, 0),
                           method)
    return Recovery(core)


def negative_log_likelihood(x, levels, boundaries, noise: str = "probit", sigma: float = 1.0):
    """(F, dF/dx, dF/dw): the summed negative log-likelihood of entries ``x`` with ``levels``."""
    _check_noise(noise)
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    lev = _integer_array("levels", np.asarray(levels).reshape(-1), 1)
    if not np.all(np.isfinite(x)):
        raise InvalidArgument("x contains NaN or infinite values")
    w = _boundaries(boundaries, allow_none=False)
    return _t.objective(x, lev, w.tolist(), noise, _finite_scalar("sigma", sigma))


def level_terms(u, v, noise: str = "probit"):
    """(nll, d/du, d/dv, d/dlocation) of -log P(u < Z <= v) for standard noise, elementwise."""
    _check_noise(noise)
    u = np.ascontiguousarray(np.broadcast_to(u, np.broadcast(u, v).shape), dtype=np.float64).reshape(-1)
    v = np.ascontiguousarray(np.broadcast_to(v, np.broadcast(u, v).shape), dtype=np.float64).reshape(-1)
    return _t.level_terms(u, v, noise)


def cp_gradient(indices, levels, shape, factors, boundaries, noise: str = "probit", sigma: float = 1.0):
    """(F, [dF/dA_k], dF/dw) at the CP factors ``factors`` (list of n_k x r arrays)."""
    _check_noise(noise)
    idx, lev, dims = _observations(indices, levels, shape)
    factors = [np.asarray(f, dtype=np.float64) for f in factors]
    if len(factors) != len(dims) or any(f.ndim != 2 for f in factors):
        raise InvalidArgument("factors must be one 2-D array per mode")
    rank = factors[0].shape[1]
    f, grads, gw = _t.cp_gradient(idx, lev, list(dims), [a.reshape(-1).tolist() for a in factors],
                                  _boundaries(boundaries, allow_none=False).tolist(), noise,
                                  _finite_scalar("sigma", sigma), rank)
    return f, [np.asarray(g).reshape(d, rank) for g, d in zip(grads, dims)], np.asarray(gw)


def log_normal_cdf(t):
    """log Phi(t) for the standard normal, accurate in both tails."""
    return _t.log_normal_cdf(np.asarray(t, dtype=np.float64))


def erfcx(y):
    """The scaled complementary error function exp(y^2) erfc(y)."""
    return _t.erfcx(np.asarray(y, dtype=np.float64))


def level_values(boundaries, sigma: float = 1.0, alpha: float = 1.0) -> np.ndarray:
    """Representative value of each bin (the least-squares baseline's level values)."""
    return np.asarray(_t.level_values(_boundaries(boundaries, allow_none=False).tolist(),
                                      _finite_scalar("sigma", sigma), _finite_scalar("alpha", alpha)))


def project_ordered(w, weights=None, min_gap: float = 0.0) -> np.ndarray:
    """Weighted projection of ``w`` onto {w_{l+1} - w_l >= min_gap}."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    weights = np.ones_like(w) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    return np.asarray(_t.project_ordered(w.tolist(), weights.tolist(), float(min_gap)))


def curvature_bound(noise: str = "probit", sigma: float = 1.0) -> float:
    """Upper bound of the second derivative of the per-observation loss."""
    _check_noise(noise)
    return _t.curvature_bound(noise, _finite_scalar("sigma", sigma))


def t_product(A, B) -> np.ndarray:
    """The t-product A * B of A (n1 x r x n3) and B (r x n2 x n3), via FFT along mode 3."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 3 or B.ndim != 3 or A.shape[1] != B.shape[0] or A.shape[2] != B.shape[2]:
        raise InvalidArgument(f"t_product: incompatible shapes {A.shape} and {B.shape}")
    fa, fb = np.fft.fft(A, axis=2), np.fft.fft(B, axis=2)
    return np.real(np.fft.ifft(np.einsum("irk,rjk->ijk", fa, fb), axis=2))
