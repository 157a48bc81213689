"""Structure-aware fuzzing against ONNX Runtime: the case generator.

Byte mutations (tests/cpp/mutation_test.cpp) mostly make protobuf that does not parse. This
generator makes *valid protobuf with bad contents*: it takes the single-operator models of
op_cases.py (every operator of bricklab's table) and a few multi-operator graphs, applies one or
two structural mutations to each copy -- dimensions, attribute values and types, parameter
(initializer) shapes, element types, names, graph wiring, opsets, operator types -- and asks ONNX
Runtime (optimisations off, one thread) what it makes of each: it refuses the model, or it
computes outputs. The cases and ORT's verdicts go into one file that the replay program
(tests/cpp/structural_fuzz.cpp, built as bricklab_structural_fuzz and run under AddressSanitizer
and UndefinedBehaviorSanitizer in CI) feeds to bricklab:

* ORT refuses      -> bricklab must refuse (a bricklab::Error with a message);
* ORT computes     -> bricklab must compute the same outputs, or refuse with a reason;
* too big for ORT  -> (a mutation that makes some value larger than --ort-limit bytes) not run on
                      ORT; bricklab, run with a memory limit, must refuse or compute without a crash.

Where ORT computes, ONNX's own reference implementation (onnx.reference, shipped in the pinned
onnx wheel) runs the case too. Where the two references disagree, the reference's outputs are
stored as well, and bricklab may match either one: ORT departs from ONNX's definition in a few
corners (a reduction over an empty axis with keepdims drops the axis; BitShift by the bit width or
more keeps x86's masked shift count; float overflow in cubic Resize gives NaN where the
definition's arithmetic gives inf). The replay counts such cases and says so.

Nothing may crash, hang or raise anything but bricklab::Error. Usage:

    python tests/python/structural_fuzz.py --cases 20000 --seed 1 --out build-asan/fuzz-cases.bin
    build-asan/tests/bricklab_structural_fuzz build-asan/fuzz-cases.bin

File format (little-endian), after the magic b"BLSF2\\n", one record per case:
    u32 meta length, meta JSON (id, seed model, mutations, ORT verdict and error, tolerances,
    dims to bind), u64 model length, model bytes, u32 input count, inputs, u32 output count,
    ORT's outputs, u32 count, the ONNX reference's outputs (none unless ORT computed and the
    reference computed other values); each tensor: u32 name length, name, i32 ONNX element type, u32 rank,
    i64 dims, u64 byte count, raw bytes (C order).
"""
import argparse
import copy
import json
import math
import os
import struct
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from op_cases import CASES, TOLERANCES  # noqa: E402

MAGIC = b"BLSF2\n"
DEFAULT_TOL = (1e-4, 1e-5)

# Element types a mutation may switch to (ONNX TensorProto enums), with undefined and out-of-range
# values a hostile file could hold.
DTYPES = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT8,
          TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL, TensorProto.INT16,
          TensorProto.STRING, 0, 99]
NP_OF = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16,
         TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16,
         TensorProto.INT32: np.int32, TensorProto.INT64: np.int64, TensorProto.BOOL: np.bool_,
         TensorProto.UINT16: np.uint16, TensorProto.UINT32: np.uint32, TensorProto.UINT64: np.uint64}
ONNX_OF = {np.dtype(v): k for k, v in NP_OF.items()}
INT_VALUES = [0, -1, 1, 2, 3, 5, -2, 7, 1 << 31, (1 << 40), -(1 << 40), (1 << 62)]
FLOAT_VALUES = [0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), -float("inf"), 0.5, 3.0]
DIM_VALUES = [0, 1, 2, 3, 7, 1 << 31, 1 << 40, -3]
OPSETS = [1, 6, 7, 9, 11, 13, 17, 18, 21, 99]
SAME_ARITY = {
    1: ["Relu", "Sigmoid", "Tanh", "Exp", "Log", "Neg", "Abs", "Sqrt", "Softmax", "Identity", "Floor", "Not",
        "GlobalAveragePool", "Flatten", "Transpose", "ReduceMean", "Shape", "Size", "NonZero", "Cast"],
    2: ["Add", "Mul", "Sub", "Div", "MatMul", "Pow", "Equal", "And", "Greater", "PRelu", "Reshape", "Expand",
        "Gather", "Concat", "Max", "Mod", "Tile"],
    3: ["Conv", "Gemm", "Where", "Clip", "Slice", "Pad", "Range"],
}


