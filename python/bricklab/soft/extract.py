"""Sub-model extraction and scatter: train a physically smaller dense model, then put it back.

``extract(graph, keep)`` copies the model and slices every Conv2d / Linear / BatchNorm to the
kept channels (output channels from the layer's own space, input channels from the layout of its
input, so residuals, concatenations and flatten-into-linear line up). The copy is an ordinary
dense ``nn.Module`` of the same class with smaller weights: forward and backward really do less.

``scatter(global_state, sub)`` writes the trained sub-model back into full-size arrays: kept
positions take the trained values, every other element is a bitwise copy of the global value.
It also returns the per-element masks that :func:`bricklab.soft.aggregate` needs.

``extract(..., scale=True)`` adds HeteroFL's *scaler*: a layer that sees only a fraction ``f`` of
its input channels multiplies its input by ``1 / f`` while the sub-model trains (as inverted
dropout does), so that its outputs, the batch-norm statistics after it and the weights trained
for them have the magnitudes of the whole model, into which they are aggregated.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .graph import ChannelGraph

__all__ = ["SubModel", "extract", "scatter", "element_masks"]

Index = Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]  # (rows of dim 0, columns of dim 1)


@dataclasses.dataclass
class SubModel:
    """A smaller dense model and, per state_dict entry, the kept indices along dims 0 and 1."""
    module: nn.Module
    index: Dict[str, Index]
    keep: Dict[int, torch.Tensor]

    def kept_fraction(self) -> float:
        """Fraction of the full model's parameters that the sub-model has."""
        sub = sum(p.numel() for p in self.module.parameters())
        full = sum(int(np.prod(s)) for s in self._full_shapes.values())
        return sub / full

    _full_shapes: Dict[str, Tuple[int, ...]] = dataclasses.field(default_factory=dict)


def _take(t: torch.Tensor, rows, cols) -> torch.Tensor:
    if rows is not None:
        t = t.index_select(0, rows)
    if cols is not None and t.dim() >= 2:
        t = t.index_select(1, cols)
    return t.clone()


class _InputScale:
    """Forward pre-hook: multiplies a layer's input by a constant (picklable, unlike a lambda)."""

    def __init__(self, factor: float):
        self.factor = float(factor)

    def __call__(self, module: nn.Module, args):
        return (args[0] * self.factor,) + tuple(args[1:])


def extract(graph: ChannelGraph, keep: Mapping[int, torch.Tensor], model: Optional[nn.Module] = None,
            scale: bool = False) -> SubModel:
    """A dense copy of ``model`` (default: the graph's model) with only the kept channels.

    ``scale``: a Conv2d / Linear that keeps ``k`` of its ``n`` input channels (or features)
    multiplies its input by ``n / k`` (HeteroFL's scaler; see the module docstring).
    """
    model = graph.model if model is None else model
    sub = copy.deepcopy(model)
    full_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    keep = {int(s): torch.as_tensor(v, dtype=torch.long) for s, v in keep.items()}
    for space, kept in keep.items():
        if space not in graph.spaces:
            raise ValueError(f"no channel space {space}")
        sp = graph.spaces[space]
        if sp.fixed:
            raise ValueError(f"channel space {space} is fixed (model input/output or unsupported op); it cannot be masked")
        if kept.numel() == 0 or kept.min() < 0 or kept.max() >= sp.size or kept.unique().numel() != kept.numel():
            raise ValueError(f"kept channels of space {space} must be distinct indices in [0, {sp.size}) and not empty")
    index: Dict[str, Index] = {}
    for name, layer in graph.layers.items():
        mod = sub.get_submodule(name)
        rows = keep.get(layer.out_space) if layer.out_space is not None else None
        prefix = f"{name}." if name else ""
        if layer.kind in ("conv", "linear"):
            cols = graph.index_of(layer.in_layout, keep)
            full_in = mod.weight.shape[1]
            cols = None if cols.numel() == full_in else cols
            if rows is None and cols is None:
                continue
            with torch.no_grad():
                mod.weight = nn.Parameter(_take(mod.weight.data, rows, cols))
                if mod.bias is not None:
                    mod.bias = nn.Parameter(_take(mod.bias.data, rows, None))
            index[prefix + "weight"] = (rows, cols)
            if mod.bias is not None:
                index[prefix + "bias"] = (rows, None)
            if scale and cols is not None:
                mod.register_forward_pre_hook(_InputScale(full_in / cols.numel()))
            if layer.kind == "conv":
                mod.out_channels, mod.in_channels = mod.weight.shape[0], mod.weight.shape[1]
            else:
                mod.out_features, mod.in_features = mod.weight.shape[0], mod.weight.shape[1]
        else:
            if rows is None:
                continue
            with torch.no_grad():
                if mod.weight is not None:
                    mod.weight = nn.Parameter(_take(mod.weight.data, rows, None))
                    mod.bias = nn.Parameter(_take(mod.bias.data, rows, None))
                    index[prefix + "weight"] = index[prefix + "bias"] = (rows, None)
                if mod.running_mean is not None:
                    mod.running_mean = _take(mod.running_mean, rows, None)
                    mod.running_var = _take(mod.running_var, rows, None)
                    index[prefix + "running_mean"] = index[prefix + "running_var"] = (rows, None)
            mod.num_features = int(rows.numel())
    return SubModel(sub, index, keep, full_shapes)


