"""Extraction + scatter round trip: without training the scatter reproduces the global state
bitwise; after training, untouched weights are bitwise unchanged and the kept ones hold the
sub-model's values at the positions an independent index computation says; the sub-model trains
faster in FLOPs terms (fewer parameters) and a whole soft-training round runs through Server/Client."""
import numpy as np
import torch

from bricklab.soft import ChannelGraph, Client, MaskScheduler, Server, element_masks, extract, scatter
from bricklab.soft.models import ConcatNet, LeNet, TinyResNet
from bricklab.soft.rounds import train_local

X = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))


def state_np(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_round_trip_without_training_is_bitwise():
    for make in (TinyResNet, ConcatNet, LeNet):
        model = make()
        g = ChannelGraph(model, X)
        glob = state_np(model)
        sub = extract(g, MaskScheduler(g, "random", 2).masks(0, 0.4))
        values, masks = scatter(glob, sub)
        for k, v in values.items():
            assert np.array_equal(v, glob[k]), k
            assert v.dtype == np.float32
        em = element_masks(sub)
        for k, m in masks.items():
            assert (m is None and em[k] is None) or np.array_equal(m, em[k])


def test_scatter_after_training_puts_values_where_they_belong():
    torch.manual_seed(0)
    model = LeNet(width=4, hidden=16)
    g = ChannelGraph(model, X)
    glob = state_np(model)
    keep = MaskScheduler(g, "rotating", 1).masks(2, 0.5, "c")
    sub = extract(g, keep)
    train_local(sub.module, X, Y, steps=3, batch_size=8, lr=0.1, generator=torch.Generator().manual_seed(0))
    values, masks = scatter(glob, sub)
    trained = {k: v.detach().numpy() for k, v in sub.module.state_dict().items()}
    c1 = keep[g.layers["conv1"].out_space].tolist()
    c2 = keep[g.layers["conv2"].out_space].tolist()
    h = keep[g.layers["fc1"].out_space].tolist()
    # Independent index arithmetic: conv2 reads conv1's kept channels; fc1 reads c*25+k of conv2's.
    expect = {
        "conv1.weight": (c1, None), "conv2.weight": (c2, c1),
        "fc1.weight": (h, [c * 25 + k for c in c2 for k in range(25)]), "fc2.weight": (None, h),
        "bn1.weight": (c1, None), "bn2.running_mean": (c2, None),
    }
    for name, (rows, cols) in expect.items():
        full, glob_v = values[name], glob[name]
        rows = list(range(full.shape[0])) if rows is None else rows
        mask = np.zeros(full.shape, bool)
        for i, r in enumerate(rows):
            if cols is None:
                mask[r] = True
                assert np.array_equal(full[r], trained[name][i])
            else:
                for j, c in enumerate(cols):
                    mask[r, c] = True
                    assert np.array_equal(full[r, c], trained[name][i, j])
        assert np.array_equal(masks[name], mask), name
        assert np.array_equal(full[~mask], glob_v[~mask]), name  # bitwise untouched
        assert not np.array_equal(full[mask], glob_v[mask]) or name.startswith("bn2.running")
    assert "bn1.num_batches_tracked" not in values


def test_server_round_with_soft_clients_and_dropout():
    torch.manual_seed(0)
    model = LeNet(width=4, hidden=16)
    server = Server(model, X[:2], policy="rotating", seed=0)
    gen = torch.Generator().manual_seed(5)
    clients = [Client(f"c{i}", torch.randn(20, 1, 28, 28, generator=gen), torch.randint(0, 10, (20,), generator=gen),
                      steps=2, batch_size=8) for i in range(3)]
    before = {k: v.copy() for k, v in server.state.items()}
    ratios = {"c1": {s: 0.5 for s in server.graph.maskable()}, "c2": {s: 0.25 for s in server.graph.maskable()}}
    rep = server.run_round(clients, ratios, drop=["c2"])
    assert rep.participants == ["c0", "c1"]
    assert rep.kept_fraction["c0"] == 1.0 and 0 < rep.kept_fraction["c1"] < 1
    assert any(not np.array_equal(before[k], server.state[k]) for k in before)
    assert server.round == 1
    out = server.global_model()(X[:2])
    assert torch.isfinite(out).all()


def test_server_rounds_rotate_masks_over_every_weight():
    # A single soft client at r = 0.3 on the MLP's first hidden space: after one round only the
    # kept rows of fc1 changed; after ceil(1/0.3) = 4 rounds every row of fc1 changed at least
    # once with rotating masks, but not with static ones (checked on the weights themselves).
    torch.manual_seed(0)
    from bricklab.soft.models import MLP
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(6))
    changed = {}
    for policy in ("rotating", "static"):
        model = MLP(hidden=20)
        server = Server(model, x[:2], policy=policy, seed=3)
        space = server.graph.layers["fc1"].out_space
        start = server.state["fc1.weight"].copy()
        client = Client("s", x, y, steps=2, batch_size=16, lr=0.1)
        rows_changed = []
        for _ in range(4):
            server.run_round([client], {"s": {space: 0.3}})
            rows_changed.append(int((server.state["fc1.weight"] != start).any(1).sum()))
        changed[policy] = rows_changed
    assert changed["rotating"][0] == changed["static"][0] == 6   # ceil(0.3 * 20) rows per round
    assert changed["rotating"] == [6, 12, 18, 20]
    assert changed["static"] == [6, 6, 6, 6]
