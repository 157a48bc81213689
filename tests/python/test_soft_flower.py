"""A complete Flower deployment on loopback: the server (SoftStrategy) and three clients
(SoftClient, slowdowns 1x, 2x, 4x) run as separate processes, the way users deploy to many
machines. Checks: every process exits 0, both rounds aggregate all three clients (two of them
soft-trained), the soft clients' weights outside their masks arrive bitwise unchanged, and the
last round's aggregate equals a plain numpy masked weighted average of what the clients sent."""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("flwr")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def test_flower_round_with_three_client_processes(tmp_path):
    port = free_port()
    out = tmp_path / "result"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "bricklab.soft.flower"]
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("server", "c0", "c1", "c2")}
    procs = {"server": subprocess.Popen(cmd + ["server", "--port", str(port), "--rounds", "2", "--clients", "3",
                                               "--out", str(out)], stdout=logs["server"], stderr=subprocess.STDOUT,
                                              env=env)}
    try:
        assert wait_listening(port, procs["server"], 30), "the Flower server did not start listening"
        for i, slowdown in enumerate((1, 2, 4)):
            procs[f"c{i}"] = subprocess.Popen(cmd + ["client", "--port", str(port), "--client-id", f"c{i}",
                                                     "--slowdown", str(slowdown)],
                                              stdout=logs[f"c{i}"], stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        for name, p in procs.items():
            rc = p.wait(timeout=max(1, deadline - time.time()))
            log = (tmp_path / f"{name}.log").read_text()
            assert rc == 0, f"{name} exited {rc}:\n{log[-3000:]}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()

    history = json.loads((out / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2]
    assert all(h["participants"] == 3 and h["soft_clients"] == 2 and h["rejected"] == "" for h in history)

    meta = json.loads((out / "last_round.json").read_text())
    data = np.load(out / "last_round.npz")
    names = [k[len("before/"):] for k in data.files if k.startswith("before/")]
    assert sorted(u["client_id"] for u in meta["updates"]) == ["c0", "c1", "c2"]
    checked_partial = 0
    for name in names:
        before, after = data[f"before/{name}"], data[f"after/{name}"]
        if not np.issubdtype(before.dtype, np.floating):
            continue
        num = np.zeros(before.shape)
        den = np.zeros(before.shape)
        for i, u in enumerate(meta["updates"]):
            values = data[f"u{i}/values/{name}"]
            key = f"u{i}/masks/{name}"
            mask = data[key] if key in data.files else np.ones(before.shape, bool)
            if key in data.files and not mask.all():
                assert u["soft"]
                assert np.array_equal(values[~mask], before[~mask])  # untouched weights bitwise
                checked_partial += 1
            num += np.where(mask, u["num_samples"] * values, 0)
            den += np.where(mask, u["num_samples"], 0)
        ref = np.where(den > 0, num / np.where(den > 0, den, 1), before)
        np.testing.assert_allclose(after, ref, rtol=1e-5, atol=1e-6)
    assert checked_partial > 0


def test_strategy_plans_stragglers_from_the_profile():
    import torch

    from bricklab.soft import ChannelGraph, LayerCost, Profile
    from bricklab.soft.flower import SoftStrategy
    from bricklab.soft.models import MLP

    model = MLP(hidden=32)
    x = torch.zeros(2, 1, 28, 28)
    g = ChannelGraph(model, x)
    layers = {n: LayerCost(n, (0.0, w, 0.0), (0.0, 0.0, 0.0), []) for n, w in (("fc1", 4.0), ("fc2", 2.0), ("fc3", 0.5))}
    prof = Profile(g, layers, (0.5, 1.0), (0.0, 1.0), 2)
    strategy = SoftStrategy(model, x, profile=prof, steps=3)
    assert strategy.deadline_s == pytest.approx(3 * 7.0)  # fast clients' whole-model pace
    assert strategy.client_ratios("fast", 1.0) is None
    ratios = strategy.client_ratios("slow", 2.0)
    assert ratios and set(ratios) == set(g.maskable()) and min(ratios.values()) < 1.0
    assert prof.predict_time(ratios) * 3 * 2.0 <= strategy.deadline_s
    fixed = SoftStrategy(model, x, ratios={"pinned": 0.5})
    assert all(r == 0.5 for r in fixed.client_ratios("pinned", 1.0).values())