def scatter(global_state: Mapping[str, object], sub: SubModel) -> Tuple[Dict[str, np.ndarray], Dict[str, Optional[np.ndarray]]]:
    """Full-size float32 values and boolean masks (None = every element trained) of a trained sub-model.

    ``global_state`` maps state_dict names to the server's current arrays (numpy or torch). Only
    floating-point entries are returned (integer counters such as ``num_batches_tracked`` are not
    averaged).
    """
    values: Dict[str, np.ndarray] = {}
    masks: Dict[str, Optional[np.ndarray]] = {}
    for name, t in sub.module.state_dict().items():
        if not torch.is_floating_point(t):
            continue
        if name not in global_state:
            raise ValueError(f"scatter: the global state has no tensor '{name}'")
        trained = t.detach().cpu().numpy().astype(np.float32, copy=False)
        if name not in sub.index:
            g = np.asarray(global_state[name])
            if g.shape != trained.shape:
                raise ValueError(f"scatter: '{name}' has shape {trained.shape}, the global one {g.shape}")
            values[name] = np.ascontiguousarray(trained)
            masks[name] = None
            continue
        full = np.array(global_state[name], dtype=np.float32, copy=True)
        mask = np.zeros(full.shape, dtype=bool)
        rows, cols = sub.index[name]
        r = np.arange(full.shape[0]) if rows is None else rows.numpy()
        if full.ndim >= 2:
            c = np.arange(full.shape[1]) if cols is None else cols.numpy()
            grid = np.ix_(r, c)
        else:
            grid = (r,)
        full[grid] = trained
        mask[grid] = True
        values[name], masks[name] = full, mask
    return values, masks


def element_masks(sub: SubModel) -> Dict[str, Optional[np.ndarray]]:
    """Per-element boolean masks (full shapes) of the entries a sub-model trains; None = all of it."""
    masks: Dict[str, Optional[np.ndarray]] = {}
    for name, shape in sub._full_shapes.items():
        if name not in sub.index:
            masks[name] = None
            continue
        mask = np.zeros(shape, dtype=bool)
        rows, cols = sub.index[name]
        r = np.arange(shape[0]) if rows is None else rows.numpy()
        grid = np.ix_(r, np.arange(shape[1]) if cols is None else cols.numpy()) if len(shape) >= 2 else (r,)
        mask[grid] = True
        masks[name] = mask
    return masks
