"""Choose per-space keep ratios that let a (slow) client meet the round deadline.

ELFISH's planner: start from the whole model and, while the client's predicted round time (or
training memory) is over budget, shrink by one step the maskable channel space whose shrinking
saves the most time (or memory) -- the most resource-intensive channels first. Input and output layers are in fixed
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
    """A straggler's masking plan: keep ratios per channel space and what they are predicted to cost."""

    ratios: Dict[int, float]         # space id -> keep ratio (maskable spaces only)
    predicted_seconds: float         # predicted round time of the client (steps * step * slowdown)
    predicted_bytes: float           # predicted training memory
    feasible: bool                   # meets the deadline and the memory budget
    full_seconds: float              # the same client's predicted round time with the whole model

    @property
    def speedup(self) -> float:
        """Predicted round time of the whole model over that of the plan."""
        return self.full_seconds / self.predicted_seconds if self.predicted_seconds > 0 else 1.0

    def mean_ratio(self) -> float:
        """The keep ratios' mean over the maskable spaces (1.0 when nothing is masked)."""
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
    while over(ratios):
        # Shrink the space whose next step saves the most of the resource that is over budget:
        # the most resource-intensive channels go first, and a space that is already small (so
        # that its layers cost little) is left alone in favour of the heavy ones.
        time_over = seconds(ratios) > deadline_s
        cost = seconds if time_over else profile.predict_memory
        now = cost(ratios)
        best, best_saving = None, None
        for s in spaces:
            if ratios[s] - step < min_ratio - 1e-9:
                continue
            trial = dict(ratios)
            trial[s] = round(ratios[s] - step, 6)
            saving = now - cost(trial)
            if best is None or saving > best_saving + 1e-15:
                best, best_saving = s, saving
        if best is None:
            break
        ratios[best] = round(ratios[best] - step, 6)
    return Plan(ratios, seconds(ratios), profile.predict_memory(ratios), not over(ratios), full)
