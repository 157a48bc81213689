"""Profiler and planner. The planner is tested on hand-written cost models (deterministic): it
meets deadlines and memory budgets, keeps the input/output layers whole, shrinks the most
expensive space first, and says when a deadline cannot be met. The profiler is run for real on a
small CNN; only its memory prediction is asserted (memory is deterministic; times are not, and
timing goals are checked by scripts/soft_experiments.py)."""
import numpy as np
import pytest
import torch

from bricklab.soft import ChannelGraph, LayerCost, MaskScheduler, Profile, extract, plan, profile, step_memory_bytes
from bricklab.soft.models import LeNet, MLP

X = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(0))


def fake_profile(model, coefs):
    """A Profile whose layer times are given: name -> (a, b, c) seconds, calibration identity."""
    g = ChannelGraph(model, X)
    layers = {n: LayerCost(n, coefs[n], (0.0, 0.0, 0.0), []) for n in coefs}
    return Profile(g, layers, (0.0, 1.0), (0.0, 1.0), 8)


def mlp_profile():
    # fc1 (784 -> 512) is the heavy layer; fc2 (512 -> 512) medium; fc3 (512 -> 10) light.
    return fake_profile(MLP(hidden=64), {"fc1": (0.0, 4.0, 0.0), "fc2": (0.0, 2.0, 0.0), "fc3": (0.0, 0.5, 0.0)})


def test_fast_client_keeps_the_whole_model():
    p = mlp_profile()
    full = p.predict_time({})
    assert full == pytest.approx(6.5)
    pl = plan(p, deadline_s=full, slowdown=1.0)
    assert pl.feasible and all(r == 1.0 for r in pl.ratios.values())


@pytest.mark.parametrize("slowdown", [1.5, 2.0, 4.0])
def test_slow_client_meets_the_deadline_and_output_stays_whole(slowdown):
    p = mlp_profile()
    full = p.predict_time({})
    pl = plan(p, deadline_s=full, slowdown=slowdown, step=0.05, min_ratio=0.05)
    assert pl.feasible and pl.predicted_seconds <= full + 1e-9
    g = p.graph
    assert set(pl.ratios) == set(g.maskable())
    assert g.layers["fc3"].out_space not in pl.ratios  # output layer whole
    assert not any(g.spaces[s].fixed for s in pl.ratios)
    # Greedy keeps as much as possible: one more step up on any space would miss the deadline.
    for s, r in pl.ratios.items():
        if r < 1.0:
            up = dict(pl.ratios)
            up[s] = min(1.0, r + 0.05)
            assert p.predict_time(up) * slowdown > full - 1e-9 or r + 0.05 > 1.0


def test_most_expensive_space_is_shrunk_first():
    p = mlp_profile()
    g = p.graph
    fc1, fc2 = g.layers["fc1"].out_space, g.layers["fc2"].out_space
    # fc1's space touches fc1 (4) and fc2 (2); fc2's touches fc2 (2) and fc3 (0.5): fc1's goes first.
    pl = plan(p, deadline_s=6.4, slowdown=1.0, step=0.05)
    assert pl.ratios[fc1] == pytest.approx(0.95) and pl.ratios[fc2] == 1.0


def test_memory_budget_and_infeasible_deadline():
    model = LeNet(width=4, hidden=32)
    prof = profile(model, X, Y, grid=(0.5, 1.0), repeats=1, calibration_ratios=(1.0, 0.5))
    full_mem = prof.predict_memory({})
    pl = plan(prof, deadline_s=1e9, memory_budget_bytes=0.7 * full_mem)
    assert pl.feasible and pl.predicted_bytes <= 0.7 * full_mem
    assert min(pl.ratios.values()) < 1.0
    bad = plan(prof, deadline_s=1e-12, min_ratio=0.2)
    assert not bad.feasible and all(r == pytest.approx(0.2) for r in bad.ratios.values())
    with pytest.raises(ValueError):
        plan(prof, deadline_s=0)
    with pytest.raises(ValueError):
        plan(prof, deadline_s=1, slowdown=0)


def test_profiler_memory_prediction_on_held_out_masks():
    model = LeNet(width=6, hidden=32)
    prof = profile(model, X, Y, grid=(0.5, 1.0), repeats=1, calibration_ratios=(1.0, 0.5))
    assert set(prof.layers) == {"conv1", "conv2", "fc1", "fc2"}
    g = prof.graph
    rng = np.random.default_rng(0)
    sched = MaskScheduler(g, "random", 1)
    for i in range(4):
        ratios = {s: float(rng.uniform(0.2, 1.0)) for s in g.maskable()}
        measured = step_memory_bytes(extract(g, sched.masks(i, ratios)).module, X, Y)
        assert prof.predict_memory(ratios) == pytest.approx(measured, rel=0.1)
    rows = prof.validate(X, Y, configs=2, repeats=1)
    assert len(rows) == 2 and all(r["predicted_s"] > 0 and r["measured_s"] > 0 for r in rows)
