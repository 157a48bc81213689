"""Mask consistency across layers (residual, concat, batch norm, flatten-into-linear), the mask
policies (rotation coverage proved over many rounds, reproducibility), and the sub-model's
function: a sliced sub-model must compute exactly what the full model computes when the dropped
channels are zeroed by hand (an independent reference)."""
import math

import pytest
import torch
from torch import nn

from bricklab.soft import ChannelGraph, MaskScheduler, extract, kept_count
from bricklab.soft.models import MLP, ConcatNet, LeNet, TinyResNet

X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def space_of(graph, name):
    return graph.layers[name].out_space


def test_residual_spaces_are_merged():
    g = ChannelGraph(TinyResNet(), X)
    # Identity shortcut: stem and a2 add up; projection shortcut: proj and b2 add up.
    assert space_of(g, "stem") == space_of(g, "a2")
    assert space_of(g, "proj") == space_of(g, "b2")
    assert len({space_of(g, n) for n in ("stem", "a1", "b1", "proj", "fc")}) == 5
    # Batch norm follows the space of the conv it normalises.
    assert g.layers["abn2"].out_space == space_of(g, "a2")
    assert g.layers["bbn2"].out_space == space_of(g, "b2")
    # The output layer and the input are fixed; the hidden spaces are maskable.
    assert g.spaces[space_of(g, "fc")].fixed
    assert set(g.maskable()) == {space_of(g, n) for n in ("stem", "a1", "b1", "proj")}


def test_concat_and_flatten_layouts():
    g = ChannelGraph(ConcatNet(), X)
    left, right, mix = (space_of(g, n) for n in ("left", "right", "mix"))
    assert g.layers["mix"].in_layout == [(left, 6, 1), (right, 10, 1)]
    assert g.layers["fc1"].in_layout == [(mix, 12, 16), (left, 6, 16), (right, 10, 16)]
    assert g.layers["bn"].out_space is None  # a norm over two spaces: fixed, never sliced
    assert g.spaces[left].fixed and g.spaces[right].fixed
    assert not g.spaces[mix].fixed
    keep = {mix: torch.tensor([1, 4])}
    cols = g.index_of(g.layers["fc1"].in_layout, keep)
    expected = [c * 16 + k for c in (1, 4) for k in range(16)] + list(range(12 * 16, 28 * 16))
    assert cols.tolist() == expected


def test_lenet_flatten_into_linear():
    g = ChannelGraph(LeNet(width=4), X)
    conv2 = space_of(g, "conv2")
    assert g.layers["fc1"].in_layout == [(conv2, 8, 25)]
    assert g.layers["conv1"].in_layout[0][1] == 1 and g.spaces[g.layers["conv1"].in_layout[0][0]].fixed


def test_keep_whole_and_unknown_ops_are_fixed():
    g = ChannelGraph(LeNet(width=4), X, keep_whole=["fc1"])
    assert g.spaces[space_of(g, "fc1")].fixed

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 4, 3)
            self.b = nn.Conv2d(4, 4, 3)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            y = self.a(x).permute(0, 1, 3, 2)  # not understood: space of `a` must become fixed
            return self.fc(self.b(y).mean((2, 3)))

    g = ChannelGraph(Odd(), X)
    assert g.spaces[space_of(g, "a")].fixed
    assert g.unknown_ops
    with pytest.raises(ValueError):
        ChannelGraph(LeNet(width=4), X, keep_whole=["nope"])


def zeroed_reference(model, graph, keep):
    """The full model with every dropped channel's producing weights (and its batch norm) zeroed."""
    ref = __import__("copy").deepcopy(model)
    with torch.no_grad():
        for name, layer in graph.layers.items():
            if layer.out_space is None or layer.out_space not in keep:
                continue
            mod = ref.get_submodule(name)
            dropped = torch.ones(mod.weight.shape[0], dtype=torch.bool)
            dropped[keep[layer.out_space]] = False
            mod.weight[dropped] = 0
            if mod.bias is not None:
                mod.bias[dropped] = 0
    return ref


@pytest.mark.parametrize("make", [TinyResNet, ConcatNet, lambda: LeNet(width=6), lambda: MLP(hidden=40)])
@pytest.mark.parametrize("policy", ["rotating", "random", "static"])
def test_submodel_equals_zeroed_full_model(make, policy):
    torch.manual_seed(1)
    model = make()
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    g = ChannelGraph(model, X)
    sched = MaskScheduler(g, policy, seed=3)
    for rnd in range(3):
        keep = sched.masks(rnd, 0.5, client="a")
        assert set(keep) == set(g.maskable())
        sub = extract(g, keep)
        sub.module.eval()
        out = sub.module(X)
        ref = zeroed_reference(model, g, keep)(X)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        full = sum(p.numel() for p in model.parameters())
        assert sum(p.numel() for p in sub.module.parameters()) < full  # physically smaller


