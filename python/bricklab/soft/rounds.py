"""In-process federated rounds with soft-training: a :class:`Server` and :class:`Client` pair.

    >>> server = Server(model, example_input, policy="rotating", seed=0)
    >>> clients = [Client(f"c{i}", x_i, y_i, slowdown=s_i) for i, ...]
    >>> for r in range(rounds):
    ...     report = server.run_round(clients, ratios={c.client_id: plan_i.ratios for ...})

Each round the server extracts every client's sub-model (its own mask, chosen by the mask
scheduler from the client's keep ratios), the client trains it locally, the server scatters the
trained weights back and aggregates them with :func:`bricklab.soft.aggregate`. Time is not
simulated here; the experiment script does that with the profiler.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .aggregate import ClientUpdate, aggregate
from .extract import SubModel, extract, scatter
from .graph import ChannelGraph
from .masks import MaskScheduler, _seed_of

__all__ = ["Client", "Server", "RoundReport", "train_local", "evaluate"]


def train_local(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int, lr: float,
                generator: torch.Generator, momentum: float = 0.0) -> float:
    """``steps`` SGD steps on mini-batches drawn from (x, y); returns the mean loss."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=generator)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return float(np.mean(losses)) if losses else float("nan")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on (x, y)."""
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(1, x.shape[0])


@dataclasses.dataclass
class Client:
    """A federated client: local data, local training settings and an emulated slowdown factor."""
    client_id: str
    x: torch.Tensor
    y: torch.Tensor
    steps: int = 10
    batch_size: int = 32
    lr: float = 0.05
    slowdown: float = 1.0
    seed: int = 0

    def __post_init__(self):
        # A digest, not hash(): str hashes change from process to process.
        self._gen = torch.Generator().manual_seed(_seed_of("client", self.client_id, self.seed))

    @property
    def num_samples(self) -> int:
        """Number of local training samples (the weight of this client's update in aggregation)."""
        return int(self.x.shape[0])

    def fit(self, module: nn.Module) -> Dict[str, float]:
        """Trains ``module`` (the extracted sub-model) in place; returns loss and measured seconds."""
        t0 = time.perf_counter()
        loss = train_local(module, self.x, self.y, self.steps, self.batch_size, self.lr, self._gen)
        return {"loss": loss, "seconds": time.perf_counter() - t0}


@dataclasses.dataclass
class RoundReport:
    """What one round did: who took part, the fraction of parameters each trained, their metrics."""

    round: int
    participants: List[str]
    kept_fraction: Dict[str, float]   # client -> fraction of parameters trained
    metrics: Dict[str, Dict[str, float]]


class Server:
    """Holds the global model and runs soft-training rounds over :class:`Client` objects."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, policy: str = "rotating", seed: int = 0,
                 soft_factor: float = 1.0, keep_whole: Sequence[str] = (), threads: int = 0, scale: bool = False):
        self.model = model
        self.scale = scale  # HeteroFL's scaler in the sub-models (see extract)
        self.graph = ChannelGraph(model, example_input, keep_whole)
        self.scheduler = MaskScheduler(self.graph, policy, seed)
        self.soft_factor, self.threads = soft_factor, threads
        self.state = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        self.round = 0

    def submodel(self, client_id: str, ratios: Optional[Mapping[int, float]]) -> SubModel:
        """The sub-model client ``client_id`` trains this round (whole model when ``ratios`` is None)."""
        self.load_into(self.model)
        keep = self.scheduler.masks(self.round, ratios, client_id) if ratios else {}
        return extract(self.graph, keep, scale=self.scale)

    def load_into(self, module: nn.Module) -> nn.Module:
        """Copies the global model's current weights into ``module``; returns it."""
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.state.items()})
        return module

    def run_round(self, clients: Sequence[Client], ratios: Mapping[str, Optional[Mapping[int, float]]] = None,
                  drop: Sequence[str] = ()) -> RoundReport:
        """One round: extract, train, scatter, aggregate. ``drop``: clients that drop out (absent)."""
        ratios = ratios or {}
        updates, kept, metrics = [], {}, {}
        for c in clients:
            sub = self.submodel(c.client_id, ratios.get(c.client_id))
            if c.client_id in drop:
                continue
            metrics[c.client_id] = c.fit(sub.module)
            values, masks = scatter(self.state, sub)
            soft = bool(sub.keep)
            updates.append(ClientUpdate(c.client_id, c.num_samples, values, masks, soft=soft))
            kept[c.client_id] = sum(int(m.sum()) if m is not None else values[n].size for n, m in masks.items()) / \
                sum(v.size for v in values.values())
        if updates:
            self.state = aggregate(self.state, updates, soft_factor=self.soft_factor, threads=self.threads)
        report = RoundReport(self.round, [u.client_id for u in updates], kept, metrics)
        self.round += 1
        return report

    def global_model(self) -> nn.Module:
        """The model with the current global weights."""
        return self.load_into(self.model)
