"""Soft-training for federated learning with stragglers (ELFISH / Helios).

Pieces, each usable alone:

- :class:`ChannelGraph` -- which channels of which layers must be masked together (residuals,
  concatenations, batch norm, flatten-into-linear), from a torch.fx trace.
- :func:`profile` -> :class:`Profile` -- per-layer training time and memory as a function of the
  kept fraction, measured on this machine; predicts a mask configuration's step time and memory.
- :func:`plan` -> :class:`Plan` -- per-space keep ratios that meet a round deadline (and memory
  budget) for a client of a given slowdown, shrinking the most expensive layers first.
- :class:`MaskScheduler` -- rotating, random or static masks, reproducible from a seed.
- :func:`extract` / :func:`scatter` -- a physically smaller dense sub-model, and its trained
  weights written back (untouched weights bitwise unchanged) with per-element masks.
- :func:`aggregate` -- masked weighted average in C++ (multithreaded, zero-copy).
- :func:`from_onnx` -- an ONNX model (through bricklab's graph) as a trainable torch.fx module.
- :class:`Server` / :class:`Client` -- in-process rounds; ``bricklab.soft.flower`` has the Flower
  strategy and client (imported on demand, since it needs ``flwr``).

See docs/soft-training.md.
"""
from .aggregate import ClientUpdate, aggregate, aggregate_stats  # noqa: F401
from .extract import SubModel, element_masks, extract, scatter  # noqa: F401
from .graph import ChannelGraph, Layer, Space  # noqa: F401
from .masks import POLICIES, MaskScheduler, kept_count  # noqa: F401
from .planner import Plan, plan  # noqa: F401
from .profiler import (LayerCost, Profile, measure_step, measure_steps, profile, step_memory_bytes,  # noqa: F401
                       summarise, torch_threads)
from .rounds import Client, RoundReport, Server, evaluate, train_local  # noqa: F401
from .onnx import from_onnx  # noqa: F401

__all__ = [
    "ChannelGraph", "Layer", "Space", "MaskScheduler", "POLICIES", "kept_count", "SubModel", "extract", "scatter",
    "element_masks", "ClientUpdate", "aggregate", "aggregate_stats", "Plan", "plan", "LayerCost", "Profile",
    "profile", "measure_step", "measure_steps", "summarise", "torch_threads", "step_memory_bytes", "Client", "Server", "RoundReport", "evaluate", "train_local",
    "from_onnx",
]