def test_extract_rejects_bad_keep():
    g = ChannelGraph(LeNet(width=4), X)
    conv1 = space_of(g, "conv1")
    with pytest.raises(ValueError):
        extract(g, {conv1: torch.tensor([0, 0])})
    with pytest.raises(ValueError):
        extract(g, {conv1: torch.tensor([9])})
    with pytest.raises(ValueError):
        extract(g, {space_of(g, "fc2"): torch.tensor([0])})


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("size", [1, 7, 16, 50])
def test_rotation_covers_every_channel_every_ceil_1_over_r_rounds(ratio, size):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, size)
            self.b = nn.Linear(size, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    g = ChannelGraph(Net(), torch.zeros(2, 3))
    (space,) = g.maskable()
    sched = MaskScheduler(g, "rotating", seed=11)
    period = math.ceil(1 / ratio)
    for client in ("a", "b"):
        kept = []
        for rnd in range(40):
            m = sched.masks(rnd, {space: ratio}, client)
            k = m[space] if space in m else torch.arange(size)
            assert k.numel() == kept_count(ratio, size)
            kept.append(set(k.tolist()))
        for start in range(40 - period + 1):  # every window of `period` consecutive rounds
            assert set().union(*kept[start:start + period]) == set(range(size)), (client, start)


def test_masks_are_reproducible_and_policies_differ():
    g = ChannelGraph(LeNet(width=8), X)
    for policy in ("rotating", "random", "static"):
        a = MaskScheduler(g, policy, seed=5).masks(4, 0.5, "c1")
        b = MaskScheduler(g, policy, seed=5).masks(4, 0.5, "c1")
        assert all(torch.equal(a[s], b[s]) for s in a)
    r = MaskScheduler(g, "random", seed=5)
    assert any(not torch.equal(r.masks(0, 0.5)[s], r.masks(1, 0.5)[s]) for s in g.maskable())
    assert any(not torch.equal(r.masks(0, 0.5)[s], MaskScheduler(g, "random", 6).masks(0, 0.5)[s]) for s in g.maskable())
    st = MaskScheduler(g, "static", seed=5)
    assert all(torch.equal(st.masks(0, 0.5)[s], st.masks(7, 0.5, "other")[s]) for s in g.maskable())
    with pytest.raises(ValueError):
        MaskScheduler(g, "bogus")
    with pytest.raises(ValueError):
        st.masks(0, 0.0)


def test_straggler_skew_split_gives_the_stragglers_the_rare_classes():
    import numpy as np
    from bricklab.soft.data import split_straggler_skew
    labels = np.random.default_rng(0).integers(0, 10, 20000)
    stragglers = [1, 4, 8]
    parts, rare = split_straggler_skew(labels, 10, 200, stragglers, rare_classes=3, straggler_rare_share=0.8,
                                       fast_rare_share=0.05, seed=7)
    assert len(rare) == 3 and len(set(rare)) == 3
    allidx = np.concatenate(parts)
    assert len(allidx) == 2000 and len(np.unique(allidx)) == 2000          # disjoint
    for i, p in enumerate(parts):
        assert len(p) == 200
        counts = np.bincount(labels[p], minlength=10)
        rare_n = counts[rare].sum()
        assert rare_n == (160 if i in stragglers else 10)
        common = np.delete(counts, rare)
        assert common.max() - common.min() <= 1                            # evenly over the common classes
        assert counts[rare].max() - counts[rare].min() <= 1
    # Another seed draws other rare classes or the same ones, but always from the seed alone.
    again, rare2 = split_straggler_skew(labels, 10, 200, stragglers, seed=7)
    assert rare2 == rare and all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_scaled_submodel_scales_the_inputs_of_narrowed_layers():
    """extract(scale=True): a layer that keeps k of its n input features multiplies its input by
    n / k (HeteroFL's scaler). Reference: the full MLP written out with torch.nn.functional, the
    dropped units zeroed and the kept ones scaled by hand."""
    torch.manual_seed(2)
    model = MLP(hidden=40).eval()
    g = ChannelGraph(model, X)
    s1, s2 = space_of(g, "fc1"), space_of(g, "fc2")
    keep = MaskScheduler(g, "random", seed=5).masks(0, {s1: 0.5, s2: 0.25}, client="a")
    k1, k2 = keep[s1], keep[s2]
    assert (len(k1), len(k2)) == (20, 10)
    m1 = torch.zeros(40)
    m1[k1] = 1.0
    m2 = torch.zeros(40)
    m2[k2] = 1.0
    x = torch.flatten(X, 1)
    h1 = torch.relu(nn.functional.linear(x, model.fc1.weight, model.fc1.bias)) * m1 * (40 / 20)
    h2 = torch.relu(nn.functional.linear(h1, model.fc2.weight, model.fc2.bias)) * m2 * (40 / 10)
    want = nn.functional.linear(h2, model.fc3.weight, model.fc3.bias)
    with torch.no_grad():
        got = extract(g, keep, scale=True).module(X)
        unscaled = extract(g, keep).module(X)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(unscaled, want, rtol=1e-3, atol=1e-3)
    # The whole model (nothing narrowed) gets no scaling.
    with torch.no_grad():
        torch.testing.assert_close(extract(g, {}, scale=True).module(X), model(X))