# ---------------------------------------------------------------- seed models

def _multi_op_seeds():
    """A few graphs of several operators, as exporters write them (initializer weights)."""
    r = np.random.default_rng(7)
    seeds = []
    x = r.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = (r.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    b = r.standard_normal(4).astype(np.float32)
    scale, bias = r.uniform(0.5, 1.5, 4).astype(np.float32), r.standard_normal(4).astype(np.float32)
    mean, var = r.standard_normal(4).astype(np.float32) * 0.1, r.uniform(0.5, 1.5, 4).astype(np.float32)
    w2 = (r.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)
    fc = (r.standard_normal((4, 5)) * 0.3).astype(np.float32)
    fcb = r.standard_normal(5).astype(np.float32)
    shape = np.array([1, -1], np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-5, name="bn1"),
        helper.make_node("Relu", ["n"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Reshape", ["g", "shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], name="fc"),
    ]
    inits = {"w": w, "b": b, "s": scale, "bb": bias, "m": mean, "v": var, "w2": w2, "fc": fc, "fcb": fcb,
             "shape": shape}
    seeds.append(("multi/resblock", _model("resblock", nodes, {"x": x}, inits, ["y"]), {"x": x}, "Conv"))

    t = r.standard_normal((2, 5, 16)).astype(np.float32)
    wq = (r.standard_normal((16, 16)) * 0.2).astype(np.float32)
    gamma, beta = r.uniform(0.5, 1.5, 16).astype(np.float32), r.standard_normal(16).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["t", "wq"], ["q"], name="proj"),
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1], name="tr"),
        helper.make_node("MatMul", ["q", "qt"], ["att"], name="scores"),
        helper.make_node("Softmax", ["att"], ["sm"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["sm", "q"], ["ctx"], name="ctx"),
        helper.make_node("Add", ["ctx", "t"], ["res"], name="residual"),
        helper.make_node("LayerNormalization", ["res", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-5, name="ln"),
        helper.make_node("Erf", ["ln"], ["e"], name="erf"),
        helper.make_node("Mul", ["e", "ln"], ["y"], name="gate"),
    ]
    seeds.append(("multi/attention", _model("attention", nodes, {"t": t}, {"wq": wq, "gamma": gamma, "beta": beta},
                                             ["y"], opset=17), {"t": t}, "MatMul"))

    u = r.standard_normal((2, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["u"], ["sh"], name="shape"),
        helper.make_node("Gather", ["sh", "zero"], ["d0"], axis=0, name="gather"),
        helper.make_node("Unsqueeze", ["d0", "axes"], ["d0u"], name="unsq"),
        helper.make_node("Concat", ["d0u", "three", "two"], ["ns"], axis=0, name="concat"),
        helper.make_node("Reshape", ["u", "ns"], ["ur"], name="reshape"),
        helper.make_node("Slice", ["ur", "st", "en", "ax"], ["sl"], name="slice"),
        helper.make_node("ReduceSum", ["sl", "rax"], ["y"], keepdims=0, name="sum"),
    ]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "three": np.array([3], np.int64),
             "two": np.array([2], np.int64), "st": np.array([1], np.int64), "en": np.array([3], np.int64),
             "ax": np.array([1], np.int64), "rax": np.array([2], np.int64)}
    seeds.append(("multi/shape-chain", _model("shapechain", nodes, {"u": u}, inits, ["y"], opset=13), {"u": u},
                  "Reshape"))
    return seeds


