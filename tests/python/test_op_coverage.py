"""Operator coverage: every operator in bricklab's table is run on the CPU backend and checked.

For each operator, op_cases.CASES builds small single-operator ONNX models (broadcasting,
non-default attributes, the dtypes the operator takes). An operator the table declares lowered on
the CPU must give ONNX Runtime's results (an independent implementation) on the same inputs; one
declared unsupported must be refused with an UnsupportedError naming it, never run wrongly. This
catches an operator added to the table without a kernel, a kernel that mishandles an attribute or
a broadcast, and an unsupported form that crashes instead of being refused.
"""
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import bricklab
from op_cases import CASES, LARGE, TOLERANCES, UNTESTABLE

DEFAULT_TOLERANCE = (1e-4, 1e-5)  # (rtol, atol) for float outputs; op_cases.TOLERANCES loosens some
TABLE = {entry["op"]: entry for entry in bricklab.supported_ops()}


def cpu_status(op):
    # Tables without per-backend information predate the "unsupported" declaration: all lowered.
    return TABLE[op].get("backends", {"cpu": "lowered"}).get("cpu")


def reference(model, feeds):
    options = ort.SessionOptions()
    # Unoptimised, so ORT's own fusions and constant folding are no part of the reference.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


class Case:
    """One variant: the model and its inputs (a short repr keeps failure reports readable)."""

    def __init__(self, model, feeds):
        self.model, self.feeds = model, feeds

    def __repr__(self):
        return f"<case {self.model.graph.name}>"


def _params():
    params = []
    for op in [*CASES, *UNTESTABLE]:
        if op in UNTESTABLE:
            params.append(pytest.param(op, None, 1, id=op))
            continue
        for model, feeds in CASES[op]():
            variant = model.graph.name
            # Large cases also run on two threads: the work split of multithreaded kernels.
            for threads in (1, 2) if variant.startswith(LARGE) else (1,):
                suffix = "-threads2" if threads == 2 else ""
                params.append(pytest.param(op, Case(model, feeds), threads, id=f"{op}-{variant}{suffix}"))
    return params


def test_every_listed_operator_has_a_case():
    missing = sorted(op for op in TABLE if op not in CASES and op not in UNTESTABLE)
    assert not missing, f"operators in bricklab.supported_ops() without a case in op_cases.CASES: {missing}"


@pytest.mark.parametrize("op, case, threads", _params())
def test_operator_against_onnxruntime(op, case, threads, tmp_path):
    if op in UNTESTABLE:
        pytest.skip(UNTESTABLE[op])
    if op not in TABLE:
        pytest.skip(f"{op}: not in bricklab's operator table")
    model, feeds = case.model, case.feeds
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, str(path))
    status = cpu_status(op)
    assert status in ("lowered", "unsupported"), f"{op}: the table declares {status!r} for the cpu backend"

    if status == "unsupported":
        with pytest.raises(bricklab.UnsupportedError, match=rf"\b{re.escape(op)}\b"):
            bricklab.Session(str(path), threads=threads).run(feeds)
        return

    expected = reference(model, feeds)
    originals = {k: v.copy() for k, v in feeds.items()}
    session = bricklab.Session(str(path), threads=threads)
    rtol, atol = TOLERANCES.get(op, DEFAULT_TOLERANCE)
    # Twice: a kernel that relies on freshly zeroed buffers or leaves state behind fails the second run.
    for run in ("first run", "second run"):
        got = session.run(feeds)
        assert sorted(got) == sorted(expected), f"{run}: outputs {sorted(got)}, ONNX Runtime gives {sorted(expected)}"
        for name, want in expected.items():
            have = got[name]
            where = f"{run}, output '{name}'"
            assert have.shape == want.shape, f"{where}: shape {have.shape}, ONNX Runtime gives {want.shape}"
            assert have.dtype.kind == want.dtype.kind, f"{where}: dtype {have.dtype}, ONNX Runtime gives {want.dtype}"
            if want.dtype.kind == "f":
                # A float64 model must compute in float64, not round through float32.
                assert have.dtype == want.dtype, f"{where}: dtype {have.dtype}, ONNX Runtime gives {want.dtype}"
                np.testing.assert_allclose(have, want, rtol=rtol, atol=atol, err_msg=where)
            else:
                np.testing.assert_array_equal(have, want, err_msg=where)
    # Inputs are bound zero-copy: no kernel may write into them.
    for name, original in originals.items():
        np.testing.assert_array_equal(feeds[name], original, err_msg=f"input '{name}' was modified by the run")
