"""Channel spaces of a PyTorch model: which output channels of which layers must be masked together.

A *channel space* is one index set of channels (neurons). Every Conv2d / Linear creates one for its
output channels; batch norm, activations, pooling and dropout pass it on; a residual addition
merges the spaces of its operands (they must keep the same channels); a concatenation lays spaces
side by side; a flatten expands each channel into its ``H*W`` consecutive features, so a Linear
after a flatten drops exactly the columns of the dropped channels. Spaces that reach the model's
input or output, or pass through an operation this module does not understand, are *fixed*: they
are never masked, so the input and output layers stay whole and unknown code stays correct.

    >>> g = ChannelGraph(model, example_input)
    >>> g.spaces            # {space_id: Space(size, fixed, producers)}
    >>> g.layers            # {module name: Layer(kind, out_space, in_layout)}
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Dict, List, Optional, Tuple

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["ChannelGraph", "Space", "Layer", "Segment"]

# (space id, channels, features per channel): a tensor's dim 1 is a list of these, in order.
Segment = Tuple[int, int, int]

_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.Hardswish,
                 nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                 nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d, nn.Hardtanh)
_PASS_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.sigmoid, torch.tanh, torch.nn.functional.gelu,
                   torch.nn.functional.silu, torch.nn.functional.dropout, torch.nn.functional.max_pool2d,
                   torch.nn.functional.avg_pool2d, torch.nn.functional.adaptive_avg_pool2d,
                   torch.nn.functional.leaky_relu, torch.nn.functional.relu6}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone", "detach", "relu_"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add, operator.mul, torch.mul, operator.sub, torch.sub}
_CAT_FUNCTIONS = {torch.cat, torch.concat} if hasattr(torch, "concat") else {torch.cat}


@dataclasses.dataclass
class Space:
    """One set of channels that is kept or dropped together."""
    size: int
    fixed: bool = False
    producers: List[str] = dataclasses.field(default_factory=list)  # layers whose output channels these are


@dataclasses.dataclass
class Layer:
    """A parametrised layer and where its channels come from."""
    name: str
    kind: str                  # "conv", "linear" or "norm"
    out_space: Optional[int]   # conv/linear: its output space; norm: the space it normalises
    in_layout: List[Segment]   # the layout of its input's dim 1 (empty for norm)


class ChannelGraph:
    """Traces ``model`` with torch.fx and groups its channels into spaces (see the module doc)."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, keep_whole=()):
        self.model = model
        self.traced = torch.fx.symbolic_trace(model)
        ShapeProp(self.traced).propagate(example_input)
        self.modules = dict(self.traced.named_modules())
        self._parent: Dict[int, int] = {}
        self._spaces: Dict[int, Space] = {}
        self.layers: Dict[str, Layer] = {}
        self.unknown_ops: List[str] = []
        layouts: Dict[str, List[Segment]] = {}
        for node in self.traced.graph.nodes:
            layouts[node.name] = self._visit(node, layouts)
        for name in keep_whole:
            layer = self.layers.get(name)
            if layer is None:
                raise ValueError(f"keep_whole: no Conv2d/Linear named '{name}' in the model")
            self._fix(layer.out_space)
        self._finish()

    # ---- union-find over space ids ------------------------------------------------------------
    def _new(self, size: int, fixed=False, producer: Optional[str] = None) -> int:
        sid = len(self._parent)
        self._parent[sid] = sid
        self._spaces[sid] = Space(size, fixed, [producer] if producer else [])
        return sid

    def _find(self, s: int) -> int:
        while self._parent[s] != s:
            self._parent[s] = self._parent[self._parent[s]]
            s = self._parent[s]
        return s

    def _union(self, a: int, b: int) -> None:
        a, b = self._find(a), self._find(b)
        if a == b:
            return
        sa, sb = self._spaces[a], self._spaces[b]
        if sa.size != sb.size:
            raise ValueError(f"channel spaces of sizes {sa.size} and {sb.size} meet in one operation")
        self._parent[b] = a
        sa.fixed = sa.fixed or sb.fixed
        sa.producers += sb.producers

    def _fix(self, s: int) -> None:
        self._spaces[self._find(s)].fixed = True

    def _fix_layout(self, layout) -> None:
        for sid, _, _ in layout or []:
            self._fix(sid)

    # ---- the walk ---------------------------------------------------------------------------
    @staticmethod
    def _shape(node) -> Optional[Tuple[int, ...]]:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def _fresh_fixed(self, node) -> List[Segment]:
        shape = self._shape(node)
        if shape is None or len(shape) < 2:
            return []
        return [(self._new(shape[1], fixed=True), shape[1], 1)]

    def _visit(self, node, layouts) -> List[Segment]:
        def lay(arg):
            return layouts.get(arg.name) if isinstance(arg, torch.fx.Node) else None

        if node.op == "placeholder":
            return self._fresh_fixed(node)
        if node.op == "output":
            for arg in _flatten_args(node.args):
                self._fix_layout(lay(arg))
            return []
        if node.op == "get_attr":
            return []
        inputs = [a for a in _flatten_args(node.args) + _flatten_args(list(node.kwargs.values()))
                  if isinstance(a, torch.fx.Node)]
        if node.op == "call_module":
            mod = self.modules[node.target]
            src = lay(node.args[0])
            if isinstance(mod, nn.Conv2d) or isinstance(mod, nn.Linear):
                if isinstance(mod, nn.Conv2d) and mod.groups != 1:
                    self._fix_layout(src)
                    self.unknown_ops.append(f"{node.target} (grouped conv)")
                    out = self._new(mod.out_channels, fixed=True, producer=node.target)
                    return [(out, mod.out_channels, 1)]
                size = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
                shape_in = self._shape(node.args[0])
                if isinstance(mod, nn.Linear) and shape_in is not None and len(shape_in) != 2:
                    self._fix_layout(src)  # Linear over a 3-D tensor: its features are not dim 1
                    self.unknown_ops.append(f"{node.target} (Linear on {len(shape_in)}-D input)")
                    src = [(self._new(shape_in[-1], fixed=True), shape_in[-1], 1)]
                width = mod.in_channels if isinstance(mod, nn.Conv2d) else mod.in_features
                if sum(n * r for _, n, r in (src or [])) != width:
                    # The input's channels were not followed (e.g. an unknown op without a shape):
                    # keep whatever feeds this layer whole and read all of its inputs.
                    self._fix_layout(src)
                    src = [(self._new(width, fixed=True), width, 1)]
                out = self._new(size, producer=node.target)
                self.layers[node.target] = Layer(node.target, "conv" if isinstance(mod, nn.Conv2d) else "linear",
                                                 out, list(src or []))
                return [(out, size, 1)]
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if src and len(src) == 1 and src[0][2] == 1:
                    self.layers[node.target] = Layer(node.target, "norm", src[0][0], [])
                else:
                    self._fix_layout(src)
                    self.layers[node.target] = Layer(node.target, "norm", None, list(src or []))
                return src
            if isinstance(mod, _PASS_MODULES):
                return src
            if isinstance(mod, nn.Flatten):
                return self._flatten(node, src)
            return self._unknown(node, inputs, layouts)
        if node.op == "call_function":
            if node.target in _PASS_FUNCTIONS:
                return lay(node.args[0])
            if node.target in _ADD_FUNCTIONS:
                tensor_args = [a for a in node.args[:2] if isinstance(a, torch.fx.Node) and lay(a)]
                if len(tensor_args) == 2:
                    return self._merge(lay(tensor_args[0]), lay(tensor_args[1]), node, inputs, layouts)
                if any(self._broadcasts_over_channels(a) for a in node.args[:2] if a not in tensor_args):
                    return self._unknown(node, inputs, layouts)  # e.g. a per-channel constant: not sliced
                return lay(tensor_args[0]) if tensor_args else []
            if node.target in _CAT_FUNCTIONS:
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                parts = node.args[0]
                ndim = len(self._shape(node) or ())
                if ndim >= 2 and dim % ndim == 1:
                    out: List[Segment] = []
                    for p in parts:
                        out += list(lay(p) or [])
                    return out
                return self._unknown(node, inputs, layouts)
            if node.target is torch.flatten:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                return self._flatten(node, lay(node.args[0])) if start == 1 else self._unknown(node, inputs, layouts)
            if node.target is getattr:
                return []
            return self._unknown(node, inputs, layouts)
        if node.op == "call_method":
            if node.target in _PASS_METHODS:
                return lay(node.args[0])
            if node.target in ("add", "add_", "mul", "mul_"):
                a, b = node.args[0], node.args[1]
                if isinstance(b, torch.fx.Node) and lay(b):
                    return self._merge(lay(a), lay(b), node, inputs, layouts)
                if self._broadcasts_over_channels(b):
                    return self._unknown(node, inputs, layouts)
                return lay(a)
            if node.target in ("view", "reshape", "flatten"):
                shape_in, shape_out = self._shape(node.args[0]), self._shape(node)
                if shape_in and shape_out and len(shape_out) == 2 and shape_out[0] == shape_in[0]:
                    return self._flatten(node, lay(node.args[0]))
                return self._unknown(node, inputs, layouts)
            if node.target == "size":
                return []
            return self._unknown(node, inputs, layouts)
        return self._unknown(node, inputs, layouts)

    def _broadcasts_over_channels(self, arg) -> bool:
        """A tensor operand without a layout (a constant) that has more than one element."""
        if not isinstance(arg, torch.fx.Node):
            return False
        shape = self._shape(arg)
        if shape is None:
            return False
        n = 1
        for d in shape:
            n *= d
        return n > 1

    def _merge(self, a, b, node, inputs, layouts) -> List[Segment]:
        if a is None or b is None or [(n, r) for _, n, r in a] != [(n, r) for _, n, r in b]:
            return self._unknown(node, inputs, layouts)
        for (sa, _, _), (sb, _, _) in zip(a, b):
            self._union(sa, sb)
        return a

    def _flatten(self, node, src) -> List[Segment]:
        shape_in = self._shape(node.args[0])
        if not src or shape_in is None:
            return self._unknown(node, [node.args[0]], {})
        spatial = 1
        for d in shape_in[2:]:
            spatial *= d
        return [(sid, n, r * spatial) for sid, n, r in src]

    def _unknown(self, node, inputs, layouts) -> List[Segment]:
        for arg in inputs:
            self._fix_layout(layouts.get(arg.name))
        self.unknown_ops.append(f"{node.name} ({node.op} {getattr(node.target, '__name__', node.target)})")
        return self._fresh_fixed(node)

    def _finish(self) -> None:
        # Canonical ids: roots only, renumbered 0..k-1 in model order.
        roots: Dict[int, int] = {}
        for sid in self._parent:
            r = self._find(sid)
            if r not in roots:
                roots[r] = len(roots)
        self._canon = {sid: roots[self._find(sid)] for sid in self._parent}
        self.spaces: Dict[int, Space] = {roots[r]: self._spaces[r] for r in roots}
        for layer in self.layers.values():
            if layer.out_space is not None:
                layer.out_space = self._canon[layer.out_space]
            layer.in_layout = [(self._canon[s], n, r) for s, n, r in layer.in_layout]

    # ---- queries ------------------------------------------------------------------------------
    def maskable(self) -> List[int]:
        """Spaces that may be masked (not fixed), in model order."""
        return [s for s, sp in self.spaces.items() if not sp.fixed]

    def index_of(self, layout: List[Segment], keep: Dict[int, "torch.Tensor"]) -> torch.Tensor:
        """Indices along dim 1 of a tensor with ``layout`` that survive ``keep`` (space -> kept channels)."""
        parts, offset = [], 0
        for sid, n, r in layout:
            kept = keep.get(sid)
            if kept is None or self.spaces[sid].fixed:
                kept = torch.arange(n)
            cols = (kept.view(-1, 1) * r + torch.arange(r).view(1, -1)).reshape(-1)
            parts.append(cols + offset)
            offset += n * r
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _flatten_args(args) -> list:
    out = []
    for a in args if isinstance(args, (list, tuple)) else [args]:
        if isinstance(a, (list, tuple)):
            out += _flatten_args(a)
        elif isinstance(a, dict):
            out += _flatten_args(list(a.values()))
        else:
            out.append(a)
    return out
