"""Soft-training on Flower: a strategy and a client that an existing Flower deployment swaps in.

Server side, replace ``FedAvg`` by :class:`SoftStrategy`; client side, replace your
``NumPyClient`` by :class:`SoftClient` (or subclass it). Each round the strategy asks every
sampled client for its properties (``client_id``, ``slowdown``: its speed relative to the
profiled machine, ``num_samples``), plans its keep ratios against the round deadline with the
profile, picks its mask (rotating / random / static) and sends the global weights plus the kept
channels in the fit config. The client extracts the smaller dense sub-model, trains it, scatters
it back and returns full-size weights; the strategy aggregates with the masked weighted average.

Run as processes (the path to many machines)::

    python -m bricklab.soft.flower server --port 8089 --rounds 3 --clients 3 --out result/
    python -m bricklab.soft.flower client --port 8089 --client-id c0 --slowdown 1
    python -m bricklab.soft.flower client --port 8089 --client-id c1 --slowdown 4
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

import flwr as fl
from flwr.common import FitIns, GetPropertiesIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg

from .. import InvalidArgument
from .aggregate import ClientUpdate, aggregate
from .extract import element_masks, extract, scatter
from .graph import ChannelGraph
from .masks import MaskScheduler
from .planner import plan
from .profiler import Profile
from .rounds import evaluate, train_local

__all__ = ["SoftStrategy", "SoftClient"]

log = logging.getLogger("bricklab.soft.flower")


def _state_arrays(model: nn.Module) -> Tuple[List[str], List[np.ndarray]]:
    names, arrays = [], []
    for k, v in model.state_dict().items():
        names.append(k)
        arrays.append(v.detach().cpu().numpy().copy())
    return names, arrays


class SoftStrategy(FedAvg):
    """FedAvg with soft-training: per-client planning, rotating masks and masked aggregation.

    ``profile``: a :class:`Profile` of the model measured on the reference machine (None: every
    client trains the whole model unless ``ratios`` fixes them). ``steps``: local steps per round.
    ``deadline_s``: the round deadline in reference seconds (default: the whole model's predicted
    round time on a 1x client, i.e. the pace of the fast clients). ``scale``: the clients'
    sub-models scale the inputs of their narrowed layers (HeteroFL's scaler, see ``extract``).
    Other keywords go to FedAvg.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, profile: Optional[Profile] = None,
                 steps: int = 1, deadline_s: Optional[float] = None, policy: str = "rotating", seed: int = 0,
                 soft_factor: float = 1.0, min_ratio: float = 0.1, memory_budget_bytes: Optional[float] = None,
                 ratios: Optional[Dict[str, float]] = None, scale: bool = False, **fedavg_kwargs):
        self.model = model
        self.scale = scale  # HeteroFL's scaler in the clients' sub-models (extract(scale=True))
        self.graph = profile.graph if profile is not None else ChannelGraph(model, example_input)
        self.names, arrays = _state_arrays(model)
        self.state = dict(zip(self.names, arrays))
        fedavg_kwargs.setdefault("initial_parameters", ndarrays_to_parameters(arrays))
        fedavg_kwargs.setdefault("fraction_evaluate", 0.0)
        super().__init__(**fedavg_kwargs)
        self.profile, self.steps, self.policy = profile, steps, policy
        self.deadline_s = deadline_s if deadline_s is not None or profile is None else profile.predict_time({}) * steps
        self.scheduler = MaskScheduler(self.graph, policy, seed)
        self.soft_factor, self.min_ratio, self.memory_budget = soft_factor, min_ratio, memory_budget_bytes
        self.fixed_ratios = ratios or {}
        self._props: Dict[str, Dict] = {}
        self._sent: Dict[str, Tuple[str, Dict[int, torch.Tensor], Dict[str, Optional[np.ndarray]]]] = {}
        self.history: List[Dict] = []
        self.last_round: Dict = {}

    def __repr__(self) -> str:
        return f"SoftStrategy(policy={self.policy}, deadline_s={self.deadline_s})"

    def _properties(self, proxy) -> Dict:
        if proxy.cid not in self._props:
            res = proxy.get_properties(GetPropertiesIns({}), timeout=60, group_id=None)
            self._props[proxy.cid] = dict(res.properties)
        return self._props[proxy.cid]

    def client_ratios(self, client_id: str, slowdown: float) -> Optional[Dict[int, float]]:
        """Per-space keep ratios for a client (None: the whole model)."""
        if client_id in self.fixed_ratios:
            r = float(self.fixed_ratios[client_id])
            return None if r >= 1.0 else {s: r for s in self.graph.maskable()}
        if self.profile is None or slowdown <= 1.0:
            return None
        p = plan(self.profile, self.deadline_s, self.steps, slowdown, self.memory_budget, self.min_ratio)
        return p.ratios if any(r < 1.0 for r in p.ratios.values()) else None

    def configure_fit(self, server_round, parameters, client_manager):
        pairs = super().configure_fit(server_round, parameters, client_manager)
        out = []
        for proxy, ins in pairs:
            props = self._properties(proxy)
            client_id = str(props.get("client_id", proxy.cid))
            ratios = self.client_ratios(client_id, float(props.get("slowdown", 1.0)))
            keep = self.scheduler.masks(server_round - 1, ratios, client_id) if ratios else {}
            sub = extract(self.graph, keep)
            self._sent[proxy.cid] = (client_id, keep, element_masks(sub))
            config = dict(ins.config)
            config["keep"] = json.dumps({str(s): k.tolist() for s, k in keep.items()})
            config["round"] = server_round
            config["steps"] = self.steps
            config["scale"] = bool(self.scale)
            out.append((proxy, FitIns(parameters, config)))
        return out

    def aggregate_fit(self, server_round, results, failures):
        if failures:
            log.warning("round %d: %d client(s) failed or dropped out; aggregating the others", server_round, len(failures))
        updates = []
        for proxy, res in results:
            client_id, keep, masks = self._sent[proxy.cid]
            arrays = parameters_to_ndarrays(res.parameters)
            if len(arrays) != len(self.names):
                log.warning("client %s sent %d arrays, expected %d; rejected", client_id, len(arrays), len(self.names))
                continue
            values = {n: a for n, a in zip(self.names, arrays) if np.issubdtype(a.dtype, np.floating)}
            updates.append(ClientUpdate(client_id, float(res.num_examples), values,
                                        {n: m for n, m in masks.items() if m is not None}, soft=bool(keep)))
        rejected = []
        before = {k: v.copy() for k, v in self.state.items()}
        while updates:
            try:
                self.state = aggregate(self.state, updates, soft_factor=self.soft_factor)
                break
            except InvalidArgument as err:  # a non-finite update: drop that client, keep the round
                m = re.search(r"client '([^']*)'", str(err))
                bad = m.group(1) if m else None
                if bad is None or bad not in [u.client_id for u in updates]:
                    raise
                log.warning("round %d: %s", server_round, err)
                rejected.append(bad)
                updates = [u for u in updates if u.client_id != bad]
        self.last_round = {"round": server_round, "before": before, "updates": updates, "after": dict(self.state)}
        metrics = {"participants": len(updates), "rejected": ",".join(rejected),
                   "soft_clients": sum(u.soft for u in updates)}
        for proxy, res in results:
            for key in ("seconds", "emulated_seconds"):
                if key in res.metrics:
                    metrics[f"max_{key}"] = max(metrics.get(f"max_{key}", 0.0), float(res.metrics[key]))
        self.history.append(dict(metrics, round=server_round))
        return ndarrays_to_parameters([self.state[n] for n in self.names]), metrics


