"""Generated single-operator ONNX cases for test_op_coverage.py.

CASES maps an ONNX op_type to a function returning a list of (model, inputs) pairs; each pair is
one variant, named by its graph's name. Inputs are seeded so every run sees the same numbers, and
kept inside the operator's domain (positive for Log, no ties for ArgMax, ...). Weights are
initializers, as in exported models.
"""
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, F64, I64, I32, U8, BOOL = np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_

# Variants with this name prefix are also run with threads=2: tensors big enough (64x1000) for
# oneDNN and bricklab's own loops to split the work.
LARGE = "large"
LARGE_SHAPE = (64, 1000)

# Looser tolerances than the default rtol=1e-4, atol=1e-5, and why.
# Transcendental functions: oneDNN evaluates them with polynomial approximations, not libm.
_TRANSCENDENTAL = (5e-4, 1e-5)
# Products and sums of tens of terms: the blocked kernels add in another order than ORT.
_ACCUMULATING = (1e-4, 1e-4)
TOLERANCES = {
    **{op: _TRANSCENDENTAL for op in (
        "Exp", "Log", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
        "Atanh", "Sigmoid", "Tanh", "Softplus", "Elu", "Selu", "Celu", "Pow", "LRN", "ReduceLogSumExp",
        "ReduceLogSum", "ReduceProd", "LpPool", "GlobalLpPool")},
    **{op: _ACCUMULATING for op in (
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "Resize", "Upsample", "CumSum",
        "LayerNormalization", "InstanceNormalization", "MeanVarianceNormalization", "BatchNormalization",
        "LpNormalization", "ReduceSum", "ReduceMean", "ReduceL2", "ReduceL1", "ReduceSumSquare", "AveragePool")},
}

# Operators no case can exercise: bricklab reads opsets 7..17 only.
UNTESTABLE = {
    "Gelu": "Gelu exists from opset 20; bricklab reads opsets 7..17",
    "Mish": "Mish exists from opset 18; bricklab reads opsets 7..17",
}

_ONNX_TYPE = {
    np.dtype(F32): TensorProto.FLOAT, np.dtype(F64): TensorProto.DOUBLE, np.dtype(I64): TensorProto.INT64,
    np.dtype(I32): TensorProto.INT32, np.dtype(U8): TensorProto.UINT8, np.dtype(BOOL): TensorProto.BOOL,
}


