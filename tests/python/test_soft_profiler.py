"""Profiler measurement and calibration: the timing statistics against numpy/scipy, the torch
thread count set while measuring and restored, interleaved measurement (every model timed in
every round, not one model after the other), the first layer's probe without an input gradient
exactly where PyTorch's autograd has none in the model, and the time calibration recovering
known coefficients from synthetic step times."""
import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from torch import nn

from bricklab.soft import ChannelGraph, LayerCost, Profile, measure_step, measure_steps, summarise, torch_threads
from bricklab.soft.models import LeNet, MLP, TinyResNet
from bricklab.soft.profiler import _calibrate_time, _fit, _input_needs_grad, _lstsq_nonneg

X = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("n", [1, 2, 7, 8, 13])
def test_summarise_against_numpy_and_scipy(n):
    t = np.random.default_rng(n).exponential(1.0, n)
    assert summarise(t, "median") == pytest.approx(np.median(t))
    assert summarise(t, "min") == pytest.approx(t.min())
    assert summarise(t, "trimmed") == pytest.approx(scipy.stats.trim_mean(t, 0.25))
    with pytest.raises(ValueError):
        summarise(t, "mean")
    with pytest.raises(ValueError):
        summarise([], "median")


CALLS = []  # (model name, torch threads) per forward; module-level so that deep copies share it


class Probe(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        CALLS.append((self.name, torch.get_num_threads()))
        return self.fc(torch.flatten(x, 1))


def test_measure_steps_interleaves_and_fixes_threads():
    before = torch.get_num_threads()
    want = 2 if before == 1 else 1
    CALLS.clear()
    models = [Probe("a"), Probe("b"), Probe("c")]
    times = measure_steps(models, X, Y, rounds=4, repeats=2, warmup=1, threads=want)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert torch.get_num_threads() == before
    assert {th for _, th in CALLS} == {want}
    names = [n for n, _ in CALLS]
    # warm-up 1 each, then per round: (fresh copy: 1 more from round 2 on) + 1 untimed + 2 timed.
    assert names.count("a") == names.count("b") == names.count("c") == 1 + 3 + 3 * 4
    # Interleaved: after the warm-up every round holds every model once (no model runs all its
    # rounds before another starts).
    rounds = names[3:]
    per_round = len(rounds) // 4
    for r in range(4):
        assert sorted(set(rounds[r * per_round:(r + 1) * per_round])) == ["a", "b", "c"]
    # The first round runs the models in a different order from some later round (random order).
    firsts = [tuple(dict.fromkeys(rounds[r * per_round:(r + 1) * per_round])) for r in range(4)]
    assert len(set(firsts)) > 1


def test_torch_threads_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("x")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass
    assert measure_step(Probe("d"), X, Y, repeats=3, statistic="min") > 0


@pytest.mark.parametrize("make", [lambda: LeNet(width=4, hidden=16), lambda: MLP(hidden=32), lambda: TinyResNet(4)])
def test_probe_input_gradient_matches_autograd_in_the_model(make):
    model = make()
    g = ChannelGraph(model, X)
    seen = {}
    hooks = [g.traced.get_submodule(n).register_forward_pre_hook(
        lambda mod, inp, n=n: seen.__setitem__(n, bool(inp[0].requires_grad)))
        for n, layer in g.layers.items() if layer.kind in ("conv", "linear")]
    g.traced(X)
    for h in hooks:
        h.remove()
    assert seen and any(not v for v in seen.values()) and any(seen.values())
    for name, needs in seen.items():
        assert _input_needs_grad(g, name) == needs, name


@pytest.mark.parametrize("seed", range(12))
def test_nonnegative_least_squares_against_scipy(seed):
    """The profiler's one constrained solver against scipy's NNLS (all columns constrained) and,
    with a signed intercept, against NNLS on [1, -1] split intercept columns."""
    rng = np.random.default_rng(seed)
    a = np.abs(rng.normal(size=(9, 3))) * np.array([1.0, 1e-3, 1e6])  # columns of very different units
    y = a @ rng.normal(size=3) + rng.normal(scale=0.1, size=9)
    ref, _ = scipy.optimize.nnls(a, y)
    got = _lstsq_nonneg(a, y)
    assert np.all(got >= 0)
    assert np.sum((a @ got - y) ** 2) == pytest.approx(np.sum((a @ ref - y) ** 2), rel=1e-7, abs=1e-12)
    split = np.concatenate([a[:, :1], -a[:, :1], a[:, 1:]], 1)
    ref_s, _ = scipy.optimize.nnls(split, y)
    got_s = _lstsq_nonneg(a, y, signed=(0,))
    assert np.all(got_s[1:] >= 0)
    assert np.sum((a @ got_s - y) ** 2) == pytest.approx(np.sum((split @ ref_s - y) ** 2), rel=1e-7, abs=1e-12)
    # _fit: a + b*r_in*r_out + c*r_out, slopes non-negative, exact on noiseless data
    r = rng.uniform(0.1, 1, size=(8, 2))
    samples = [(ri, ro, 0.5 + 2.0 * ri * ro + 0.25 * ro) for ri, ro in r]
    assert _fit(samples) == pytest.approx((0.5, 2.0, 0.25), rel=1e-9)


def test_time_calibration_recovers_known_coefficients():
    model = LeNet(width=4, hidden=16)
    g = ChannelGraph(model, X)
    layers = {"conv1": LayerCost("conv1", (0.0, 1e-4, 2e-4), (0, 0, 0), []),
              "conv2": LayerCost("conv2", (0.0, 3e-3, 1e-3), (0, 0, 0), []),
              "fc1": LayerCost("fc1", (0.0, 2e-3, 0.0), (0, 0, 0), []),
              "fc2": LayerCost("fc2", (0.0, 1e-4, 1e-5), (0, 0, 0), [])}
    prof = Profile(g, layers, (0.0, 1.0), (0.0, 1.0), 8)
    prof.memory_per_space = {s: 1e5 * (i + 1) for i, s in enumerate(g.maskable())}
    rng = np.random.default_rng(3)
    configs = [{s: r for s in g.maskable()} for r in (1.0, 0.75, 0.5, 0.25)]
    configs += [{s: float(rng.uniform(0.2, 1)) for s in g.maskable()} for _ in range(6)]
    t0, k, e = 2e-3, 1.3, 4e-9
    times = []
    for c in configs:
        layer_sum = sum(layers[n].scalable_time(*rr) for n, rr in prof.layer_ratios(c).items())
        act = sum(a * prof._ratio(s, c) for s, a in prof.memory_per_space.items())
        times.append(t0 + k * layer_sum + e * act)
    (f0, fk), fe = _calibrate_time(prof, configs, times)
    assert (f0, fk, fe) == pytest.approx((t0, k, e), rel=1e-6)
    prof.time_calibration, prof.activation_scale = (f0, fk), fe
    for c, t in zip(configs, times):
        assert prof.predict_time(c) == pytest.approx(t, rel=1e-6)
    # Without element-wise work in the data, the activation term is not invented (non-negative fit).
    times = [t - e * sum(a * prof._ratio(s, c) for s, a in prof.memory_per_space.items()) for c, t in zip(configs, times)]
    (f0, fk), fe = _calibrate_time(prof, configs, times)
    assert fe == pytest.approx(0.0, abs=1e-15) and fk == pytest.approx(k, rel=1e-6)
