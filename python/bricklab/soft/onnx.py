"""ONNX models in soft-training: bricklab's graph rebuilt as a trainable torch.fx module.

    >>> module = bricklab.soft.from_onnx("models/bundled/tiny_cnn.onnx")
    >>> prof = bricklab.soft.profile(module, x, y)        # then everything else as for PyTorch

:func:`from_onnx` reads the model with :func:`bricklab.load` (shapes, attributes and weights come
from bricklab's IR) and emits one torch.fx node per ONNX node: ``Conv`` -> ``nn.Conv2d``, ``Gemm``
and ``MatMul`` by a constant -> ``nn.Linear``, ``BatchNormalization`` -> ``nn.BatchNorm2d`` (or
1d), and the pooling, activation, ``Add``/``Mul``/``Concat``/``Flatten``/``Reshape`` nodes as
functions. The module's parameters are the ONNX weights (random ones when the file has its
weights stripped), so the channel analysis, masks, extraction, profiler, planner and Flower
classes all apply. Unsupported operators raise :class:`bricklab.UnsupportedError` naming the node.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

import numpy as np
import torch
import torch.fx
from torch import nn

from .. import UnsupportedError, load

__all__ = ["from_onnx"]


def _conv_padding(node, pads, kernel):
    if not pads:
        return 0
    half = len(pads) // 2
    if list(pads[:half]) != list(pads[half:]):
        raise UnsupportedError(f"node '{node.name}' ({node.op}): asymmetric pads {pads} are not supported")
    return tuple(pads[:half])


def from_onnx(model_or_path, batch: int = 1, random_seed: int = 0) -> torch.fx.GraphModule:
    """A trainable torch.fx module equivalent to the ONNX model (``batch`` binds a symbolic batch)."""
    model = load(str(model_or_path), batch=batch) if isinstance(model_or_path, (str, bytes)) or hasattr(
        model_or_path, "__fspath__") else model_or_path
    torch.manual_seed(random_seed)
    root = nn.Module()
    graph = torch.fx.Graph()
    env: Dict[str, torch.fx.Node] = {}
    used: Dict[str, int] = {}

    def unique(base: str) -> str:
        base = re.sub(r"[^0-9a-zA-Z_]", "_", base).strip("_") or "n"
        if base[0].isdigit():
            base = "n" + base
        used[base] = used.get(base, 0) + 1
        return base if used[base] == 1 else f"{base}_{used[base]}"

    def tensor(value) -> Optional[torch.Tensor]:
        return None if value.data is None else torch.from_numpy(np.array(value.data, copy=True))

    def operand(value) -> torch.fx.Node:
        if value.name in env:
            return env[value.name]
        if value.kind in ("constant", "weight"):
            data = tensor(value)
            if data is None:
                raise UnsupportedError(f"constant '{value.name}' has no data (weights stripped); "
                                       "materialize the model first (python -m bricklab.zoo materialize)")
            name = unique("const_" + value.name)
            root.register_buffer(name, data.float() if data.is_floating_point() else data)
            env[value.name] = graph.get_attr(name)
            return env[value.name]
        raise UnsupportedError(f"value '{value.name}' ({value.kind}) is used before it is produced")

    def add_module(node, module: nn.Module) -> str:
        name = unique(node.name)
        root.add_module(name, module)
        return name

    for value in model.inputs:
        env[value.name] = graph.placeholder(unique(value.name))

    for node in model.nodes:
        op, attrs, ins = node.op, node.attrs, node.inputs
        out_name = node.outputs[0].name
        if op == "Conv":
            w = ins[1]
            kernel = tuple(attrs.get("kernel_shape", w.shape[2:]))
            if len(kernel) != 2 or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
                raise UnsupportedError(f"node '{node.name}' (Conv): only 2-D convolutions with explicit pads")
            conv = nn.Conv2d(w.shape[1] * int(attrs.get("group", 1)), w.shape[0], kernel,
                             stride=tuple(attrs.get("strides", (1, 1))),
                             padding=_conv_padding(node, attrs.get("pads"), kernel),
                             dilation=tuple(attrs.get("dilations", (1, 1))), groups=int(attrs.get("group", 1)),
                             bias=len(ins) > 2)
            with torch.no_grad():
                if tensor(w) is not None:
                    conv.weight.copy_(tensor(w))
                if len(ins) > 2 and tensor(ins[2]) is not None:
                    conv.bias.copy_(tensor(ins[2]))
            env[out_name] = graph.call_module(add_module(node, conv), (operand(ins[0]),))
        elif op in ("Gemm", "MatMul") and len(ins) >= 2 and ins[1].kind in ("weight", "constant") \
                and len(ins[0].shape) == 2:
            if op == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
                raise UnsupportedError(f"node '{node.name}' (Gemm): only transA=0, alpha=beta=1")
            w = tensor(ins[1])
            trans_b = op == "Gemm" and int(attrs.get("transB", 0)) == 1
            out_features, in_features = (ins[1].shape if trans_b else tuple(reversed(ins[1].shape)))
            bias = op == "Gemm" and len(ins) > 2
            lin = nn.Linear(in_features, out_features, bias=bias)
            with torch.no_grad():
                if w is not None:
                    lin.weight.copy_(w if trans_b else w.t())
                if bias and tensor(ins[2]) is not None:
                    lin.bias.copy_(tensor(ins[2]).reshape(-1))
            env[out_name] = graph.call_module(add_module(node, lin), (operand(ins[0]),))
        elif op == "BatchNormalization":
            c = ins[1].shape[0]
            bn = (nn.BatchNorm2d if len(ins[0].shape) == 4 else nn.BatchNorm1d)(c, eps=float(attrs.get("epsilon", 1e-5)))
            with torch.no_grad():
                for param, value in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), ins[1:5]):
                    if tensor(value) is not None:
                        param.copy_(tensor(value))
            env[out_name] = graph.call_module(add_module(node, bn), (operand(ins[0]),))
        elif op in ("Relu", "Sigmoid", "Tanh", "Identity", "Dropout"):
            fn = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}.get(op)
            env[out_name] = graph.call_function(fn, (operand(ins[0]),)) if fn else operand(ins[0])
        elif op == "Clip":
            lo = attrs.get("min", -np.inf) if len(ins) < 2 or ins[1].data is None else float(np.asarray(ins[1].data))
            hi = attrs.get("max", np.inf) if len(ins) < 3 or ins[2].data is None else float(np.asarray(ins[2].data))
            env[out_name] = graph.call_module(add_module(node, nn.Hardtanh(float(lo), float(hi))), (operand(ins[0]),))
        elif op in ("MaxPool", "AveragePool"):
            kernel = tuple(attrs["kernel_shape"])
            kwargs = dict(stride=tuple(attrs.get("strides", kernel)), padding=_conv_padding(node, attrs.get("pads"), kernel),
                          ceil_mode=bool(attrs.get("ceil_mode", 0)))
            if op == "MaxPool":
                pool = nn.MaxPool2d(kernel, **kwargs)
            else:
                pool = nn.AvgPool2d(kernel, count_include_pad=bool(attrs.get("count_include_pad", 0)), **kwargs)
            env[out_name] = graph.call_module(add_module(node, pool), (operand(ins[0]),))
        elif op == "GlobalAveragePool":
            env[out_name] = graph.call_module(add_module(node, nn.AdaptiveAvgPool2d(1)), (operand(ins[0]),))
        elif op in ("Add", "Mul", "Sub", "Div"):
            fn = {"Add": torch.add, "Mul": torch.mul, "Sub": torch.sub, "Div": torch.div}[op]
            env[out_name] = graph.call_function(fn, (operand(ins[0]), operand(ins[1])))
        elif op == "Concat":
            env[out_name] = graph.call_function(torch.cat, ([operand(v) for v in ins],), {"dim": int(attrs.get("axis", 0))})
        elif op == "Flatten":
            axis = int(attrs.get("axis", 1))
            if axis != 1:
                raise UnsupportedError(f"node '{node.name}' (Flatten): only axis=1")
            env[out_name] = graph.call_function(torch.flatten, (operand(ins[0]), 1))
        elif op == "Reshape":
            shape = tuple(int(d) for d in node.output_shape)
            if len(shape) == 2 and shape[0] == ins[0].shape[0]:
                env[out_name] = graph.call_function(torch.flatten, (operand(ins[0]), 1))
            else:
                env[out_name] = graph.call_function(torch.reshape, (operand(ins[0]), shape))
        else:
            raise UnsupportedError(f"node '{node.name}' ({op}): operator not supported by bricklab.soft.from_onnx")

    outs = [env[v.name] for v in model.outputs]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    return torch.fx.GraphModule(root, graph, class_name="OnnxModule")