def _rng(*key):
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def build(variant, nodes, feeds, outputs=None, inits=None, opset=17):
    """A model named `variant`: feeds are graph inputs (name -> array), inits initializers,
    outputs name -> numpy dtype (default: one output 'y' of the first feed's dtype)."""
    if outputs is None:
        outputs = {"y": next(iter(feeds.values())).dtype}
    graph = helper.make_graph(
        nodes, variant,
        [helper.make_tensor_value_info(k, _ONNX_TYPE[v.dtype], v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info(k, _ONNX_TYPE[np.dtype(t)], None) for k, t in outputs.items()],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    # Declared output shapes, as exporters write them (the full checker wants them): ONNX's own
    # inference. Intermediate value_info is left out so bricklab infers those shapes itself.
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model, feeds


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


def uniform(r, shape, low=-3.0, high=3.0, dtype=F32):
    return r.uniform(low, high, shape).astype(dtype)


def away_from_zero(r, shape, dtype=F32):
    return (np.where(r.random(shape) < 0.5, -1, 1) * r.uniform(0.5, 3.0, shape)).astype(dtype)


def distinct(r, shape, dtype=F32):
    """Values without ties (for ArgMax, Hardmax, MaxPool, sorting-like ops)."""
    n = int(np.prod(shape))
    return ((r.permutation(n) - n / 2) / 7.0).reshape(shape).astype(dtype)


# ---------------------------------------------------------------- elementwise

def unary(op, gen=uniform, out=None, opset=17, attr_variants=None, large=False, float64=None, float64_default=False):
    """Unary op on a (2,3,4,5) tensor, one variant per attribute set; optional 64x1000 and float64
    (its attributes) variants. `out`: the output dtype when it is not the input's."""
    def cases():
        r = _rng(op)
        outputs = {"y": out} if out is not None else None
        res = []
        for name, attrs in (attr_variants or {"default": {}}).items():
            res.append(build(name, [node(op, ["x"], **attrs)], {"x": gen(r, (2, 3, 4, 5))}, outputs, opset=opset))
        if large:
            res.append(build(LARGE, [node(op, ["x"])], {"x": gen(r, LARGE_SHAPE)}, outputs, opset=opset))
        if float64 is not None:
            res.append(build("float64", [node(op, ["x"], **float64)], {"x": gen(r, (3, 4, 5), dtype=F64)}, outputs, opset=opset))
        if float64_default:  # the table's attribute defaults hold for every element type
            res.append(build("float64-default", [node(op, ["x"])], {"x": gen(r, (3, 4, 5), dtype=F64)}, outputs, opset=opset))
        return res
    return cases


def binary(op, gen_a=uniform, gen_b=None, out=None, attrs=None, opset=17, large=False, float64=False, dtype=F32):
    """Binary broadcasting op: same shapes, broadcasting both ways ((4,1,6) with (5,1)), a
    constant (initializer) right-hand side, a scalar constant, and optionally 64x1000 and float64."""
    gen_b = gen_b or gen_a
    attrs = attrs or {}

    def cases():
        r = _rng(op)
        outputs = {"y": out} if out is not None else None
        n = lambda: node(op, ["a", "b"], **attrs)  # noqa: E731
        res = [
            build("same-shape", [n()], {"a": gen_a(r, (3, 4, 5), dtype=dtype), "b": gen_b(r, (3, 4, 5), dtype=dtype)}, outputs, opset=opset),
            build("broadcast-both", [n()], {"a": gen_a(r, (4, 1, 6), dtype=dtype), "b": gen_b(r, (5, 1), dtype=dtype)}, outputs, opset=opset),
            build("constant-rhs", [n()], {"a": gen_a(r, (2, 3, 4, 6), dtype=dtype)}, outputs,
                  inits={"b": gen_b(r, (6,), dtype=dtype)}, opset=opset),
            build("scalar-constant-rhs", [n()], {"a": gen_a(r, (2, 3, 4, 6), dtype=dtype)}, outputs,
                  inits={"b": gen_b(r, (), dtype=dtype)}, opset=opset),
        ]
        if large:
            res.append(build(LARGE, [n()], {"a": gen_a(r, LARGE_SHAPE, dtype=dtype), "b": gen_b(r, (LARGE_SHAPE[1],), dtype=dtype)},
                             outputs, opset=opset))
        if float64:
            res.append(build("float64", [n()], {"a": gen_a(r, (4, 1, 6), dtype=F64), "b": gen_b(r, (5, 1), dtype=F64)}, opset=opset))
        return res
    return cases


def variadic(op, float64=False):
    """Sum/Mean/Max/Min with 1, 2 and 3 inputs, broadcasting among them."""
    def cases():
        r = _rng(op)
        ins = lambda k: node(op, [f"x{i}" for i in range(k)])  # noqa: E731
        res = [
            build("1input", [ins(1)], {"x0": uniform(r, (2, 3, 4, 5))}),
            build("2inputs-same-shape", [ins(2)], {"x0": uniform(r, (3, 4, 5)), "x1": uniform(r, (3, 4, 5))}),
            build("2inputs-broadcast-both", [ins(2)], {"x0": uniform(r, (4, 1, 6)), "x1": uniform(r, (5, 1))}),
            build("3inputs-broadcast", [ins(3)],
                  {"x0": uniform(r, (2, 3, 4, 5)), "x1": uniform(r, (3, 1, 5)), "x2": uniform(r, (5,))}),
            build("2inputs-one-constant", [ins(2)], {"x0": uniform(r, (2, 3, 4, 5))}, inits={"x1": uniform(r, (4, 5))}),
            build(LARGE, [ins(3)], {"x0": uniform(r, LARGE_SHAPE), "x1": uniform(r, LARGE_SHAPE), "x2": uniform(r, (LARGE_SHAPE[1],))}),
        ]
        if float64:
            res.append(build("float64-3inputs-broadcast", [ins(3)],
                             {"x0": uniform(r, (2, 3, 4, 5), dtype=F64), "x1": uniform(r, (3, 1, 5), dtype=F64),
                              "x2": uniform(r, (5,), dtype=F64)}))
        return res
    return cases


def _positive(low, high):
    return lambda r, shape, dtype=F32: uniform(r, shape, low, high, dtype)


def _small_ints(r, shape, dtype=F32):
    return r.integers(-3, 4, shape).astype(dtype)


def _bools(r, shape, dtype=BOOL):
    return r.random(shape) < 0.5


def _with_zeros(r, shape, dtype=F32):
    x = uniform(r, shape, dtype=dtype)
    x[r.random(shape) < 0.2] = 0
    return x


def _with_specials(r, shape, dtype=F32):
    x = uniform(r, shape, dtype=dtype).ravel()
    x[::7], x[3::11], x[5::13] = np.inf, -np.inf, np.nan
    return x.reshape(shape)


CASES = {}

for _op, _gen, _kw in [
    ("Abs", uniform, {"large": True}), ("Neg", uniform, {}), ("Reciprocal", away_from_zero, {}),
    ("Sqrt", _positive(0.01, 9.0), {}), ("Exp", _positive(-4.0, 4.0), {"large": True}), ("Log", _positive(0.01, 9.0), {}),
    ("Floor", _positive(-5.0, 5.0), {}), ("Ceil", _positive(-5.0, 5.0), {}), ("Sign", _with_zeros, {}),
    ("Erf", uniform, {"large": True}), ("Sin", _positive(-6.0, 6.0), {}), ("Cos", _positive(-6.0, 6.0), {}),
    ("Tan", _positive(-1.3, 1.3), {}), ("Asin", _positive(-0.95, 0.95), {}), ("Acos", _positive(-0.95, 0.95), {}),
    ("Atan", uniform, {}), ("Sinh", uniform, {}), ("Cosh", uniform, {}), ("Asinh", uniform, {}),
    ("Acosh", _positive(1.05, 6.0), {}), ("Atanh", _positive(-0.95, 0.95), {}),
    ("Relu", uniform, {"large": True, "float64": {}}),
    ("Sigmoid", _positive(-6.0, 6.0), {"large": True}), ("Tanh", uniform, {"large": True}),
    ("Softplus", _positive(-5.0, 5.0), {}), ("Softsign", uniform, {}), ("HardSwish", _positive(-5.0, 5.0), {}),
    ("LeakyRelu", uniform, {"attr_variants": {"default-alpha": {}, "alpha0.3": {"alpha": 0.3}}, "float64": {"alpha": 0.3}, "float64_default": True}),
    ("Elu", uniform, {"attr_variants": {"default-alpha": {}, "alpha0.7": {"alpha": 0.7}}}),
    ("Selu", uniform, {"attr_variants": {"default": {}, "alpha1.5-gamma1.1": {"alpha": 1.5, "gamma": 1.1}}}),
    ("HardSigmoid", _positive(-5.0, 5.0), {"attr_variants": {"default": {}, "alpha0.3-beta0.4": {"alpha": 0.3, "beta": 0.4}}}),
    ("Celu", uniform, {"attr_variants": {"default-alpha": {}, "alpha0.8": {"alpha": 0.8}}}),
    ("ThresholdedRelu", uniform, {"attr_variants": {"default-alpha": {}, "alpha0.5": {"alpha": 0.5}}}),
    ("Shrink", uniform, {"attr_variants": {"default": {}, "bias0.2-lambd0.6": {"bias": 0.2, "lambd": 0.6}}}),
    ("IsNaN", _with_specials, {"out": BOOL}),
]:
    CASES[_op] = unary(_op, _gen, **_kw)


def _not():
    r = _rng("Not")
    return [build("bool", [node("Not", ["x"])], {"x": _bools(r, (2, 3, 4, 5))})]


def _isinf():
    r = _rng("IsInf")
    x = _with_specials(r, (2, 3, 4, 5))
    return [build("default", [node("IsInf", ["x"])], {"x": x}, {"y": BOOL}),
            build("positive-only", [node("IsInf", ["x"], detect_negative=0)], {"x": x}, {"y": BOOL}),
            build("negative-only", [node("IsInf", ["x"], detect_positive=0)], {"x": x}, {"y": BOOL})]


def _round():
    r = _rng("Round")
    halves = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, -4.5, 0.0, -0.0], F32)
    return [build("default", [node("Round", ["x"])], {"x": uniform(r, (2, 3, 4, 5), -5.0, 5.0)}),
            build("halves-to-even", [node("Round", ["x"])], {"x": halves.reshape(3, 4)})]


CASES.update({"Not": _not, "IsInf": _isinf, "Round": _round})


def _prelu():
    r = _rng("PRelu")
    x = uniform(r, (2, 3, 4, 5))
    return [build("per-channel-slope", [node("PRelu", ["x", "s"])], {"x": x}, inits={"s": uniform(r, (3, 1, 1), 0.0, 0.5)}),
            build("scalar-slope", [node("PRelu", ["x", "s"])], {"x": x}, inits={"s": np.array([0.25], F32)}),
            build("slope-input", [node("PRelu", ["x", "s"])], {"x": x, "s": uniform(r, (4, 5), 0.0, 0.5)})]


def _clip():
    r = _rng("Clip")
    x = uniform(r, (2, 3, 4, 5))
    lo, hi = np.array(-1.2, F32), np.array(0.7, F32)
    return [build("min-max", [node("Clip", ["x", "lo", "hi"])], {"x": x}, inits={"lo": lo, "hi": hi}),
            build("min-only", [node("Clip", ["x", "lo"])], {"x": x}, inits={"lo": lo}),
            build("max-only", [node("Clip", ["x", "", "hi"])], {"x": x}, inits={"hi": hi}),
            build("relu6", [node("Clip", ["x", "lo", "hi"])], {"x": x * 4}, inits={"lo": np.array(0, F32), "hi": np.array(6, F32)}),
            build("attrs-opset9", [node("Clip", ["x"], min=-1.2, max=0.7)], {"x": x}, opset=9)]