class SoftClient(fl.client.NumPyClient):
    """A Flower client that trains the sub-model the strategy assigns (see the module doc).

    ``slowdown``: this device's speed relative to the profiled reference (reported to the
    planner). ``emulate_slowdown=True`` sleeps ``(slowdown - 1) x`` the training time, to emulate
    a straggler on a fast machine.
    """

    def __init__(self, client_id: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 10,
                 batch_size: int = 32, lr: float = 0.05, slowdown: float = 1.0, emulate_slowdown: bool = False,
                 seed: int = 0):
        self.client_id, self.model, self.x, self.y = client_id, model, x, y
        self.steps, self.batch_size, self.lr = steps, batch_size, lr
        self.slowdown, self.emulate = slowdown, emulate_slowdown
        self.graph = ChannelGraph(model, x[:2])
        self.names = list(model.state_dict())
        self._gen = torch.Generator().manual_seed(seed)

    def get_properties(self, config):
        return {"client_id": self.client_id, "slowdown": float(self.slowdown), "num_samples": int(self.x.shape[0])}

    def get_parameters(self, config):
        return [v.detach().cpu().numpy() for v in self.model.state_dict().values()]

    def _load(self, parameters):
        self.model.load_state_dict({n: torch.from_numpy(np.array(a)) for n, a in zip(self.names, parameters)})

    def fit(self, parameters, config):
        self._load(parameters)
        keep = {int(s): torch.tensor(k, dtype=torch.long) for s, k in json.loads(config.get("keep", "{}")).items()}
        sub = extract(self.graph, keep, scale=bool(config.get("scale", False)))
        steps = int(config.get("steps", self.steps))
        t0 = time.perf_counter()
        train_local(sub.module, self.x, self.y, steps, self.batch_size, self.lr, self._gen)
        seconds = time.perf_counter() - t0
        if self.emulate and self.slowdown > 1:
            time.sleep((self.slowdown - 1) * seconds)
        state = dict(zip(self.names, parameters))
        values, _ = scatter(state, sub)
        out = [values.get(n, np.asarray(state[n])) for n in self.names]
        kept = sum(p.numel() for p in sub.module.parameters()) / sum(p.numel() for p in self.model.parameters())
        return out, int(self.x.shape[0]), {"seconds": seconds, "emulated_seconds": seconds * self.slowdown,
                                           "kept_fraction": float(kept)}

    def evaluate(self, parameters, config):
        self._load(parameters)
        acc = evaluate(self.model, self.x, self.y)
        return 1.0 - acc, int(self.x.shape[0]), {"accuracy": acc}


