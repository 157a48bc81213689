# bricklab.zoo -- the "stripped weights" convention for ONNX models and its tools.
#
# Pure Python (numpy + onnx only) and self-contained on purpose: it does not import the
# rest of the bricklab package, so scripts and tests can load this file on its own.
"""Stripped-weights ONNX models: ``strip``, ``is_stripped``, ``materialize``.

bricklab analyses where the time of a model goes; for that it needs the graph, the shapes
and the data types of a model, but not the values of its weights.  The model zoo therefore
stores *stripped* ONNX files, which are tiny, and ``materialize`` turns them back into
ordinary runnable models filled with deterministic random weights.

The convention
--------------
* A *stripped* initializer keeps ``name``, ``data_type`` and ``dims`` and has NO data
  field: no ``raw_data``, no typed ``*_data`` field, no ``external_data``, and
  ``data_location`` DEFAULT.
* Only floating-point tensors (FLOAT, FLOAT16, BFLOAT16, DOUBLE) with more than 64
  elements are stripped.  Integer tensors and small tensors keep their values, because
  shape inference needs them (Reshape shapes, Resize scales, Slice starts, Pad pads, ...).
* The same rule applies to the ``value`` tensor of ``Constant`` nodes (also inside
  subgraphs of control-flow nodes).
* The model gets the ``metadata_props`` entry ``bricklab.weights`` = ``stripped``.

A stripped model is a valid protobuf and keeps every shape, so shape inference and cost
analysis work on it, but ``onnx.checker`` rejects it ("should contain one and only one
value field") and runtimes cannot execute it: ``materialize`` it first.

Materialization
---------------
``materialize(model, seed)`` fills every stripped tensor with values drawn from
``numpy.random.default_rng`` seeded with ``seed`` and a hash of the tensor's name (so each
tensor has its own stream and the result does not depend on tensor order):

* rank >= 2: normal with std ``1/sqrt(fan_in)``; ``fan_in = prod(dims[1:])``, except for
  the weight input of ``MatMul`` (and of ``Gemm`` without ``transB``) whose layout is
  ``[in, out]``, where ``fan_in = dims[-2]``;
* rank 1: small values around 0 (normal, std 0.02), except
  - BatchNorm variances (input 4 of ``BatchNormalization``, or a name containing
    ``running_var`` / ``variance``): uniform(0.5, 1.5), always positive;
  - normalization scales (input 1 of ``BatchNormalization``, ``LayerNormalization``,
    ``InstanceNormalization``, ``GroupNormalization``): uniform(0.5, 1.5).

It then removes the ``bricklab.weights`` marker.  The result passes ``onnx.checker`` and
runs in onnxruntime.

Command line::

    python -m bricklab.zoo strip IN.onnx OUT.onnx
    python -m bricklab.zoo materialize IN.onnx OUT.onnx [--seed S]
    python -m bricklab.zoo info IN.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto

__all__ = [
    "METADATA_KEY",
    "METADATA_VALUE",
    "STRIP_MIN_ELEMENTS",
    "NotAnOnnxModelError",
    "strip",
    "is_stripped",
    "stripped_tensors",
    "materialize",
    "load_model",
    "save_model",
    "strip_file",
    "materialize_file",
    "main",
]

#: metadata_props key/value that marks a stripped model.
METADATA_KEY = "bricklab.weights"
METADATA_VALUE = "stripped"

#: floating-point tensors with MORE than this many elements are stripped.
STRIP_MIN_ELEMENTS = 64

#: data types whose tensors may be stripped.
FLOAT_TYPES = frozenset(
    {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
)

# Every field of TensorProto that can hold values.
_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "double_data",
    "int32_data",
    "int64_data",
    "uint64_data",
    "string_data",
    "external_data",
)

# Models whose serialized size is above this are saved with external data (protobuf's
# hard limit for one message is 2 GiB).
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000


class NotAnOnnxModelError(ValueError):
    """Raised when a file exists but does not hold an ONNX model."""


# --------------------------------------------------------------------------------------
# Walking the tensors of a model
# --------------------------------------------------------------------------------------


def torch_module(entry: dict):
    """The PyTorch module (torchvision, random weights, eval mode) a MANIFEST.json entry was
    exported from; segmentation models return their "out" tensor. Imports torch on demand."""
    import torch
    import torchvision

    built = eval(entry["builder"], {"torchvision": torchvision})  # noqa: S307 (the project's own manifest)

    class OutOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return out["out"] if isinstance(out, dict) else out

    return OutOnly(built).eval()


def _iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Yield ``graph`` and, recursively, every subgraph held by node attributes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_graphs(g)


def _iter_tensors(model: onnx.ModelProto) -> Iterator[Tuple[str, TensorProto]]:
    """Yield ``(key, tensor)`` for every initializer and every Constant ``value`` tensor.

    ``key`` names the tensor as the graph sees it: the initializer's name, or the output
    name of the Constant node (the ``value`` tensor's own name is often empty).
    """
    for graph in _iter_graphs(model.graph):
        for init in graph.initializer:
            yield init.name, init
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        key = node.output[0] if node.output else attr.t.name
                        yield key, attr.t


def _numel(tensor: TensorProto) -> int:
    n = 1
    for d in tensor.dims:
        n *= int(d)
    return n


def _has_data(tensor: TensorProto) -> bool:
    """True when the tensor carries values (inline or in external data)."""
    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0:
        return True
    if tensor.HasField("raw_data"):
        return True
    return any(len(getattr(tensor, f)) > 0 for f in _DATA_FIELDS if f != "raw_data")


def _should_strip(tensor: TensorProto) -> bool:
    return tensor.data_type in FLOAT_TYPES and _numel(tensor) > STRIP_MIN_ELEMENTS


def _is_stripped_tensor(tensor: TensorProto) -> bool:
    """A floating-point tensor with elements but no data field at all."""
    return tensor.data_type in FLOAT_TYPES and _numel(tensor) > 0 and not _has_data(tensor)


def _clear_data(tensor: TensorProto) -> None:
    for f in _DATA_FIELDS:
        tensor.ClearField(f)
    tensor.data_location = TensorProto.DEFAULT


def _set_marker(model: onnx.ModelProto, present: bool) -> None:
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    if present:
        model.metadata_props.add(key=METADATA_KEY, value=METADATA_VALUE)


# --------------------------------------------------------------------------------------
# strip / is_stripped
# --------------------------------------------------------------------------------------


def strip(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a stripped copy of ``model`` (the argument is not modified).

    The model must hold its weights in memory: a model whose large tensors still point to
    external files can be stripped too (those tensors lose their reference), but a small
    tensor that is kept must not be external -- load such models with external data.
    """
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"strip() expects an onnx.ModelProto, got {type(model).__name__}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for key, tensor in _iter_tensors(out):
        if _should_strip(tensor):
            _clear_data(tensor)
        elif tensor.data_location == TensorProto.EXTERNAL:
            raise ValueError(
                f"tensor {key!r} is kept by strip() but its data is external and was not "
                "loaded; load the model with its external data first"
            )
    _set_marker(out, True)
    return out


def stripped_tensors(model: onnx.ModelProto) -> List[str]:
    """Names of the tensors of ``model`` that have no data (stripped)."""
    return [key for key, t in _iter_tensors(model) if _is_stripped_tensor(t)]


def is_stripped(model: onnx.ModelProto) -> bool:
    """True if ``model`` carries the ``bricklab.weights=stripped`` marker, or if any of its
    floating-point initializers / Constant values has no data (stripped by hand)."""
    for p in model.metadata_props:
        if p.key == METADATA_KEY and p.value == METADATA_VALUE:
            return True
    return any(_is_stripped_tensor(t) for _, t in _iter_tensors(model))


# --------------------------------------------------------------------------------------
# materialize
# --------------------------------------------------------------------------------------

_NORM_OPS = {"BatchNormalization", "LayerNormalization", "InstanceNormalization",
             "GroupNormalization"}


def _consumers(model: onnx.ModelProto) -> Dict[str, List[Tuple[onnx.NodeProto, int]]]:
    """Map tensor name -> list of (node, input index) that read it, over all graphs."""
    uses: Dict[str, List[Tuple[onnx.NodeProto, int]]] = {}
    for graph in _iter_graphs(model.graph):
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name:
                    uses.setdefault(name, []).append((node, i))
    return uses


def _gemm_trans_b(node: onnx.NodeProto) -> int:
    for a in node.attribute:
        if a.name == "transB":
            return int(a.i)
    return 0


def _rng_for(seed: int, key: str) -> np.random.Generator:
    """Independent, reproducible stream per (seed, tensor name)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:8], "little")])


def _values_for(key: str, dims: List[int], uses, seed: int) -> np.ndarray:
    """Random float64 values for a stripped tensor, following the module's rules."""
    rng = _rng_for(seed, key)
    n = int(np.prod(dims)) if dims else 1
    lname = key.lower()
    roles = {(node.op_type, idx) for node, idx in uses}
    rank = len(dims)

    if ("BatchNormalization", 4) in roles or "running_var" in lname or "variance" in lname:
        return rng.uniform(0.5, 1.5, size=n)
    if any(op in _NORM_OPS and idx == 1 for op, idx in roles):
        return rng.uniform(0.5, 1.5, size=n)
    if rank >= 2:
        fan_in = int(np.prod(dims[1:]))
        for node, idx in uses:
            if (node.op_type == "MatMul" and idx == 1) or (
                node.op_type == "Gemm" and idx == 1 and not _gemm_trans_b(node)
            ):
                fan_in = int(dims[-2])
                break
        return rng.standard_normal(n) / np.sqrt(max(fan_in, 1))
    return rng.normal(0.0, 0.02, size=n)


def _fill(tensor: TensorProto, values: np.ndarray) -> None:
    """Store ``values`` (float64, flat) into ``tensor`` as little-endian raw_data."""
    _clear_data(tensor)
    dt = tensor.data_type
    if dt == TensorProto.FLOAT:
        raw = values.astype("<f4").tobytes()
    elif dt == TensorProto.DOUBLE:
        raw = values.astype("<f8").tobytes()
    elif dt == TensorProto.FLOAT16:
        raw = values.astype("<f2").tobytes()
    elif dt == TensorProto.BFLOAT16:
        # bfloat16 = upper half of float32, rounded to nearest even.
        bits = values.astype("<f4").view("<u4").astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        raw = bits.astype("<u2").tobytes()
    else:  # pragma: no cover - _is_stripped_tensor only selects FLOAT_TYPES
        raise ValueError(f"cannot materialize data type {dt}")
    tensor.raw_data = raw


def materialize(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """Return a copy of ``model`` whose stripped tensors hold deterministic random values.

    Tensors that already carry data are left untouched, so materializing a model that was
    never stripped just returns an equal copy (minus the marker).
    """
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"materialize() expects an onnx.ModelProto, got {type(model).__name__}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    uses = _consumers(out)
    for key, tensor in _iter_tensors(out):
        if _is_stripped_tensor(tensor):
            _fill(tensor, _values_for(key, list(tensor.dims), uses.get(key, []), seed))
    _set_marker(out, False)
    return out


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def load_model(path: "str | os.PathLike[str]", load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX file with clear errors: FileNotFoundError if it does not exist,
    NotAnOnnxModelError (a ValueError) if it is not an ONNX model."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise NotAnOnnxModelError(f"{path}: is a directory, not an ONNX model file")
    try:
        model = onnx.load(path, load_external_data=load_external_data)
    except FileNotFoundError as e:  # an external data file is missing
        raise FileNotFoundError(f"{path}: external data not found: {e}") from e
    except Exception as e:  # protobuf DecodeError and friends
        raise NotAnOnnxModelError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from e
    # Random bytes sometimes parse as a protobuf message; a real model has an IR version,
    # at least one opset import and a graph.
    if model.ir_version <= 0 or not model.HasField("graph") or len(model.opset_import) == 0:
        raise NotAnOnnxModelError(
            f"{path}: not an ONNX model (no ir_version / opset_import / graph)"
        )
    return model


def save_model(model: onnx.ModelProto, path: "str | os.PathLike[str]") -> None:
    """Save ``model``; very large models (> ~1.8 GB) go to ``<name>.data`` beside it."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if model.ByteSize() > _EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, path)


def strip_file(src: "str | os.PathLike[str]", dst: "str | os.PathLike[str]") -> onnx.ModelProto:
    """Strip the ONNX file ``src`` (external data is read if present) and write ``dst``."""
    model = strip(load_model(src))
    save_model(model, dst)
    return model


def materialize_file(src: "str | os.PathLike[str]", dst: "str | os.PathLike[str]",
                     seed: int = 0) -> onnx.ModelProto:
    """Materialize the stripped ONNX file ``src`` with ``seed`` and write ``dst``."""
    model = materialize(load_model(src), seed=seed)
    save_model(model, dst)
    return model


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _cmd_info(path: str) -> None:
    model = load_model(path, load_external_data=False)
    names = stripped_tensors(model)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
    print(f"{path}: {os.path.getsize(path)} bytes, ir_version {model.ir_version}, "
          f"opsets {opsets}")
    print(f"  nodes: {len(model.graph.node)}, initializers: {len(model.graph.initializer)}")
    print(f"  stripped: {'yes' if is_stripped(model) else 'no'} "
          f"({len(names)} tensors without data)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bricklab.zoo",
        description="Strip the weights of ONNX models, or fill stripped models with "
                    "deterministic random weights (see the module docstring for the convention).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("strip", help="remove large floating-point weights from IN, write OUT")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p = sub.add_parser("materialize", help="fill the stripped weights of IN, write OUT")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p = sub.add_parser("info", help="tell whether IN is stripped")
    p.add_argument("input", metavar="IN")
    args = parser.parse_args(argv)

    try:
        if args.command == "strip":
            model = strip_file(args.input, args.output)
            print(f"stripped {len(stripped_tensors(model))} tensors: {args.input} -> "
                  f"{args.output} ({os.path.getsize(args.output)} bytes)")
        elif args.command == "materialize":
            src = load_model(args.input)
            if not is_stripped(src):
                print(f"note: {args.input} is not stripped; writing an unchanged copy",
                      file=sys.stderr)
            model = materialize(src, seed=args.seed)
            save_model(model, args.output)
            print(f"materialized {args.input} -> {args.output} (seed {args.seed}, "
                  f"{os.path.getsize(args.output)} bytes)")
        else:
            _cmd_info(args.input)
    except (OSError, ValueError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
