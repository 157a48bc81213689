"""`bricklab recover`: observations from .npy / .csv, the estimate as .npy, the same result as the
Python API on the same data and options, one-line errors with exit codes 1 (bad file) / 2 (bad
argument)."""
import json
import subprocess

import numpy as np
import pytest

from bricklab import tensor as bt

W = [-0.5, -0.15, 0.15, 0.5]


def run(cli, *args):
    return subprocess.run([cli, "recover", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("recover")
    rng = np.random.default_rng(0)
    F = [rng.normal(size=(n, 2)) for n in (14, 12, 10)]
    X = np.einsum("ir,jr,kr->ijk", *F)
    X /= np.abs(X).max()
    idx, lev = bt.quantize(X, W, sigma=0.1, observed_fraction=0.5, seed=1)
    np.save(d / "idx.npy", idx)
    np.save(d / "lev.npy", lev)
    np.save(d / "obs.npy", np.column_stack([idx, lev]))
    np.savetxt(d / "obs.csv", np.column_stack([idx, lev]), fmt="%d", delimiter=",", header="i,j,k,level", comments="")
    return d, X, idx, lev


def test_recover_npy_matches_python(cli, data):
    d, X, idx, lev = data
    out = d / "est.npy"
    r = run(cli, "--indices", d / "idx.npy", "--levels", d / "lev.npy", "--shape", "14x12x10", "--rank", 2,
            "--sigma", 0.1, "--alpha", 1.0, "--boundaries=-0.5,-0.15,0.15,0.5", "--out", out, "--factors", d / "f")
    assert r.returncode == 0, r.stderr
    assert "recovered cp tensor 14x12x10" in r.stdout
    est = np.load(out)
    ref = bt.recover(idx, lev, X.shape, rank=2, sigma=0.1, alpha=1.0, boundaries=W)
    np.testing.assert_allclose(est, ref.dense(), rtol=1e-12, atol=1e-14)
    for k in range(3):
        np.testing.assert_allclose(np.load(d / f"f{k}.npy"), ref.factors[k], rtol=1e-12, atol=1e-14)
    assert np.linalg.norm(est - X) / np.linalg.norm(X) < 0.35


def test_recover_csv_and_obs_npy_with_estimated_boundaries(cli, data):
    d, X, idx, lev = data
    r1 = run(cli, "--obs", d / "obs.csv", "--rank", 2, "--sigma", 0.1, "--out", d / "a.npy", "--json")
    assert r1.returncode == 0, r1.stderr
    doc = json.loads(r1.stdout)
    assert doc["shape"] == [14, 12, 10] and doc["observations"] == len(lev)
    assert all(b2 > b1 for b1, b2 in zip(doc["boundaries"], doc["boundaries"][1:]))
    assert all(f2 <= f1 for f1, f2 in zip(doc["objective"], doc["objective"][1:]))
    r2 = run(cli, "--obs", d / "obs.npy", "--rank", 2, "--sigma", 0.1, "--out", d / "b.npy")
    assert r2.returncode == 0, r2.stderr
    np.testing.assert_allclose(np.load(d / "a.npy"), np.load(d / "b.npy"), rtol=1e-12, atol=1e-14)


def test_recover_tsvd(cli, data):
    d, X, idx, lev = data
    r = run(cli, "--obs", d / "obs.npy", "--rank", 2, "--method", "tsvd", "--sigma", 0.1, "--boundaries",
            "-0.5,-0.15,0.15,0.5", "--max-iter", 20, "--out", d / "t.npy")
    assert r.returncode == 0, r.stderr
    assert np.load(d / "t.npy").shape == X.shape


def test_recover_errors(cli, data, tmp_path):
    d, X, idx, lev = data
    bad = idx.astype(float)
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    dup = np.vstack([idx, idx[:1]])
    np.save(tmp_path / "dup.npy", dup)
    np.save(tmp_path / "dup_lev.npy", np.concatenate([lev, lev[:1]]))
    (tmp_path / "bad.csv").write_text("0,1,2,1\n0,1,x,2\n")
    cases = [
        (["--obs", tmp_path / "missing.npy", "--rank", 2, "--out", tmp_path / "o.npy"], 1, "no such file"),
        (["--indices", tmp_path / "nan.npy", "--levels", d / "lev.npy", "--rank", 2, "--out", tmp_path / "o.npy"], 1, "NaN"),
        (["--indices", tmp_path / "dup.npy", "--levels", tmp_path / "dup_lev.npy", "--rank", 2, "--out", tmp_path / "o.npy"], 2,
         "duplicate"),
        (["--obs", d / "obs.npy", "--rank", 0, "--out", tmp_path / "o.npy"], 2, "--rank"),
        (["--obs", d / "obs.npy", "--rank", 2, "--boundaries", "0.5,0.1", "--out", tmp_path / "o.npy"], 2, "increasing"),
        (["--obs", d / "obs.npy", "--rank", 2, "--boundaries", "0.1", "--out", tmp_path / "o.npy"], 2, "level"),
        (["--obs", d / "obs.npy", "--rank", 2, "--shape", "3x3x3", "--out", tmp_path / "o.npy"], 2, "out of range"),
        (["--obs", tmp_path / "bad.csv", "--rank", 2, "--out", tmp_path / "o.npy"], 1, "expected integers"),
        (["--obs", d / "obs.npy", "--rank", 2, "--frobnicate", "--out", tmp_path / "o.npy"], 2, "unknown option"),
        (["--obs", d / "obs.npy", "--rank", 2], 2, "--out"),
    ]
    for args, code, needle in cases:
        r = run(cli, *args)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert run(cli, "--help").returncode == 0
