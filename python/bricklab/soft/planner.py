"""Choose per-space keep ratios that let a (slow) client meet the round deadline.

ELFISH's planner: start from the whole model and, while the client's predicted round time (or
training memory) is over budget, shrink the most resource-intensive maskable channel space (the
one whose layers currently cost the most) by one step. Input and output layers are in fixed
spaces and are never shrunk. The client's speed enters as a slowdown factor relative to the
machine the profile was measured on (1 = same speed, 2 = twice as slow).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

from .profiler import Profile

__all__ = ["Plan", "plan"]


@dataclasses.dataclass
class Plan:
    ratios: Dict[int, float]         # space id -> keep ratio (maskable spaces only)
    predicted_seconds: float         # predicted round time of the client (steps * step * slowdown)
    predicted_bytes: float           # predicted training memory
    feasible: bool                   # meets the deadline and the memory budget
    full_seconds: float              # the same client's predicted round time with the whole model

    @property
    def speedup(self) -> float:
        return self.full_seconds / self.predicted_seconds if self.predicted_seconds > 0 else 1.0

    def mean_ratio(self) -> float:
        return sum(self.ratios.values()) / len(self.ratios) if self.ratios else 1.0


def plan(profile: Profile, deadline_s: float, steps: int = 1, slowdown: float = 1.0,
         memory_budget_bytes: Optional[float] = None, min_ratio: float = 0.1, step: float = 0.05) -> Plan:
    """Per-space keep ratios for a client ``slowdown`` times slower than the profiled machine that
    must finish ``steps`` training steps within ``deadline_s`` seconds (and fit the memory budget).

    When even ``min_ratio`` everywhere is too slow, returns the smallest plan with ``feasible=False``.
    """
    if not deadline_s > 0:
        raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
    if not slowdown > 0:
        raise ValueError(f"slowdown must be > 0, got {slowdown}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < min_ratio <= 1 or not 0 < step < 1:
        raise ValueError("min_ratio must be in (0, 1] and step in (0, 1)")
    spaces = profile.graph.maskable()
    ratios = {s: 1.0 for s in spaces}

    def seconds(r):
        return profile.predict_time(r) * steps * slowdown

    def over(r):
        return seconds(r) > deadline_s or (memory_budget_bytes is not None and profile.predict_memory(r) > memory_budget_bytes)

    full = seconds(ratios)
    # Cost attributed to a space: the time of the layers that produce or consume its channels.
    touching = {s: [] for s in spaces}
    for name, layer in profile.graph.layers.items():
        if name not in profile.layers:
            continue
        for s in {layer.out_space, *[sid for sid, _, _ in layer.in_layout]}:
            if s in touching:
                touching[s].append(name)
    while over(ratios):
        times = profile.layer_times(ratios)
        candidates = [s for s in spaces if ratios[s] - step >= min_ratio - 1e-9]
        if not candidates:
            break
        heaviest = max(candidates, key=lambda s: (sum(times[n] for n in touching[s]), -s))
        ratios[heaviest] = round(ratios[heaviest] - step, 6)
    return Plan(ratios, seconds(ratios), profile.predict_memory(ratios), not over(ratios), full)