def _model(name, nodes, feeds, inits, outputs, opset=13):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(k, ONNX_OF[v.dtype], v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model


def seed_models():
    """(label, model, feeds, op for the tolerance) for every op_cases variant and the multi-op graphs."""
    seeds = []
    for op in sorted(CASES):
        for model, feeds in CASES[op]():
            seeds.append((f"{op}/{model.graph.name}", model, feeds, op))
    return seeds + _multi_op_seeds()


# ---------------------------------------------------------------- mutations

def _values(m):
    """Every value name of the graph: inputs, initializers, node outputs."""
    g = m.graph
    names = [v.name for v in g.input] + [t.name for t in g.initializer]
    for n in g.node:
        names += [o for o in n.output if o]
    return list(dict.fromkeys(names))


def _tensor_types(m):
    """ValueInfos with a tensor type: graph inputs, outputs and value_info."""
    g = m.graph
    return [v for v in list(g.input) + list(g.output) + list(g.value_info) if v.type.HasField("tensor_type")]


def mut_dim(m, r):
    vis = [v for v in _tensor_types(m) if v.type.tensor_type.HasField("shape") and v.type.tensor_type.shape.dim]
    if not vis:
        return None
    v = vis[r.integers(len(vis))]
    dims = v.type.tensor_type.shape.dim
    i = int(r.integers(len(dims)))
    choice = r.integers(10)
    if choice == 0:
        dims[i].ClearField("dim_value")
        dims[i].dim_param = "N"
        return f"dim {v.name}[{i}] -> symbolic N"
    if choice == 1:
        dims[i].Clear()
        return f"dim {v.name}[{i}] -> unknown"
    if choice == 2:
        del v.type.tensor_type.shape.dim[i]
        return f"dim {v.name}[{i}] removed (rank {len(dims)})"
    if choice == 3:
        v.type.tensor_type.shape.dim.add().dim_value = int(r.choice([1, 2, 3]))
        return f"dim {v.name}: extra trailing dim"
    value = int(DIM_VALUES[r.integers(len(DIM_VALUES))]) if choice < 7 else int(max(dims[i].dim_value, 1) + 1)
    dims[i].dim_value = value
    return f"dim {v.name}[{i}] -> {value}"


def mut_attr_value(m, r):
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return None
    n = nodes[r.integers(len(nodes))]
    a = n.attribute[r.integers(len(n.attribute))]
    A = onnx.AttributeProto
    if a.type == A.INT:
        a.i = int(INT_VALUES[r.integers(len(INT_VALUES))]) if r.random() < 0.6 else a.i + int(r.choice([-1, 1]))
        return f"attr {n.op_type}.{a.name} -> {a.i}"
    if a.type == A.FLOAT:
        a.f = float(FLOAT_VALUES[r.integers(len(FLOAT_VALUES))])
        return f"attr {n.op_type}.{a.name} -> {a.f}"
    if a.type == A.INTS:
        c = r.integers(4)
        if c == 0 and a.ints:
            k = int(r.integers(len(a.ints)))
            a.ints[k] = int(INT_VALUES[r.integers(len(INT_VALUES))])
        elif c == 1 and a.ints:
            del a.ints[int(r.integers(len(a.ints)))]
        elif c == 2:
            a.ints.append(int(r.choice([0, 1, 2, -1])))
        else:
            del a.ints[:]
        return f"attr {n.op_type}.{a.name} -> {list(a.ints)}"
    if a.type == A.FLOATS:
        if a.floats and r.random() < 0.5:
            a.floats[int(r.integers(len(a.floats)))] = float(FLOAT_VALUES[r.integers(len(FLOAT_VALUES))])
        else:
            a.floats.append(1.5)
        return f"attr {n.op_type}.{a.name} -> {list(a.floats)}"
    if a.type == A.STRING:
        a.s = [b"", b"junk", b"NOTSET", b"SAME_UPPER", b"VALID", b"linear", b"nearest", b"cubic", b"reflect",
               b"edge", b"constant", b"wrap", b"ij->ii", b"...,ij", b"sum"][r.integers(15)]
        return f"attr {n.op_type}.{a.name} -> {a.s!r}"
    if a.type == A.TENSOR:
        t = a.t
        arr = numpy_helper.to_array(t)
        arr = np.full(arr.shape if r.random() < 0.5 else (int(r.integers(0, 4)),), float(r.choice([0, -1, 7, 1e30])))
        a.t.CopyFrom(numpy_helper.from_array(arr.astype(NP_OF.get(t.data_type, np.float32)), t.name))
        return f"attr {n.op_type}.{a.name} tensor -> shape {list(arr.shape)}"
    return None


def mut_attr_struct(m, r):
    """Remove an attribute, add an unknown or foreign one, or change its type."""
    n = m.graph.node[r.integers(len(m.graph.node))]
    c = r.integers(4)
    if c == 0 and n.attribute:
        a = n.attribute[int(r.integers(len(n.attribute)))]
        name = a.name
        n.attribute.remove(a)
        return f"attr {n.op_type}.{name} removed"
    if c == 1:
        name = str(r.choice(["axis", "perm", "kernel_shape", "strides", "pads", "alpha", "mode", "bogus", "to",
                             "keepdims", "group", "dilations", "auto_pad", "epsilon", "axes", "value"]))
        kind = r.integers(3)
        attr = (helper.make_attribute(name, int(r.choice([0, 1, 2, -1]))) if kind == 0 else
                helper.make_attribute(name, [1, 1]) if kind == 1 else helper.make_attribute(name, 0.5))
        for a in list(n.attribute):
            if a.name == name:
                n.attribute.remove(a)
        n.attribute.append(attr)
        return f"attr {n.op_type}.{name} added ({onnx.AttributeProto.AttributeType.Name(attr.type)})"
    if c == 2 and n.attribute:
        a = n.attribute[int(r.integers(len(n.attribute)))]
        A = onnx.AttributeProto
        old = A.AttributeType.Name(a.type)
        if a.type == A.INT:
            a.type, a.ints[:] = A.INTS, [a.i]
        elif a.type == A.INTS:
            a.type, a.i = A.INT, (a.ints[0] if a.ints else 0)
        elif a.type == A.FLOAT:
            a.type, a.i = A.INT, int(a.f) if math.isfinite(a.f) else 0
        else:
            a.type = A.FLOAT
        return f"attr {n.op_type}.{a.name} type {old} -> {A.AttributeType.Name(a.type)}"
    if c == 3 and n.attribute:
        a = n.attribute[int(r.integers(len(n.attribute)))]
        n.attribute.append(copy.deepcopy(a))
        return f"attr {n.op_type}.{a.name} duplicated"
    return None


def mut_param_shape(m, r):
    """An initializer's shape changed, with data of that size (a consistent tensor of the wrong shape)
    or with the old data (raw_data of the wrong length)."""
    inits = [t for t in m.graph.initializer if t.data_type in NP_OF]
    if not inits:
        return None
    t = inits[r.integers(len(inits))]
    arr = numpy_helper.to_array(t)
    shape = list(arr.shape)
    c = r.integers(5)
    if c == 0 and shape:
        k = int(r.integers(len(shape)))
        shape[k] = max(0, shape[k] + int(r.choice([-1, 1, 2])))
    elif c == 1 and shape:
        shape = shape[:-1]
    elif c == 2:
        shape = shape + [1]
    elif c == 3 and shape:
        k = int(r.integers(len(shape)))
        shape[k] = 0
    else:
        # Declared dims changed, payload kept: the byte count no longer matches the shape.
        if not t.dims:
            t.dims.append(2)
        else:
            t.dims[0] = t.dims[0] + 1
        if not t.raw_data:
            raw = numpy_helper.from_array(arr, t.name)
            t.ClearField("float_data"), t.ClearField("int64_data"), t.ClearField("int32_data")
            t.ClearField("double_data")
            t.raw_data = raw.raw_data
        return f"param {t.name}: dims {list(t.dims)} with {len(t.raw_data)} payload bytes"
    n = int(np.prod(shape)) if shape else 1
    flat = arr.reshape(-1)
    data = np.resize(flat, n) if flat.size else np.zeros(n, arr.dtype)
    t.CopyFrom(numpy_helper.from_array(data.reshape(shape).astype(arr.dtype), t.name))
    return f"param {t.name}: shape {list(arr.shape)} -> {shape}"


def mut_dtype(m, r):
    """An input's, initializer's or output's element type changed (initializer data converted)."""
    c = r.integers(3)
    new = int(DTYPES[r.integers(len(DTYPES))])
    if c == 0 and m.graph.initializer:
        t = m.graph.initializer[int(r.integers(len(m.graph.initializer)))]
        if new in NP_OF and t.data_type in NP_OF:
            arr = numpy_helper.to_array(t)
            with np.errstate(all="ignore"):
                t.CopyFrom(numpy_helper.from_array(arr.astype(NP_OF[new]), t.name))
        else:
            t.data_type = new
        return f"dtype param {t.name} -> {new}"
    vis = _tensor_types(m)
    if not vis:
        return None
    v = vis[r.integers(len(vis))]
    v.type.tensor_type.elem_type = new
    return f"dtype {v.name} -> {new}"


def mut_names(m, r):
    g = m.graph
    c = r.integers(7)
    values = _values(m)
    n = g.node[r.integers(len(g.node))]
    if c == 0 and len(g.input):
        g.input.append(copy.deepcopy(g.input[0]))
        if g.input[-1].type.tensor_type.shape.dim:
            g.input[-1].type.tensor_type.shape.dim[0].dim_value = 5
        return f"name: duplicate graph input {g.input[0].name}"
    if c == 1 and n.output:
        n.output[0] = values[r.integers(len(values))]
        return f"name: {n.op_type} output renamed to existing {n.output[0]}"
    if c == 2 and n.input:
        k = int(r.integers(len(n.input)))
        n.input[k] = ""
        return f"name: {n.op_type} input {k} emptied"
    if c == 3 and n.input:
        k = int(r.integers(len(n.input)))
        n.input[k] = "missing_value"
        return f"name: {n.op_type} input {k} -> missing_value"
    if c == 4 and g.output:
        g.output[0].name = "not_produced"
        return "name: graph output not produced"
    if c == 5:
        n.input.append(values[r.integers(len(values))])
        return f"name: {n.op_type} gets an extra input"
    if c == 6 and n.output:
        n.output.append(n.output[0])
        return f"name: {n.op_type} writes {n.output[0]} twice"
    return None


def mut_wiring(m, r):
    g = m.graph
    c = r.integers(5)
    n = g.node[r.integers(len(g.node))]
    if c == 0 and len(n.input) >= 2:
        i, j = r.choice(len(n.input), 2, replace=False)
        n.input[int(i)], n.input[int(j)] = n.input[int(j)], n.input[int(i)]
        return f"wiring: {n.op_type} inputs {i} and {j} swapped"
    if c == 1 and n.input and n.output:
        n.input[0] = n.output[0]
        return f"wiring: {n.op_type} reads its own output (cycle)"
    if c == 2 and len(g.node) >= 2:
        k = int(r.integers(len(g.node)))
        op = g.node[k].op_type
        del g.node[k]
        return f"wiring: node {op} deleted"
    if c == 3:
        g.node.append(copy.deepcopy(n))
        return f"wiring: {n.op_type} duplicated"
    if c == 4 and n.input:
        values = _values(m)
        k = int(r.integers(len(n.input)))
        n.input[k] = values[r.integers(len(values))]
        return f"wiring: {n.op_type} input {k} -> {n.input[k]}"
    if len(g.node) >= 2:
        nodes = list(g.node)
        r.shuffle(nodes)
        del g.node[:]
        g.node.extend(nodes)
        return "wiring: nodes out of topological order"
    return None


def mut_opset(m, r):
    c = r.integers(3)
    if c == 0:
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = int(OPSETS[r.integers(len(OPSETS))])
                return f"opset -> {o.version}"
    if c == 1:
        n = m.graph.node[r.integers(len(m.graph.node))]
        n.domain = str(r.choice(["com.microsoft", "bogus.domain", "ai.onnx.ml"]))
        return f"domain of {n.op_type} -> {n.domain}"
    m.ir_version = int(r.choice([0, 1, 3, 4, 7, 9, 10, 99]))
    return f"ir_version -> {m.ir_version}"


def mut_op_type(m, r):
    n = m.graph.node[r.integers(len(m.graph.node))]
    arity = len(n.input)
    pool = SAME_ARITY.get(arity, SAME_ARITY[1]) + ["NoSuchOp", "relu"]
    old = n.op_type
    n.op_type = str(pool[r.integers(len(pool))])
    return f"op {old} -> {n.op_type}"


def convert_float_type(model, feeds, to):
    """The whole model in another float type: every float32 input, output, initializer and
    Constant value, and Cast-to-float32, becomes `to` (float16 or float64). The element-type
    paths of every operator, compared with ORT where it computes them."""
    m = copy.deepcopy(model)
    dt = NP_OF[to]
    for vi in _tensor_types(m):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = to
    for t in m.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(dt), t.name))
    for n in m.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(dt), a.t.name))
            if n.op_type in ("Cast", "EyeLike", "RandomNormalLike") and a.name in ("to", "dtype") and a.i == TensorProto.FLOAT:
                a.i = to
    new_feeds = {k: (v.astype(dt) if v.dtype == np.float32 else v) for k, v in feeds.items()}
    return m, new_feeds, [f"all float32 -> {TensorProto.DataType.Name(to).lower()}"]


