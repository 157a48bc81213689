"""bricklab.soft.aggregate against a plain numpy reference (masks, sample weights, the soft factor,
clients that did not train a tensor, dropped-out clients, untouched parameters), zero-copy output
into caller buffers, torch CPU tensors, and clear errors on bad input and non-finite updates."""
import numpy as np
import pytest
import torch

import bricklab
from bricklab.soft import ClientUpdate, aggregate, aggregate_stats

SHAPES = {"conv.weight": (8, 3, 3, 3), "conv.bias": (8,), "fc.weight": (10, 32), "fc.bias": (10,)}


def numpy_reference(global_state, updates, soft_factor):
    out = {}
    for name, g in global_state.items():
        num = np.zeros(g.shape, np.float64)
        den = np.zeros(g.shape, np.float64)
        for u in updates:
            if name not in u.values:
                continue
            m = u.masks.get(name)
            m = np.ones(g.shape, bool) if m is None else m.astype(bool)
            p = u.num_samples * (soft_factor if u.soft else 1.0)
            num += np.where(m, p * u.values[name].astype(np.float64), 0)
            den += np.where(m, p, 0)
        out[name] = np.where(den > 0, num / np.where(den > 0, den, 1), g)
    return out


def make_updates(rng, n_clients, drop_tensor_prob=0.2):
    glob = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    updates = []
    for i in range(n_clients):
        values, masks = {}, {}
        for k, s in SHAPES.items():
            if rng.random() < drop_tensor_prob:
                continue
            values[k] = rng.standard_normal(s).astype(np.float32)
            if rng.random() < 0.6:
                masks[k] = rng.random(s) < 0.4
        updates.append(ClientUpdate(f"client{i}", float(rng.integers(1, 500)), values, masks, soft=bool(i % 2)))
    return glob, updates


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("soft_factor", [1.0, 0.3])
def test_matches_numpy_reference(seed, soft_factor):
    rng = np.random.default_rng(seed)
    glob, updates = make_updates(rng, 2 + seed)
    got = aggregate(glob, updates, soft_factor=soft_factor)
    ref = numpy_reference(glob, updates, soft_factor)
    for k in SHAPES:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6)
        assert got[k].dtype == np.float32 and got[k].shape == SHAPES[k]


def test_untouched_parameters_keep_their_exact_value_and_dropouts_are_absent():
    rng = np.random.default_rng(7)
    glob, updates = make_updates(rng, 4, drop_tensor_prob=0.0)
    for u in updates:
        u.masks = {k: (rng.random(s) < 0.3) for k, s in SHAPES.items()}
    present = updates[:2]  # clients 2 and 3 dropped out mid-round: simply absent
    got = aggregate(glob, present)
    ref = numpy_reference(glob, present, 1.0)
    for k in SHAPES:
        nobody = ~(present[0].masks[k] | present[1].masks[k])
        assert nobody.any()
        assert np.array_equal(got[k][nobody], glob[k][nobody])  # bitwise
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6)
    assert aggregate_stats()["untouched"] == sum(int((~(present[0].masks[k] | present[1].masks[k])).sum()) for k in SHAPES)


def test_weights_matter():
    g = {"w": np.zeros(3, np.float32)}
    a = ClientUpdate("a", 1, {"w": np.full(3, 1.0, np.float32)})
    b = ClientUpdate("b", 3, {"w": np.full(3, 5.0, np.float32)})
    np.testing.assert_allclose(aggregate(g, [a, b])["w"], 4.0)
    b.soft = True
    np.testing.assert_allclose(aggregate(g, [a, b], soft_factor=1 / 3)["w"], 3.0)


def test_out_buffers_are_written_in_place_and_torch_tensors_are_accepted():
    rng = np.random.default_rng(3)
    glob, updates = make_updates(rng, 3)
    torch_glob = {k: torch.from_numpy(v.copy()) for k, v in glob.items()}
    for u in updates:
        u.values = {k: torch.from_numpy(v) for k, v in u.values.items()}
        u.masks = {k: torch.from_numpy(m) for k, m in u.masks.items()}
    out = {k: np.empty(s, np.float32) for k, s in SHAPES.items()}
    res = aggregate(torch_glob, updates, out=out)
    for k in SHAPES:
        assert res[k] is out[k]
    ref = numpy_reference(glob, [ClientUpdate(u.client_id, u.num_samples, {k: v.numpy() for k, v in u.values.items()},
                                              {k: m.numpy() for k, m in u.masks.items()}, u.soft) for u in updates], 1.0)
    for k in SHAPES:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)
    # In place into the global torch tensors' own memory (zero-copy both ways).
    inplace = {k: t.numpy() for k, t in torch_glob.items()}
    aggregate(torch_glob, updates, out=inplace)
    np.testing.assert_allclose(torch_glob["fc.weight"].numpy(), ref["fc.weight"], rtol=1e-5, atol=1e-6)