def _cast():
    r = _rng("Cast")
    x = uniform(r, (2, 3, 4, 5), -100.0, 100.0)
    to = lambda t: node("Cast", ["x"], to=t)  # noqa: E731
    return [
        build("float32-to-int64", [to(TensorProto.INT64)], {"x": x}, {"y": I64}),
        build("int64-to-float32", [to(TensorProto.FLOAT)], {"x": r.integers(-1000, 1000, (2, 3, 4, 5))}, {"y": F32}),
        build("float32-to-int32", [to(TensorProto.INT32)], {"x": x}, {"y": I32}),
        build("float32-to-float64", [to(TensorProto.DOUBLE)], {"x": x}, {"y": F64}),
        build("float64-to-float32", [to(TensorProto.FLOAT)], {"x": x.astype(F64) / 3}, {"y": F32}),
        build("float32-to-bool", [to(TensorProto.BOOL)], {"x": _with_zeros(r, (2, 3, 4, 5))}, {"y": BOOL}),
        build("bool-to-float32", [to(TensorProto.FLOAT)], {"x": _bools(r, (2, 3, 4, 5))}, {"y": F32}),
        build("float32-to-uint8", [to(TensorProto.UINT8)], {"x": uniform(r, (2, 3, 4, 5), 0.0, 255.0)}, {"y": U8}),
        build(LARGE, [to(TensorProto.INT64)], {"x": uniform(r, LARGE_SHAPE, -100.0, 100.0)}, {"y": I64}),
    ]


CASES.update({"PRelu": _prelu, "Clip": _clip, "Cast": _cast})

for _op, _kw in [
    ("Add", {"large": True, "float64": True}), ("Sub", {}), ("Mul", {"large": True, "float64": True}),
    ("Div", {"gen_b": away_from_zero, "large": True}),
    ("Pow", {"gen_a": _positive(0.2, 3.0), "gen_b": _positive(-2.0, 2.0)}),
    ("Equal", {"gen_a": _small_ints, "out": BOOL}), ("Less", {"gen_a": _small_ints, "out": BOOL}),
    ("Greater", {"gen_a": _small_ints, "out": BOOL}), ("LessOrEqual", {"gen_a": _small_ints, "out": BOOL}),
    ("GreaterOrEqual", {"gen_a": _small_ints, "out": BOOL}),
    ("And", {"gen_a": _bools, "dtype": BOOL}), ("Or", {"gen_a": _bools, "dtype": BOOL}), ("Xor", {"gen_a": _bools, "dtype": BOOL}),
]:
    CASES[_op] = binary(_op, **_kw)

for _op in ("Sum", "Mean", "Max", "Min"):
    CASES[_op] = variadic(_op, float64=_op == "Sum")


def _with_extra(op, extra):
    """The generic variants of `op` plus the ones `extra()` returns."""
    base = CASES[op]
    return lambda: base() + extra()


def _pow_extra():
    r = _rng("Pow", "extra")
    x = uniform(r, (2, 3, 4, 5))
    return [build("square-constant", [node("Pow", ["a", "b"])], {"a": x}, inits={"b": np.array(2.0, F32)}),
            build("sqrt-constant", [node("Pow", ["a", "b"])], {"a": np.abs(x) + F32(0.1)}, inits={"b": np.array(0.5, F32)}),
            build("integer-exponent-negative-base", [node("Pow", ["a", "b"])], {"a": x, "b": _small_ints(r, (5,))})]


def _mod():
    r = _rng("Mod")
    fa = uniform(r, (3, 4, 5), -10.0, 10.0)
    fb = away_from_zero(r, (4, 5)) * F32(1.7)
    ia = r.integers(-50, 50, (3, 4, 5))
    ib = r.integers(1, 9, (4, 5)) * np.where(r.random((4, 5)) < 0.5, -1, 1)
    return [build("float-fmod", [node("Mod", ["a", "b"], fmod=1)], {"a": fa, "b": fb}),
            build("int64-python-sign", [node("Mod", ["a", "b"])], {"a": ia, "b": ib}),
            build("int64-fmod", [node("Mod", ["a", "b"], fmod=1)], {"a": ia, "b": ib}),
            build("int64-broadcast-both", [node("Mod", ["a", "b"])], {"a": r.integers(-50, 50, (4, 1, 6)), "b": r.integers(1, 9, (5, 1))})]


def _equal_extra():
    r = _rng("Equal", "int64")
    return [build("int64", [node("Equal", ["a", "b"])], {"a": r.integers(-2, 3, (4, 1, 6)), "b": r.integers(-2, 3, (5, 1))}, {"y": BOOL})]


def _bitshift():
    r = _rng("BitShift")
    x, s = r.integers(0, 256, (3, 4, 5)).astype(U8), r.integers(0, 8, (5,)).astype(U8)
    return [build("uint8-left", [node("BitShift", ["a", "b"], direction="LEFT")], {"a": x, "b": s}),
            build("uint8-right", [node("BitShift", ["a", "b"], direction="RIGHT")], {"a": x, "b": s})]


def _where():
    r = _rng("Where")
    return [
        build("broadcast-three-ways", [node("Where", ["c", "a", "b"])],
              {"c": _bools(r, (3, 1, 5)), "a": uniform(r, (1, 4, 5)), "b": uniform(r, (3, 4, 1))}, {"y": F32}),
        build("masked-fill-constant", [node("Where", ["c", "a", "b"])],
              {"c": _bools(r, (2, 4, 5)), "a": uniform(r, (2, 4, 5))}, {"y": F32}, inits={"b": np.array(-1e9, F32)}),
        build("int64-values", [node("Where", ["c", "a", "b"])],
              {"c": _bools(r, (4, 5)), "a": r.integers(-9, 9, (4, 5)), "b": r.integers(-9, 9, (5,))}, {"y": I64}),
        build(LARGE, [node("Where", ["c", "a", "b"])],
              {"c": _bools(r, LARGE_SHAPE), "a": uniform(r, LARGE_SHAPE), "b": uniform(r, (LARGE_SHAPE[1],))}, {"y": F32}),
    ]


CASES.update({"Pow": _with_extra("Pow", _pow_extra), "Mod": _mod, "Equal": _with_extra("Equal", _equal_extra),
              "BitShift": _bitshift, "Where": _where})


# ---------------------------------------------------------------- compute

def _gemm():
    r = _rng("Gemm")
    a, b, c = uniform(r, (8, 16)), uniform(r, (12, 16)), uniform(r, (12,))
    g = lambda **kw: node("Gemm", ["a", "b", "c"], **kw)  # noqa: E731
    return [
        build("transB-alpha-beta", [g(transB=1, alpha=0.5, beta=2.0)], {"a": a}, inits={"b": b, "c": c}),
        build("transA", [g(transA=1)], {"a": a.T.copy()}, inits={"b": b.T.copy(), "c": c}),
        build("bias-column", [g(transB=1)], {"a": a}, inits={"b": b, "c": uniform(r, (8, 1))}),
        build("no-bias", [node("Gemm", ["a", "b"], transB=1)], {"a": a}, inits={"b": b}),
        build("both-inputs", [node("Gemm", ["a", "b"])], {"a": a, "b": b.T.copy()}),
    ]


def _matmul():
    r = _rng("MatMul")
    return [
        build("constant-weight", [node("MatMul", ["a", "b"])], {"a": uniform(r, (2, 3, 8, 16))}, inits={"b": uniform(r, (16, 12))}),
        build("batched-broadcast", [node("MatMul", ["a", "b"])], {"a": uniform(r, (2, 1, 8, 16)), "b": uniform(r, (3, 16, 12))}),
        build("1d-rhs", [node("MatMul", ["a", "b"])], {"a": uniform(r, (4, 8, 16)), "b": uniform(r, (16,))}),
        build("1d-lhs", [node("MatMul", ["a", "b"])], {"a": uniform(r, (16,)), "b": uniform(r, (3, 16, 12))}),
    ]