MUTATIONS = [(mut_dim, 3), (mut_attr_value, 4), (mut_attr_struct, 2), (mut_param_shape, 3), (mut_dtype, 3),
             (mut_names, 2), (mut_wiring, 2), (mut_opset, 1), (mut_op_type, 1)]


def mutate(model, r):
    m = copy.deepcopy(model)
    funcs = [f for f, _ in MUTATIONS]
    weights = np.array([w for _, w in MUTATIONS], float)
    done = []
    for _ in range(1 if r.random() < 0.7 else 2):
        for _attempt in range(5):
            f = funcs[r.choice(len(funcs), p=weights / weights.sum())]
            try:
                d = f(m, r)
            except (ValueError, TypeError, IndexError, KeyError):  # an earlier mutation made it unreadable
                d = None
            if d:
                done.append(d)
                break
    return m, done


# ---------------------------------------------------------------- feeds and ORT

def _dims_of(vi, k_dims):
    shape = []
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            shape.append(d.dim_value)
        elif d.HasField("dim_param"):
            shape.append(k_dims.setdefault(d.dim_param, 1 if i == 0 else 2))
        else:
            return None
    return shape


def make_feeds(m, original_feeds, r):
    """Feeds for the mutated model's runtime inputs: the seed's own values where the declaration is
    unchanged (they are in the operator's domain), random values of the declared type otherwise.
    None when some input cannot be fed (unknown shape, non-numeric or absurd size)."""
    inits = {t.name for t in m.graph.initializer}
    feeds, dims = {}, {}
    for vi in m.graph.input:
        if vi.name in inits or vi.name in feeds:
            continue
        shape = _dims_of(vi, dims)
        dt = NP_OF.get(vi.type.tensor_type.elem_type)
        if shape is None or dt is None or any(d < 0 for d in shape) or int(np.prod(shape, dtype=object)) > 1 << 20:
            return None, dims
        orig = original_feeds.get(vi.name)
        if orig is not None and list(orig.shape) == shape and orig.dtype == dt:
            feeds[vi.name] = orig
        elif dt == np.bool_:
            feeds[vi.name] = r.random(shape) < 0.5
        elif np.issubdtype(dt, np.integer):
            feeds[vi.name] = r.integers(0, 3, shape).astype(dt)
        else:
            feeds[vi.name] = r.uniform(0.1, 2.0, shape).astype(dt)
    return feeds, dims


