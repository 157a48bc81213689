"""Masked weighted aggregation of client updates (the C++ core, zero-copy on numpy / torch CPU buffers).

    >>> new_state = aggregate(global_state, [ClientUpdate("a", 600, values, masks), ...], soft_factor=0.5)

Every parameter element is averaged over the clients that trained it, weighted by their sample
counts; a soft-trained update's weight is multiplied by ``soft_factor``; elements that no client
trained keep their global value (bitwise). A client that dropped out is simply not in the list.
A NaN or infinity in a trained element raises :class:`bricklab.InvalidArgument` (a ``ValueError``)
naming the client and the tensor.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from .. import _core
from .._core import InvalidArgument

__all__ = ["ClientUpdate", "aggregate", "aggregate_stats"]


@dataclasses.dataclass
class ClientUpdate:
    """One client's trained values. ``values``: tensor name -> full-shape array (absent: not trained).
    ``masks``: tensor name -> bool/uint8 array of the same shape (absent or None: every element trained).
    ``soft``: a partial (soft-trained) update whose weight is scaled by ``soft_factor``."""
    client_id: str
    num_samples: float
    values: Mapping[str, object]
    masks: Mapping[str, Optional[object]] = dataclasses.field(default_factory=dict)
    soft: bool = False


def _as_array(x, what: str, dtype=np.float32) -> np.ndarray:
    """A numpy view of ``x`` (numpy array or torch CPU tensor) without copying when already ``dtype``."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch tensor: shares its CPU buffer
        if getattr(x, "device", None) is not None and x.device.type != "cpu":
            raise InvalidArgument(f"{what}: torch tensors must be on the CPU, got {x.device}")
        x = x.detach().numpy()
    a = np.asarray(x)
    if dtype is np.float32 and a.dtype != np.float32:
        if not np.issubdtype(a.dtype, np.floating):
            raise InvalidArgument(f"{what} must be a floating-point array, got {a.dtype}")
        a = a.astype(np.float32)  # the only copy: other float types are converted
    if dtype is bool and a.dtype not in (np.bool_, np.uint8):
        raise InvalidArgument(f"{what} must be a bool or uint8 array, got {a.dtype}")
    return np.ascontiguousarray(a)


_last_stats: Dict[str, float] = {}


def aggregate(global_state: Mapping[str, object], updates: Sequence[ClientUpdate], soft_factor: float = 1.0,
              threads: int = 0, out: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
    """Aggregates ``updates`` into a new dict of float32 arrays (or into ``out``'s arrays, in place).

    ``global_state``: name -> array (numpy or torch CPU) of the current global model. Only
    floating-point entries take part; others are returned unchanged. ``threads=0``: all cores.
    ``out`` may be ``global_state`` itself (its arrays are then overwritten with the result):
    every trained value is checked first, so a rejected update (NaN or inf) raises
    ``bricklab.InvalidArgument`` and leaves them unchanged.
    """
    if not updates:
        raise InvalidArgument("aggregate: no client updates (at least one client must report)")
    names, globals_, outs, passthrough = [], [], [], {}
    for name, g in global_state.items():
        arr = np.asarray(g.detach().numpy() if hasattr(g, "detach") else g)
        if not np.issubdtype(arr.dtype, np.floating):
            passthrough[name] = arr
            continue
        names.append(name)
        globals_.append(_as_array(g, f"global tensor '{name}'"))
    if out is None:
        outs = [np.empty_like(g) for g in globals_]
    else:
        for name in names:
            if name not in out:
                raise InvalidArgument(f"aggregate: out has no array for '{name}'")
            outs.append(out[name])
    known = set(names)
    clients = []
    for i, u in enumerate(updates):
        who = f"client '{u.client_id}' (index {i})"
        for name in list(u.values) + list(u.masks or {}):
            if name not in known and name not in passthrough:
                raise InvalidArgument(f"aggregate: {who} sent tensor '{name}', which the global model does not have")
        vals = [None if u.values.get(n) is None else _as_array(u.values[n], f"values of {who}, tensor '{n}'")
                for n in names]
        masks = [None if (u.masks or {}).get(n) is None or u.values.get(n) is None
                 else _as_array(u.masks[n], f"mask of {who}, tensor '{n}'", dtype=bool) for n in names]
        clients.append((str(u.client_id), float(u.num_samples), bool(u.soft), vals, masks))
    stats = _core.soft.aggregate(names, globals_, outs, clients, soft_factor=float(soft_factor), threads=int(threads))
    _last_stats.clear()
    _last_stats.update(stats)
    result = dict(zip(names, outs))
    result.update({k: v for k, v in passthrough.items()})
    return {name: result[name] for name in global_state}


def aggregate_stats() -> Dict[str, float]:
    """Statistics of the last :func:`aggregate` call: elements, untouched, bytes_moved, seconds."""
    return dict(_last_stats)