# ---- command line: a demo deployment (server and clients as separate processes) -------------

def _demo_model() -> nn.Module:
    from .models import LeNet
    torch.manual_seed(0)
    return LeNet(width=4, hidden=32)


def _demo_data(client_id: str, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    seed = int.from_bytes(client_id.encode()[:4].ljust(4, b"\0"), "little")
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bricklab.soft.flower", description=__doc__.split("\n")[0])
    ap.add_argument("role", choices=["server", "client"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=3, help="server: clients to wait for each round")
    ap.add_argument("--client-id", default="c0")
    ap.add_argument("--slowdown", type=float, default=1.0)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--policy", default="rotating")
    ap.add_argument("--out", help="server: folder for history.json and last_round.npz")
    args = ap.parse_args(argv)
    address = f"{args.host}:{args.port}"
    torch.set_num_threads(1)
    if args.role == "client":
        x, y = _demo_data(args.client_id, args.samples)
        client = SoftClient(args.client_id, _demo_model(), x, y, steps=args.steps, batch_size=16,
                            slowdown=args.slowdown)
        fl.client.start_client(server_address=address, client=client.to_client())
        return 0
    model = _demo_model()
    example = torch.zeros(2, 1, 28, 28)
    # A fixed plan instead of a measured profile keeps the demo deterministic: slowdown s -> keep 1/s.
    strategy = _DemoStrategy(model, example, steps=args.steps, policy=args.policy, min_fit_clients=args.clients,
                             min_available_clients=args.clients, fraction_fit=1.0)
    fl.server.start_server(server_address=address, config=fl.server.ServerConfig(num_rounds=args.rounds),
                           strategy=strategy)
    if args.out:
        import pathlib
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "history.json").write_text(json.dumps(strategy.history, indent=1))
        lr = strategy.last_round
        arrays = {}
        for n, v in lr["before"].items():
            arrays[f"before/{n}"] = v
            arrays[f"after/{n}"] = lr["after"][n]
        meta = []
        for i, u in enumerate(lr["updates"]):
            meta.append({"client_id": u.client_id, "num_samples": u.num_samples, "soft": u.soft})
            for n, v in u.values.items():
                arrays[f"u{i}/values/{n}"] = v
            for n, m in u.masks.items():
                arrays[f"u{i}/masks/{n}"] = m
        np.savez(out / "last_round.npz", **arrays)
        (out / "last_round.json").write_text(json.dumps({"round": lr["round"], "updates": meta}))
    return 0


class _DemoStrategy(SoftStrategy):
    def client_ratios(self, client_id, slowdown):
        return None if slowdown <= 1.0 else {s: 1.0 / slowdown for s in self.graph.maskable()}


if __name__ == "__main__":
    raise SystemExit(main())