def largest_value_bytes(m):
    """Bytes of the largest value ONNX's shape inference finds (0 when it finds none), to keep
    mutants that make huge tensors away from ORT (which would try to allocate them)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:
        inferred = m
    largest = 0
    for vi in _tensor_types(inferred):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        n = 1
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                n *= max(d.dim_value, 0)
        largest = max(largest, n * 8)
    for t in m.graph.initializer:
        n = 1
        for d in t.dims:
            n *= max(d, 0)
        largest = max(largest, n * 8)
    return largest


def ort_verdict(model_bytes, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(None, feeds)
        return "computed", "", dict(zip(names, outs))
    except Exception as e:  # ORT raises several exception types; all mean "refused"
        return "refused", str(e).splitlines()[0][:300] if str(e) else type(e).__name__, {}


# ---------------------------------------------------------------- file

def _tensor_record(name, arr):
    arr = np.array(arr, order="C", copy=True)  # (ascontiguousarray would make a scalar 1-D)
    et = ONNX_OF.get(arr.dtype)
    if et is None:
        raise ValueError(f"{name}: dtype {arr.dtype} has no ONNX element type here")
    nb = name.encode()
    data = arr.tobytes()
    return (struct.pack("<I", len(nb)) + nb + struct.pack("<iI", et, arr.ndim) +
            struct.pack(f"<{arr.ndim}q", *arr.shape) + struct.pack("<Q", len(data)) + data)


def write_case(f, meta, model_bytes, feeds, outputs, reference=None):
    mj = json.dumps(meta).encode()
    f.write(struct.pack("<I", len(mj)) + mj + struct.pack("<Q", len(model_bytes)) + model_bytes)
    for group in (feeds, outputs, reference or {}):
        f.write(struct.pack("<I", len(group)))
        for k, v in group.items():
            f.write(_tensor_record(k, v))


def _close(a, b, rtol, atol):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not np.array_equal(np.isnan(a64), np.isnan(b64)):
        return False
    ok = ~np.isnan(a64)
    return bool(np.all(np.isclose(a64[ok], b64[ok], rtol=rtol, atol=atol)))


def reference_outputs(model_bytes, feeds, ort_outputs, rtol, atol):
    """ONNX's reference implementation's outputs where they differ from ORT's, else {}. {} too
    when the reference cannot run the model (it lacks some operators and attribute forms)."""
    import warnings
    from onnx.reference import ReferenceEvaluator
    try:
        m = onnx.ModelProto()
        m.ParseFromString(model_bytes)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            sess = ReferenceEvaluator(m)
            outs = sess.run(None, feeds)
        names = list(sess.output_names)
    except Exception:
        return {}
    ref = {}
    for name, v in zip(names, outs):
        v = np.asarray(v)
        if name not in ort_outputs or v.dtype not in ONNX_OF:
            return {}
        ref[name] = v
    if len(ref) != len(ort_outputs):
        return {}
    if rtol is not None and all(_close(ref[k], ort_outputs[k], 10 * rtol, 10 * atol) for k in ref):
        return {}
    return ref


def _evaluate(model_bytes, feeds, ort_limit):
    """ORT's verdict on one case (runs in the worker process)."""
    m = onnx.ModelProto()
    m.ParseFromString(model_bytes)
    if largest_value_bytes(m) > ort_limit:
        return "too big", "", {}
    verdict, err, outs = ort_verdict(model_bytes, feeds)
    outputs = {k: v for k, v in outs.items() if isinstance(v, np.ndarray) and v.dtype in ONNX_OF}
    if verdict == "computed" and len(outputs) != len(outs):
        return "unfeedable", "ORT output of a type the replay cannot compare", {}
    return verdict, err, outputs


