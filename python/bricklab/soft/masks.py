"""Masks that change every round: which channels of each space a client trains.

Policies (all reproducible from ``seed``):

``rotating``  a window of ``k = ceil(r * n)`` consecutive channels (cyclically) that moves by ``k``
              every round, from a per-client offset. Any ``ceil(1/r)`` consecutive rounds cover
              ``ceil(1/r) * k >= n`` consecutive positions, so every channel is trained at least
              once every ``ceil(1/r)`` rounds (Helios' rotating neurons, FedRolex's rolling window).
``random``    ``k`` channels drawn uniformly every round (Federated Dropout).
``static``    the first ``k`` channels, every round (HeteroFL's nested sub-models; a baseline).

A mask is a dict ``space id -> sorted LongTensor of kept channels``; fixed spaces and spaces with
ratio 1 are absent (kept whole). Because a mask is per space, every layer that shares a space
(residual additions, batch norm, the consumers' input channels) drops the same channels.
"""
from __future__ import annotations

import hashlib
import math
from typing import Dict, Mapping, Union

import torch

from .graph import ChannelGraph

__all__ = ["MaskScheduler", "POLICIES", "kept_count"]

POLICIES = ("rotating", "random", "static")


def kept_count(ratio: float, size: int) -> int:
    """Channels kept of ``size`` at keep ratio ``ratio``: ``ceil(ratio * size)``, at least 1."""
    if not (0.0 < ratio <= 1.0):
        raise ValueError(f"keep ratio must be in (0, 1], got {ratio}")
    return max(1, min(size, math.ceil(ratio * size - 1e-9)))


def _seed_of(*parts) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class MaskScheduler:
    """Chooses each client's kept channels per round.

    >>> sched = MaskScheduler(graph, policy="rotating", seed=0)
    >>> keep = sched.masks(round=3, ratios={space: 0.5 for space in graph.maskable()}, client="c7")
    """

    def __init__(self, graph: ChannelGraph, policy: str = "rotating", seed: int = 0):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got '{policy}'")
        self.graph, self.policy, self.seed = graph, policy, int(seed)

    def masks(self, round: int, ratios: Union[float, Mapping[int, float]], client="0") -> Dict[int, torch.Tensor]:
        """The channels ``client`` keeps in ``round``: space id -> sorted index tensor of kept channels.

        ``ratios`` is a keep ratio per maskable space (or one ratio for all); the policy decides which
        channels."""
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        if not isinstance(ratios, Mapping):
            ratios = {s: float(ratios) for s in self.graph.maskable()}
        out: Dict[int, torch.Tensor] = {}
        for space, ratio in ratios.items():
            if space not in self.graph.spaces:
                raise ValueError(f"no channel space {space} (spaces: 0..{len(self.graph.spaces) - 1})")
            sp = self.graph.spaces[space]
            k = kept_count(ratio, sp.size)
            if sp.fixed or k == sp.size:
                continue
            n = sp.size
            if self.policy == "static":
                kept = torch.arange(k)
            elif self.policy == "random":
                gen = torch.Generator().manual_seed(_seed_of(self.seed, "random", client, round, space))
                kept = torch.randperm(n, generator=gen)[:k].sort().values
            else:
                offset = _seed_of(self.seed, "rotating", client, space) % n
                start = (offset + round * k) % n
                kept = ((start + torch.arange(k)) % n).sort().values
            out[space] = kept
        return out