def test_non_finite_update_is_rejected_naming_client_and_tensor():
    rng = np.random.default_rng(1)
    glob, updates = make_updates(rng, 3, drop_tensor_prob=0.0)
    for u in updates:
        u.masks = {}
    updates[2].values["fc.weight"][4, 5] = np.nan
    with pytest.raises(bricklab.InvalidArgument, match=r"client 'client2'.*fc\.weight") as err:
        aggregate(glob, updates)
    assert isinstance(err.value, ValueError)
    updates[2].values["fc.weight"][4, 5] = 0
    updates[0].values["conv.bias"][1] = -np.inf
    with pytest.raises(ValueError, match=r"client 'client0'.*-inf.*conv\.bias"):
        aggregate(glob, updates)
    # A NaN in an element the client did not train (mask False) is ignored.
    mask = np.ones(8, bool)
    mask[1] = False
    updates[0].masks = {"conv.bias": mask}
    aggregate(glob, updates)


def test_rejected_update_in_place_leaves_the_global_model_unchanged():
    # out=glob: the aggregate would overwrite the global model tensor by tensor; a non-finite
    # value in the last tensor must not leave the earlier ones overwritten.
    rng = np.random.default_rng(3)
    glob = {f"t{i}": rng.standard_normal(50_000).astype(np.float32) for i in range(4)}
    before = {k: v.copy() for k, v in glob.items()}
    updates = [ClientUpdate(f"c{c}", 10 + c, {k: rng.standard_normal(50_000).astype(np.float32) for k in glob}, {})
               for c in range(3)]
    updates[2].values["t3"][-1] = np.inf
    with pytest.raises(ValueError, match=r"client 'c2'.*inf.*'t3'"):
        aggregate(glob, updates, out=glob)
    for k in glob:
        assert np.array_equal(glob[k], before[k]), k
    updates[2].values["t3"][-1] = 0.5
    ref = numpy_reference(glob, updates, 1.0)
    aggregate(glob, updates, out=glob)
    for k in glob:
        np.testing.assert_allclose(glob[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_bad_input_raises_value_errors():
    rng = np.random.default_rng(2)
    glob, updates = make_updates(rng, 2, drop_tensor_prob=0.0)
    with pytest.raises(ValueError, match="no client"):
        aggregate(glob, [])
    u = ClientUpdate("x", 10, {"fc.weight": np.zeros((10, 31), np.float32)})
    with pytest.raises(ValueError, match=r"client 'x'.*fc\.weight.*shape"):
        aggregate(glob, [u])
    u = ClientUpdate("x", 10, {"fc.weight": np.zeros((10, 32), np.float32)}, {"fc.weight": np.ones((10,), bool)})
    with pytest.raises(ValueError, match="mask.*shape"):
        aggregate(glob, [u])
    u = ClientUpdate("x", 10, {"fc.weight": np.zeros((10, 32), np.float32)}, {"fc.weight": np.ones((10, 32), np.float32)})
    with pytest.raises(ValueError, match="bool or uint8"):
        aggregate(glob, [u])
    for w in (0, -3, float("nan")):
        with pytest.raises(ValueError, match="client 'x'.*> 0"):
            aggregate(glob, [ClientUpdate("x", w, {"fc.bias": np.zeros(10, np.float32)})])
    with pytest.raises(ValueError, match="does not have"):
        aggregate(glob, [ClientUpdate("x", 1, {"nope": np.zeros(10, np.float32)})])
    with pytest.raises(ValueError, match="soft_factor"):
        aggregate(glob, updates, soft_factor=0)
    with pytest.raises(ValueError, match="floating"):
        aggregate(glob, [ClientUpdate("x", 1, {"fc.bias": np.zeros(10, np.int32)})])


@pytest.mark.parametrize("extra", [[], ["--all-soft"]])
def test_benchmark_script_prints_its_table(extra):
    # The benchmark executable itself (tiny sizes): it runs, and its table has both thread rows.
    import pathlib
    import subprocess
    import sys
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "bench_aggregate.py"
    out = subprocess.run([sys.executable, str(script), "--params", "1e5", "--tensors", "10", "--repeats", "1", *extra],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("bricklab.soft.aggregate")]
    assert [r[1] for r in rows] == ["1", "all"]
    assert all(float(r[2]) > 0 and float(r[4]) > 0 for r in rows)
    assert ("4 soft" if extra else "2 soft") in out


def test_huge_finite_sample_counts_do_not_overflow_the_weights():
    """Two finite counts of 1e308 sum to inf: the weights are scaled first (this wrote NaN everywhere)."""
    rng = np.random.default_rng(7)
    glob = {"w": rng.standard_normal((6, 5)).astype(np.float32)}
    a = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal((6, 5)).astype(np.float32)
    updates = [ClientUpdate("a", 1e308, {"w": a}), ClientUpdate("b", 1e308, {"w": b}, soft=True)]
    out = aggregate(glob, updates, soft_factor=3.0)
    np.testing.assert_allclose(out["w"], (a + 3 * b) / 4, rtol=1e-6, atol=1e-6)
    # Scale does not matter: 3 and 1e300 x 3 give the same average.
    small = aggregate(glob, [ClientUpdate("a", 1.0, {"w": a}), ClientUpdate("b", 1.0, {"w": b}, soft=True)], soft_factor=3.0)
    np.testing.assert_allclose(out["w"], small["w"], rtol=1e-6)