def _worker(conn, ort_limit):
    while True:
        job = conn.recv()
        if job is None:
            return
        model_bytes, feeds, rtol, atol = job
        verdict = _evaluate(model_bytes, feeds, ort_limit)
        conn.send(verdict)
        # Second answer: ONNX's reference, where ORT computed (the parent may give up waiting).
        conn.send(reference_outputs(model_bytes, feeds, verdict[2], rtol, atol) if verdict[0] == "computed" else {})


class _Oracle:
    """ONNX Runtime (and ONNX's shape inference) in a child process: some mutants crash both (a
    ConvTranspose weight of rank 1 makes ONNX's shape inference read past the dims), and a crash
    or hang there must cost one case, not the run. Such cases are recorded as 'ORT crashed'."""

    def __init__(self, ort_limit, timeout_s=30.0, reference_timeout_s=10.0):
        import multiprocessing as mp
        self._ctx = mp.get_context("spawn")
        self._limit, self._timeout, self._ref_timeout = ort_limit, timeout_s, reference_timeout_s
        self._start()

    def _start(self):
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_worker, args=(child, self._limit), daemon=True)
        self._proc.start()
        child.close()

    def __call__(self, model_bytes, feeds, rtol, atol):
        """(verdict, ORT's error, ORT's outputs, the reference's outputs where they differ)."""
        try:
            self._conn.send((model_bytes, feeds, rtol, atol))
            if self._conn.poll(self._timeout):
                verdict = self._conn.recv()
                try:  # the reference is slow on some mutants, or dies on them: then ORT's answer stands alone
                    if self._conn.poll(self._ref_timeout):
                        return (*verdict, self._conn.recv())
                except (EOFError, ConnectionError, OSError):
                    pass
                self._restart()
                return (*verdict, {})
            what = "ORT hung"
        except (EOFError, ConnectionError, OSError):
            what = "ORT crashed"
        code = self._restart()
        return ("crashed", f"{what} (exit {code})", {}, {})

    def _restart(self):
        self._proc.kill()
        self._proc.join()
        code = self._proc.exitcode
        self._start()
        return code

    def close(self):
        try:
            self._conn.send(None)
        except (ConnectionError, OSError):
            pass
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()