def _einsum():
    r = _rng("Einsum")
    e = lambda eq: node("Einsum", ["a", "b"], equation=eq)  # noqa: E731
    return [
        build("batched-matmul-bij.bjk.bik", [e("bij,bjk->bik")], {"a": uniform(r, (3, 5, 8)), "b": uniform(r, (3, 8, 4))}),
        build("attention-bhid.bhjd.bhij", [e("bhid,bhjd->bhij")], {"a": uniform(r, (2, 3, 5, 8)), "b": uniform(r, (2, 3, 6, 8))}),
        build("constant-weight-bid.dk.bik", [e("bid,dk->bik")], {"a": uniform(r, (2, 5, 8))}, inits={"b": uniform(r, (8, 6))}),
        build("transpose-ij.ji", [node("Einsum", ["a"], equation="ij->ji")], {"a": uniform(r, (5, 7))}),
    ]


def _conv():
    r = _rng("Conv")
    c = lambda inputs, **kw: node("Conv", inputs, **kw)  # noqa: E731
    return [
        build("3x3-pad1-bias", [c(["x", "w", "b"], pads=[1, 1, 1, 1])], {"x": uniform(r, (1, 4, 10, 10))},
              inits={"w": uniform(r, (6, 4, 3, 3), -0.5, 0.5), "b": uniform(r, (6,))}),
        build("stride2-dilation-asymmetric-pads", [c(["x", "w", "b"], strides=[2, 2], dilations=[2, 1], pads=[1, 0, 2, 1])],
              {"x": uniform(r, (2, 4, 11, 13))}, inits={"w": uniform(r, (5, 4, 3, 3), -0.5, 0.5), "b": uniform(r, (5,))}),
        build("groups2", [c(["x", "w", "b"], group=2, pads=[1, 1, 1, 1])], {"x": uniform(r, (1, 4, 8, 8))},
              inits={"w": uniform(r, (6, 2, 3, 3), -0.5, 0.5), "b": uniform(r, (6,))}),
        build("depthwise", [c(["x", "w", "b"], group=6, pads=[1, 1, 1, 1])], {"x": uniform(r, (1, 6, 8, 8))},
              inits={"w": uniform(r, (6, 1, 3, 3), -0.5, 0.5), "b": uniform(r, (6,))}),
        build("1x1-no-bias", [c(["x", "w"])], {"x": uniform(r, (1, 8, 5, 5))}, inits={"w": uniform(r, (4, 8, 1, 1), -0.5, 0.5)}),
        build("same-upper-stride2", [c(["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])], {"x": uniform(r, (1, 3, 9, 8))},
              inits={"w": uniform(r, (4, 3, 3, 3), -0.5, 0.5)}),
        build("same-lower-stride2", [c(["x", "w"], auto_pad="SAME_LOWER", strides=[2, 2])], {"x": uniform(r, (1, 3, 9, 8))},
              inits={"w": uniform(r, (4, 3, 3, 3), -0.5, 0.5)}),
        build("valid-dilated", [c(["x", "w"], auto_pad="VALID", dilations=[2, 2])], {"x": uniform(r, (1, 3, 9, 8))},
              inits={"w": uniform(r, (4, 3, 3, 3), -0.5, 0.5)}),
        build("1d", [c(["x", "w", "b"], strides=[2], pads=[2, 1])], {"x": uniform(r, (2, 3, 20))},
              inits={"w": uniform(r, (4, 3, 5), -0.5, 0.5), "b": uniform(r, (4,))}),
        build("3d", [c(["x", "w"], pads=[1, 1, 1, 1, 1, 1])], {"x": uniform(r, (1, 2, 5, 6, 7))},
              inits={"w": uniform(r, (3, 2, 3, 3, 3), -0.5, 0.5)}),
    ]


def _conv_transpose():
    r = _rng("ConvTranspose")
    ct = lambda inputs, **kw: node("ConvTranspose", inputs, **kw)  # noqa: E731
    return [
        build("stride2-pad1-output-padding", [ct(["x", "w", "b"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
              {"x": uniform(r, (1, 4, 5, 5))}, inits={"w": uniform(r, (4, 3, 3, 3), -0.5, 0.5), "b": uniform(r, (3,))}),
        build("groups2", [ct(["x", "w"], group=2)], {"x": uniform(r, (1, 4, 5, 5))}, inits={"w": uniform(r, (4, 2, 3, 3), -0.5, 0.5)}),
        build("dilation2", [ct(["x", "w"], dilations=[2, 2])], {"x": uniform(r, (2, 3, 4, 4))},
              inits={"w": uniform(r, (3, 2, 3, 3), -0.5, 0.5)}),
        build("1d-stride2", [ct(["x", "w", "b"], strides=[2])], {"x": uniform(r, (1, 3, 7))},
              inits={"w": uniform(r, (3, 2, 4), -0.5, 0.5), "b": uniform(r, (2,))}),
    ]


CASES.update({"Gemm": _gemm, "MatMul": _matmul, "Einsum": _einsum, "Conv": _conv, "ConvTranspose": _conv_transpose})


# ---------------------------------------------------------------- pooling and normalisation

def _maxpool():
    r = _rng("MaxPool")
    mp = lambda **kw: node("MaxPool", ["x"], **kw)  # noqa: E731
    x = distinct(r, (2, 3, 9, 10))
    return [
        build("3x3-stride2-pad1", [mp(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {"x": x}),
        build("ceil-mode", [mp(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], {"x": x}),
        build("dilations", [mp(kernel_shape=[2, 3], dilations=[2, 2])], {"x": x}),
        build("same-upper", [mp(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")], {"x": x}),
        build("1d", [mp(kernel_shape=[3], strides=[2])], {"x": distinct(r, (2, 3, 11))}),
    ]


def _averagepool():
    r = _rng("AveragePool")
    ap = lambda **kw: node("AveragePool", ["x"], **kw)  # noqa: E731
    x = uniform(r, (2, 3, 9, 10))
    return [
        build("pads-exclude-pad", [ap(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {"x": x}),
        build("pads-include-pad", [ap(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)], {"x": x}),
        build("ceil-mode", [ap(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], {"x": x}),
        build("same-lower", [ap(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")], {"x": x}),
        build("1d", [ap(kernel_shape=[4], strides=[3], pads=[1, 2])], {"x": uniform(r, (2, 3, 13))}),
    ]


def _lppool():
    r = _rng("LpPool")
    x = uniform(r, (2, 3, 9, 10))
    return [build("p2-3x3-stride2-pad1", [node("LpPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {"x": x}),
            build("p3-2x2", [node("LpPool", ["x"], kernel_shape=[2, 2], p=3)], {"x": x}),
            build("p1-1d", [node("LpPool", ["x"], kernel_shape=[3], p=1)], {"x": uniform(r, (2, 3, 11))})]


def _global(op, gen=uniform, attrs=None):
    def cases():
        r = _rng(op)
        res = [build("4d", [node(op, ["x"])], {"x": gen(r, (2, 3, 5, 6))}),
               build("3d", [node(op, ["x"])], {"x": gen(r, (2, 3, 8))})]
        for name, kw in (attrs or {}).items():
            res.append(build(name, [node(op, ["x"], **kw)], {"x": gen(r, (2, 3, 5, 6))}))
        return res
    return cases


def _lrn():
    r = _rng("LRN")
    x = uniform(r, (2, 6, 5, 5))
    return [build("size3", [node("LRN", ["x"], size=3, alpha=0.1, beta=0.75, bias=2.0)], {"x": x}),
            build("size3-defaults", [node("LRN", ["x"], size=3)], {"x": x}),
            build("size5-alexnet", [node("LRN", ["x"], size=5, alpha=1e-4, beta=0.75, bias=1.0)], {"x": x * 10})]


def _batchnorm():
    r = _rng("BatchNormalization")

    def stats(c):
        return {"s": uniform(r, (c,)), "b": uniform(r, (c,)), "m": uniform(r, (c,)), "v": uniform(r, (c,), 0.1, 2.0)}
    bn = node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)
    return [build("4d", [bn], {"x": uniform(r, (2, 4, 5, 6))}, inits=stats(4)),
            build("2d", [bn], {"x": uniform(r, (8, 5))}, inits=stats(5)),
            build("3d-opset9", [node("BatchNormalization", ["x", "s", "b", "m", "v"])], {"x": uniform(r, (2, 3, 7))},
                  inits=stats(3), opset=9)]


def _layernorm():
    r = _rng("LayerNormalization")
    ln = lambda inputs, **kw: node("LayerNormalization", inputs, **kw)  # noqa: E731
    return [
        build("last-axis", [ln(["x", "s", "b"], epsilon=1e-3)], {"x": uniform(r, (2, 5, 6))}, inits={"s": uniform(r, (6,)), "b": uniform(r, (6,))}),
        build("axis-minus2", [ln(["x", "s", "b"], axis=-2)], {"x": uniform(r, (2, 5, 6))}, inits={"s": uniform(r, (5, 6)), "b": uniform(r, (5, 6))}),
        build("no-bias", [ln(["x", "s"])], {"x": uniform(r, (3, 4, 8))}, inits={"s": uniform(r, (8,))}),
        build(LARGE, [ln(["x", "s", "b"])], {"x": uniform(r, LARGE_SHAPE)},
              inits={"s": uniform(r, (LARGE_SHAPE[1],)), "b": uniform(r, (LARGE_SHAPE[1],))}),
    ]


def _instancenorm():
    r = _rng("InstanceNormalization")
    inn = node("InstanceNormalization", ["x", "s", "b"], epsilon=1e-4)
    return [build("4d", [inn], {"x": uniform(r, (2, 4, 5, 6))}, inits={"s": uniform(r, (4,)), "b": uniform(r, (4,))}),
            build("3d", [inn], {"x": uniform(r, (2, 3, 10))}, inits={"s": uniform(r, (3,)), "b": uniform(r, (3,))})]


def _mvn():
    r = _rng("MeanVarianceNormalization")
    x = uniform(r, (2, 4, 5, 6))
    # The attribute left out on purpose: bricklab must apply the default axes [0, 2, 3] itself.
    # (onnx 1.17's full checker cannot expand the function body without it; ORT runs it.)
    return [build("default-axes", [node("MeanVarianceNormalization", ["x"])], {"x": x}),
            build("axes-2-3", [node("MeanVarianceNormalization", ["x"], axes=[2, 3])], {"x": x})]


def _lpnorm():
    r = _rng("LpNormalization")
    x = away_from_zero(r, (2, 4, 5, 6))
    return [build("p2-last-axis", [node("LpNormalization", ["x"])], {"x": x}),
            build("p1-axis1", [node("LpNormalization", ["x"], axis=1, p=1)], {"x": x})]


def _softmax(op):
    def cases():
        r = _rng(op)
        x = uniform(r, (2, 3, 4, 5), -5.0, 5.0)
        return [
            build("last-axis", [node(op, ["x"])], {"x": x}),
            build("axis1", [node(op, ["x"], axis=1)], {"x": x}),
            # Before opset 13 the input is flattened to 2-D at `axis`: one softmax over axes 1..3.
            build("axis1-opset11-coerced-2d", [node(op, ["x"], axis=1)], {"x": x}, opset=11),
            build(LARGE, [node(op, ["x"])], {"x": uniform(r, LARGE_SHAPE, -5.0, 5.0)}),
        ] + ([build("float64", [node(op, ["x"])], {"x": x.astype(F64)})] if op == "Softmax" else [])
    return cases


def _hardmax():
    r = _rng("Hardmax")
    x = distinct(r, (2, 3, 4, 5))
    return [build("last-axis", [node("Hardmax", ["x"])], {"x": x}),
            build("axis1", [node("Hardmax", ["x"], axis=1)], {"x": x})]


CASES.update({
    "MaxPool": _maxpool, "AveragePool": _averagepool, "LpPool": _lppool,
    "GlobalAveragePool": _global("GlobalAveragePool"), "GlobalMaxPool": _global("GlobalMaxPool", distinct),
    "GlobalLpPool": _global("GlobalLpPool", attrs={"4d-p3": {"p": 3}}), "LRN": _lrn,
    "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm, "InstanceNormalization": _instancenorm,
    "MeanVarianceNormalization": _mvn, "LpNormalization": _lpnorm,
    "Softmax": _softmax("Softmax"), "LogSoftmax": _softmax("LogSoftmax"), "Hardmax": _hardmax,
})


# ---------------------------------------------------------------- reductions

def reduce(op, gen=uniform, large=False):
    """Reduce* over (2,3,4,5): two axes kept, the last axis dropped, and all axes. ReduceSum takes
    its axes as an input from opset 13; the others take an attribute through opset 17."""
    def cases():
        r = _rng(op)
        x = gen(r, (2, 3, 4, 5))
        if op == "ReduceSum":
            red = lambda axes, **kw: (node(op, ["x", "axes"], **kw), {"axes": np.array(axes, I64)})  # noqa: E731
        else:
            red = lambda axes, **kw: (node(op, ["x"], axes=axes, **kw), {})  # noqa: E731
        res = []
        for name, axes, kw in [("axes-1-3-keepdims", [1, 3], {}), ("last-axis-no-keepdims", [-1], {"keepdims": 0}),
                               ("axis0", [0], {})]:
            n, inits = red(axes, **kw)
            res.append(build(name, [n], {"x": x}, inits=inits))
        res.append(build("all-axes-no-keepdims", [node(op, ["x"], keepdims=0)], {"x": x}))
        if large:
            n, inits = red([-1])
            res.append(build(LARGE, [n], {"x": gen(r, LARGE_SHAPE)}, inits=inits))
        return res
    return cases


for _op, _gen, _large in [
    ("ReduceSum", uniform, True), ("ReduceMean", uniform, True), ("ReduceMax", uniform, True), ("ReduceMin", uniform, False),
    ("ReduceProd", _positive(0.8, 1.25), False), ("ReduceL1", uniform, False), ("ReduceL2", uniform, True),
    ("ReduceSumSquare", uniform, False), ("ReduceLogSum", _positive(0.1, 3.0), False), ("ReduceLogSumExp", uniform, False),
]:
    CASES[_op] = reduce(_op, _gen, _large)


def _arg(op):
    def cases():
        r = _rng(op)
        x = distinct(r, (2, 3, 4, 5))
        ties = r.integers(0, 3, (4, 6)).astype(F32)
        out = {"y": I64}
        return [
            build("axis1-keepdims", [node(op, ["x"], axis=1)], {"x": x}, out),
            build("last-axis-no-keepdims", [node(op, ["x"], axis=-1, keepdims=0)], {"x": x}, out),
            build("default-axis0", [node(op, ["x"])], {"x": x}, out),
            # Ties on purpose: the first index by default, the last with select_last_index.
            build("ties-first-index", [node(op, ["x"], axis=1)], {"x": ties}, out),
            build("ties-select-last-index", [node(op, ["x"], axis=1, select_last_index=1)], {"x": ties}, out),
        ] + ([build(LARGE, [node(op, ["x"], axis=-1)], {"x": distinct(r, LARGE_SHAPE)}, out)] if op == "ArgMax" else [])
    return cases


def _cumsum():
    r = _rng("CumSum")
    x = uniform(r, (2, 3, 4, 5))
    cs = lambda **kw: node("CumSum", ["x", "axis"], **kw)  # noqa: E731
    return [
        build("axis1", [cs()], {"x": x}, inits={"axis": np.array(1, I64)}),
        build("last-axis-exclusive", [cs(exclusive=1)], {"x": x}, inits={"axis": np.array(-1, I64)}),
        build("axis2-reverse", [cs(reverse=1)], {"x": x}, inits={"axis": np.array(2, I64)}),
        build("axis0-exclusive-reverse-int32-axis", [cs(exclusive=1, reverse=1)], {"x": x}, inits={"axis": np.array(0, I32)}),
        build("int64-values", [cs()], {"x": r.integers(-9, 9, (3, 7))}, inits={"axis": np.array(1, I64)}),
        build(LARGE, [cs()], {"x": uniform(r, LARGE_SHAPE)}, inits={"axis": np.array(1, I64)}),
    ]


CASES.update({"ArgMax": _arg("ArgMax"), "ArgMin": _arg("ArgMin"), "CumSum": _cumsum})


# ---------------------------------------------------------------- data movement

def _concat():
    r = _rng("Concat")
    return [
        build("axis1-three-inputs", [node("Concat", ["a", "b", "c"], axis=1)],
              {"a": uniform(r, (2, 3, 4)), "b": uniform(r, (2, 1, 4)), "c": uniform(r, (2, 5, 4))}),
        build("last-axis-constant", [node("Concat", ["a", "b"], axis=-1)], {"a": uniform(r, (2, 3, 4))}, inits={"b": uniform(r, (2, 3, 2))}),
        build("axis0-int64", [node("Concat", ["a", "b"], axis=0)], {"a": r.integers(-9, 9, (2, 3)), "b": r.integers(-9, 9, (4, 3))}),
    ]


def _split():
    r = _rng("Split")
    three = {"y0": F32, "y1": F32, "y2": F32}
    sp = lambda inputs, **kw: node("Split", inputs, ["y0", "y1", "y2"], **kw)  # noqa: E731
    return [
        build("sizes-input-axis1", [sp(["x", "s"], axis=1)], {"x": uniform(r, (2, 6, 5))}, three, inits={"s": np.array([2, 3, 1], I64)}),
        build("equal-last-axis", [sp(["x"], axis=-1)], {"x": uniform(r, (2, 4, 6))}, three),
        build("sizes-attr-opset11", [sp(["x"], axis=0, split=[1, 2, 3])], {"x": uniform(r, (6, 4))}, three, opset=11),
    ]


def _transpose():
    r = _rng("Transpose")
    x = uniform(r, (2, 3, 4, 5))
    return [build("nhwc", [node("Transpose", ["x"], perm=[0, 2, 3, 1])], {"x": x}),
            build("3-1-0-2", [node("Transpose", ["x"], perm=[3, 1, 0, 2])], {"x": x}),
            build("default-reverse", [node("Transpose", ["x"])], {"x": x}),
            build("int64-2d", [node("Transpose", ["x"], perm=[1, 0])], {"x": r.integers(-9, 9, (5, 7))})]


def _pad():
    r = _rng("Pad")
    x = uniform(r, (2, 3, 4, 5))
    p = lambda mode, pads, extra=(): build(  # noqa: E731
        mode, [node("Pad", ["x", "pads", *extra], mode=mode.split("-")[0])], {"x": x},
        inits={"pads": np.array(pads, I64), **({"v": np.array(1.5, F32)} if extra else {})})
    return [
        p("constant-value1.5", [0, 1, 2, 1, 0, 2, 1, 0], ["v"]),
        p("constant-zero", [1, 0, 0, 2, 0, 1, 1, 0]),
        p("reflect", [0, 0, 2, 1, 0, 0, 1, 3]),
        p("edge", [0, 1, 2, 1, 0, 1, 1, 3]),
        p("constant-negative-crop", [0, 0, -1, 1, 0, 0, 1, -2]),
        build("attrs-opset10", [node("Pad", ["x"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=-0.5)], {"x": x}, opset=10),
    ]


def _expand():
    r = _rng("Expand")
    return [build("to-4d", [node("Expand", ["x", "s"])], {"x": uniform(r, (3, 1, 5))}, inits={"s": np.array([2, 3, 4, 5], I64)}),
            build("shape-lower-rank-with-ones", [node("Expand", ["x", "s"])], {"x": uniform(r, (3, 1))}, inits={"s": np.array([2, 1, 6], I64)})]


def _tile():
    r = _rng("Tile")
    return [build("2-1-3", [node("Tile", ["x", "r"])], {"x": uniform(r, (2, 3, 4))}, inits={"r": np.array([2, 1, 3], I64)}),
            build("int64", [node("Tile", ["x", "r"])], {"x": r.integers(-9, 9, (3, 2))}, inits={"r": np.array([1, 4], I64)})]


def _depth_to_space():
    r = _rng("DepthToSpace")
    x = uniform(r, (2, 8, 3, 4))
    return [build("DCR", [node("DepthToSpace", ["x"], blocksize=2)], {"x": x}),
            build("CRD", [node("DepthToSpace", ["x"], blocksize=2, mode="CRD")], {"x": x})]


def _space_to_depth():
    r = _rng("SpaceToDepth")
    return [build("blocksize2", [node("SpaceToDepth", ["x"], blocksize=2)], {"x": uniform(r, (2, 3, 6, 4))}),
            build("blocksize3", [node("SpaceToDepth", ["x"], blocksize=3)], {"x": uniform(r, (1, 2, 6, 9))})]


def _scatter_nd():
    r = _rng("ScatterND")
    data = uniform(r, (4, 5, 6))
    return [
        build("slices", [node("ScatterND", ["d", "i", "u"])], {"d": data, "u": uniform(r, (2, 5, 6))}, inits={"i": np.array([[1], [3]], I64)}),
        build("elements-rows", [node("ScatterND", ["d", "i", "u"])], {"d": data, "u": uniform(r, (3, 6))},
              inits={"i": np.array([[0, 4], [3, 1], [2, 2]], I64)}),
        build("indices-input", [node("ScatterND", ["d", "i", "u"])],
              {"d": data, "i": np.array([[0, 1, 2], [3, 4, 5], [1, -1, 0]], I64), "u": uniform(r, (3,))}),
        build("reduction-add-duplicates-opset16", [node("ScatterND", ["d", "i", "u"], reduction="add")],
              {"d": data, "u": uniform(r, (3, 5, 6))}, inits={"i": np.array([[1], [1], [2]], I64)}, opset=16),
    ]


def _scatter_elements():
    r = _rng("ScatterElements")
    data = uniform(r, (4, 6))
    rows = np.stack([r.permutation(6)[:3] for _ in range(4)]).astype(I64)  # distinct columns per row
    cols = np.stack([r.permutation(4)[:2] for _ in range(6)], axis=1).astype(I64) - 4  # negative, distinct rows per column
    return [
        build("axis1", [node("ScatterElements", ["d", "i", "u"], axis=1)], {"d": data, "i": rows, "u": uniform(r, (4, 3))}),
        build("axis0-negative-indices-constant", [node("ScatterElements", ["d", "i", "u"], axis=0)],
              {"d": data, "u": uniform(r, (2, 6))}, inits={"i": cols}),
        build("reduction-add-opset16", [node("ScatterElements", ["d", "i", "u"], axis=1, reduction="add")],
              {"d": data, "i": r.integers(0, 6, (4, 5)), "u": uniform(r, (4, 5))}, opset=16),
    ]


def _trilu():
    r = _rng("Trilu")
    x = uniform(r, (2, 5, 6))
    return [build("upper", [node("Trilu", ["x"])], {"x": x}),
            build("upper-k1", [node("Trilu", ["x", "k"])], {"x": x}, inits={"k": np.array(1, I64)}),
            build("lower-k-minus1", [node("Trilu", ["x", "k"], upper=0)], {"x": x}, inits={"k": np.array(-1, I64)}),
            build("lower-2d", [node("Trilu", ["x"], upper=0)], {"x": uniform(r, (6, 4))})]


def _gather():
    r = _rng("Gather")
    data = uniform(r, (5, 6, 7))
    return [
        build("axis0-2d-indices", [node("Gather", ["d", "i"])], {"d": data}, inits={"i": np.array([[0, 4, 2], [1, 1, 3]], I64)}),
        build("axis1-negative-indices", [node("Gather", ["d", "i"], axis=1)], {"d": data}, inits={"i": np.array([-1, 0, -3], I64)}),
        build("axis-last-scalar-index", [node("Gather", ["d", "i"], axis=-1)], {"d": data}, inits={"i": np.array(2, I64)}),
        build("indices-input", [node("Gather", ["d", "i"])], {"d": data, "i": np.array([4, 0, 3, 3], I64)}),
        build("embedding-int64-data", [node("Gather", ["d", "i"])], {"i": r.integers(0, 10, (2, 5))},
              {"y": F32}, inits={"d": uniform(r, (10, 8))}),
    ]


def _gather_elements():
    r = _rng("GatherElements")
    return [
        build("axis1", [node("GatherElements", ["d", "i"], axis=1)], {"d": uniform(r, (4, 6)), "i": r.integers(-6, 6, (4, 3))}),
        build("axis0-3d", [node("GatherElements", ["d", "i"], axis=0)], {"d": uniform(r, (3, 4, 5)), "i": r.integers(0, 3, (2, 4, 5))}),
        build("constant-indices", [node("GatherElements", ["d", "i"], axis=-1)], {"d": uniform(r, (3, 4, 5))},
              inits={"i": r.integers(0, 5, (3, 4, 2))}),
    ]


def _gather_nd():
    r = _rng("GatherND")
    data = uniform(r, (4, 5, 6))
    return [
        build("rows", [node("GatherND", ["d", "i"])], {"d": data}, inits={"i": np.array([[0, 1], [3, 4], [2, 0]], I64)}),
        build("elements", [node("GatherND", ["d", "i"])], {"d": data, "i": np.array([[0, 1, 2], [3, -1, 5]], I64)}),
        build("batch-dims1", [node("GatherND", ["d", "i"], batch_dims=1)], {"d": uniform(r, (3, 5, 6))},
              inits={"i": np.array([[[1], [4]], [[0], [0]], [[3], [2]]], I64)}),
    ]


def _slice():
    r = _rng("Slice")
    x = uniform(r, (4, 6, 8))
    big = np.iinfo(np.int64).max
    s = lambda name, starts, ends, axes=None, steps=None: build(  # noqa: E731
        name, [node("Slice", ["x", "s", "e"] + (["a"] if axes is not None else []) + (["t"] if steps is not None else []))], {"x": x},
        inits={"s": np.array(starts, I64), "e": np.array(ends, I64),
               **({"a": np.array(axes, I64)} if axes is not None else {}), **({"t": np.array(steps, I64)} if steps is not None else {})})
    return [
        s("no-axes", [1, 0, 2], [3, 6, 7]),
        s("axes-steps", [0, 1], [big, -1], [2, 0], [2, 1]),
        s("negative-step", [-1, 5], [-big, 0], [2, 1], [-2, -1]),
        s("clamped-ends", [-100, 2], [100, 1000], [0, -1]),
        build("attrs-opset9", [node("Slice", ["x"], starts=[1, 2], ends=[3, 100], axes=[0, 2])], {"x": x}, opset=9),
    ]


def _resize():
    r = _rng("Resize")
    x = uniform(r, (1, 2, 4, 5))
    rz = lambda name, scales=None, sizes=None, opset=13, **kw: build(  # noqa: E731
        name, [node("Resize", ["x", "", "sc"] if sizes is None else ["x", "", "", "sz"], **kw)], {"x": x},
        inits={"sc": np.array(scales, F32)} if sizes is None else {"sz": np.array(sizes, I64)}, opset=opset)
    return [
        rz("nearest-asymmetric-floor-x2", [1, 1, 2, 2], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        rz("nearest-half-pixel-sizes", sizes=[1, 2, 7, 8], mode="nearest"),
        rz("linear-half-pixel-x2", [1, 1, 2, 2], mode="linear"),
        rz("linear-align-corners-sizes", sizes=[1, 2, 7, 9], mode="linear", coordinate_transformation_mode="align_corners"),
        rz("linear-pytorch-half-pixel-down", [1, 1, 0.5, 0.6], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
        rz("cubic-a-0.75-x2", [1, 1, 2, 2], mode="cubic", cubic_coeff_a=-0.75),
        build("nearest-opset10", [node("Resize", ["x", "sc"], mode="nearest")], {"x": x},
              inits={"sc": np.array([1, 1, 2, 3], F32)}, opset=10),
    ]


def _upsample():
    r = _rng("Upsample")
    x = uniform(r, (1, 2, 4, 5))
    return [build(f"{mode}-opset9", [node("Upsample", ["x", "sc"], mode=mode)], {"x": x},
                  inits={"sc": np.array([1, 1, 2, 3], F32)}, opset=9) for mode in ("nearest", "linear")]


CASES.update({
    "Concat": _concat, "Split": _split, "Transpose": _transpose, "Pad": _pad, "Expand": _expand, "Tile": _tile,
    "DepthToSpace": _depth_to_space, "SpaceToDepth": _space_to_depth, "ScatterND": _scatter_nd,
    "ScatterElements": _scatter_elements, "Trilu": _trilu, "Gather": _gather, "GatherElements": _gather_elements,
    "GatherND": _gather_nd, "Slice": _slice, "Resize": _resize, "Upsample": _upsample,
})


# ---------------------------------------------------------------- views, shapes, generators

def _reshape():
    r = _rng("Reshape")
    x = uniform(r, (2, 3, 4, 5))
    return [build("zero-and-minus1", [node("Reshape", ["x", "s"])], {"x": x}, inits={"s": np.array([0, -1, 5], I64)}),
            build("flat", [node("Reshape", ["x", "s"])], {"x": x}, inits={"s": np.array([-1], I64)}),
            build("int64-data", [node("Reshape", ["x", "s"])], {"x": r.integers(-9, 9, (4, 6))}, inits={"s": np.array([3, 8], I64)})]


def _squeeze():
    r = _rng("Squeeze")
    x = uniform(r, (1, 3, 1, 5, 1))
    return [build("axes-input", [node("Squeeze", ["x", "a"])], {"x": x}, inits={"a": np.array([0, -1], I64)}),
            build("all-ones", [node("Squeeze", ["x"])], {"x": x}),
            build("axes-attr-opset11", [node("Squeeze", ["x"], axes=[2])], {"x": x}, opset=11)]


def _unsqueeze():
    r = _rng("Unsqueeze")
    x = uniform(r, (3, 5))
    return [build("axes-input", [node("Unsqueeze", ["x", "a"])], {"x": x}, inits={"a": np.array([0, 3], I64)}),
            build("negative-axis", [node("Unsqueeze", ["x", "a"])], {"x": x}, inits={"a": np.array([-1], I64)}),
            build("axes-attr-opset11", [node("Unsqueeze", ["x"], axes=[1])], {"x": x}, opset=11)]


def _flatten():
    r = _rng("Flatten")
    x = uniform(r, (2, 3, 4, 5))
    return [build(f"axis{a}", [node("Flatten", ["x"], axis=a)], {"x": x}) for a in (2, 0, -1)]


def _identity():
    r = _rng("Identity")
    return [build("input-to-output", [node("Identity", ["x"])], {"x": uniform(r, (3, 4, 5))}),
            build("int64", [node("Identity", ["x"])], {"x": r.integers(-9, 9, (3, 4))}),
            # The copy comes out of an intermediate value, not the graph input.
            build("after-relu", [node("Relu", ["x"], ["t"]), node("Identity", ["t"])], {"x": uniform(r, (3, 4, 5))})]


def _dropout():
    r = _rng("Dropout")
    x = uniform(r, (3, 4, 5))
    return [build("inference", [node("Dropout", ["x"])], {"x": x}),
            build("ratio-input", [node("Dropout", ["x", "p"])], {"x": x}, inits={"p": np.array(0.3, F32)}),
            build("attr-opset10", [node("Dropout", ["x"], ratio=0.2)], {"x": x}, opset=10)]


def _shape():
    r = _rng("Shape")
    x = uniform(r, (2, 3, 4, 5))
    return [build("all-dims", [node("Shape", ["x"])], {"x": x}, {"y": I64}),
            build("start1-end-minus1-opset15", [node("Shape", ["x"], start=1, end=-1)], {"x": x}, {"y": I64}, opset=15),
            # The shape feeding a computation, as in exported reshapes.
            build("into-reshape", [node("Shape", ["x"], ["s"]), node("Reshape", ["x2", "s"])],
                  {"x": x, "x2": uniform(r, (6, 20))}, {"y": F32})]


def _size():
    r = _rng("Size")
    return [build("4d", [node("Size", ["x"])], {"x": uniform(r, (2, 3, 4, 5))}, {"y": I64})]


def _constant():
    r = _rng("Constant")
    x = uniform(r, (3, 4))
    c = numpy_helper.from_array(uniform(r, (3, 4)), "c")
    return [build("tensor-value", [node("Constant", [], ["c"], value=c), node("Add", ["x", "c"])], {"x": x}),
            build("value-floats-opset12", [node("Constant", [], ["c"], value_floats=[1.0, -2.0, 3.5, 0.25]), node("Mul", ["x", "c"])],
                  {"x": x}, opset=12),
            build("value-int-opset12", [node("Constant", [], ["c"], value_int=7), node("Add", ["x", "c"])],
                  {"x": r.integers(-9, 9, (3, 4))}, opset=12)]


def _constant_of_shape():
    r = _rng("ConstantOfShape")
    x = uniform(r, (2, 3, 4))
    one_float = lambda v, t=F32: numpy_helper.from_array(np.array([v], t), "value")  # noqa: E731
    return [
        build("from-shape-of-input", [node("Shape", ["x"], ["s"]), node("ConstantOfShape", ["s"], ["c"], value=one_float(1.5)),
                                      node("Mul", ["x", "c"])], {"x": x}),
        build("default-zeros", [node("ConstantOfShape", ["s"], ["c"]), node("Add", ["x", "c"])], {"x": x},
              inits={"s": np.array([2, 3, 4], I64)}),
        build("int64-value", [node("ConstantOfShape", ["s"], ["c"], value=one_float(7, I64)), node("Add", ["x", "c"])],
              {"x": r.integers(-9, 9, (3, 5))}, inits={"s": np.array([3, 5], I64)}),
        # Larger than the load-time folding takes: the run-time kernel, in float64.
        build("float64-large", [node("Shape", ["x"], ["s"]), node("ConstantOfShape", ["s"], ["c"], value=one_float(2.5, F64)),
                                node("Mul", ["x", "c"])], {"x": uniform(r, (40, 130), dtype=F64)}),
    ]


def _range():
    r = _rng("Range")
    scalar = lambda v, t: np.array(v, t)  # noqa: E731
    return [
        build("float-constants", [node("Range", ["a", "b", "d"], ["rg"]), node("Add", ["x", "rg"])], {"x": uniform(r, (3, 7))},
              inits={"a": scalar(0.5, F32), "b": scalar(4.0, F32), "d": scalar(0.5, F32)}),
        build("int64-negative-delta", [node("Range", ["a", "b", "d"], ["rg"]), node("Add", ["x", "rg"])],
              {"x": r.integers(-9, 9, (2, 4))}, inits={"a": scalar(10, I64), "b": scalar(2, I64), "d": scalar(-2, I64)}),
    ]


def _onehot():
    r = _rng("OneHot")
    idx = r.integers(-5, 5, (3, 4))
    inits = {"n": np.array(5, I64), "v": np.array([0.5, 2.0], F32)}
    return [build("last-axis", [node("OneHot", ["i", "n", "v"])], {"i": idx}, {"y": F32}, inits=inits),
            build("axis1", [node("OneHot", ["i", "n", "v"], axis=1)], {"i": idx}, {"y": F32}, inits=inits)]


def _nonzero():
    # A data-dependent output shape is outside a compiler for static shapes: NonZero of a constant
    # (folded at load time) is the form it can support.
    r = _rng("NonZero")
    c = _with_zeros(r, (3, 4))
    n = int(np.count_nonzero(c))
    return [build("constant-input", [node("NonZero", ["c"], ["nz"]), node("Add", ["x", "nz"])],
                  {"x": r.integers(-9, 9, (2, n))}, inits={"c": c})]


CASES.update({
    "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Flatten": _flatten, "Identity": _identity,
    "Dropout": _dropout, "Shape": _shape, "Size": _size, "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "Range": _range, "OneHot": _onehot, "NonZero": _nonzero,
})