def generate(n_cases, seed, out_path, ort_limit, progress=True):
    r = np.random.default_rng(seed)
    seeds = seed_models()
    counts = {"computed": 0, "refused": 0, "too big": 0, "unfeedable": 0, "crashed": 0, "reference differs": 0}
    start = time.monotonic()
    oracle = _Oracle(ort_limit)
    try:
        with open(out_path, "wb") as f:
            f.write(MAGIC)
            # The seeds as they are, then each in float16 and in float64, then random mutants.
            n_fixed = 3 * len(seeds)
            for i in range(n_cases):
                label, model, orig_feeds, op = seeds[i % len(seeds)] if i < n_fixed else seeds[r.integers(len(seeds))]
                rtol, atol = TOLERANCES.get(op, DEFAULT_TOL)
                if i < len(seeds):
                    mutant, mutations = model, []
                elif i < n_fixed:
                    to = TensorProto.FLOAT16 if i < 2 * len(seeds) else TensorProto.DOUBLE
                    mutant, orig_feeds, mutations = convert_float_type(model, orig_feeds, to)
                    if to == TensorProto.FLOAT16:  # 11 bits of mantissa; ORT and bricklab round at other steps
                        rtol, atol = max(rtol, 1e-2), max(atol, 1e-2)
                else:
                    mutant, mutations = mutate(model, r)
                feeds, dims = make_feeds(mutant, orig_feeds, r)
                model_bytes = mutant.SerializeToString()
                meta = {"id": i, "seed": label, "mutations": mutations, "dims": dims, "rtol": rtol, "atol": atol}
                reference = {}
                if feeds is None:
                    verdict, err, outputs, feeds = "unfeedable", "", {}, {}
                else:
                    verdict, err, outputs, reference = oracle(model_bytes, feeds, rtol, atol)
                meta["ort"], meta["ort_error"] = verdict, err
                counts[verdict] += 1
                counts["reference differs"] += bool(reference)
                write_case(f, meta, model_bytes, feeds, outputs, reference)
                if progress and (i + 1) % 2000 == 0:
                    print(f"[fuzz] {i + 1}/{n_cases} cases, {time.monotonic() - start:.0f} s", file=sys.stderr)
    finally:
        oracle.close()
    return counts, len(seeds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=20000, help="number of cases (default 20000; the first are the "
                   "seeds as they are, then in float16, then in float64)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", required=True, help="case file to write")
    p.add_argument("--ort-limit", type=int, default=64 << 20,
                   help="mutants with a value above this many bytes are not run on ORT (default 64 MiB)")
    a = p.parse_args(argv)
    if a.cases < 1:
        p.error("--cases must be at least 1")
    start = time.monotonic()
    counts, n_seeds = generate(a.cases, a.seed, a.out, a.ort_limit)
    print(f"[fuzz] {a.cases} cases from {n_seeds} seed models (seed {a.seed}) in {time.monotonic() - start:.0f} s: "
          + ", ".join(f"ORT {k}: {v}" for k, v in counts.items() if k != "reference differs")
          + f"; ONNX's reference differs from ORT on {counts['reference differs']}", file=sys.stderr)


if __name__ == "__main__":
    main()
