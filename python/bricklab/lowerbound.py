"""Lower bounds (Benanza): how fast could this model run on this machine, and what is each
optimisation worth?

    >>> import bricklab.lowerbound as lb
    >>> a = lb.analyze("models/zoo/resnet50.onnx", db="lb.sqlite", threads=2, peers=True)
    >>> a["bounds"]            # sequential, parallel (critical path) and roofline bounds, in ms
    >>> a["measured"]          # bricklab, ONNX Runtime, OpenVINO and PyTorch, same threads
    >>> a["advice"]            # algorithm, fusion, precision, parallel, runtime: predicted and realised ms
    >>> lb.report("models/zoo/resnet50.onnx", "resnet50.html", db="lb.sqlite", threads=2)

Every semantically equivalent way of running each unique layer (oneDNN algorithms, memory
formats, bf16, fused vs unfused) is benchmarked once per machine fingerprint and kept in the
results database (the bricks database: SQLite path or postgresql:// URL). Runner options are
those of :mod:`bricklab.bricks` (``threads`` default 1, ``tolerance``, ``budget_s``, ``clock``,
``backend`` "cpu" or "cuda", ...).
"""
from __future__ import annotations

import json
import os
import pathlib
import statistics
import tempfile
import time
from typing import Dict, Iterable, Optional

from . import _core, _progress
from .bricks import ModelLike, _load, _runner, default_db

PEERS = ("onnxruntime", "openvino", "pytorch")

__all__ = ["analyze", "report", "render_report", "roofline", "measure_peers", "peer_module"]


def _db(db) -> str:
    return os.fspath(db) if db else default_db()


def roofline(db=None, measure: bool = True, **runner) -> dict:
    """This machine's peak GFLOP/s per data type (a 2048^3 MatMul through the backend) and its
    bandwidth (the fastest streaming kernel, bytes read + written), from ``db`` or measured now."""
    return _core.lowerbound_machine(_db(db), _runner(runner), measure)


def analyze(model: ModelLike, db=None, batch: Optional[int] = None, peers: bool = False, measure: bool = True,
            apply: bool = True, progress: _progress.ProgressArg = None, **runner) -> dict:
    """The model's bounds, per-layer variants, critical path and advice (schema
    "bricklab.lowerbound/1", the input of :func:`render_report`).

    ``peers``: measure ONNX Runtime, OpenVINO (when installed) and (for zoo models) PyTorch first,
    with the same threads, so the analysis shows them beside bricklab. ``measure``: time the whole
    model in bricklab's engine; ``apply``: also time it with each advice applied (realised
    savings). ``progress``: counts and time left on stderr (None: when stderr is a terminal or in
    a notebook; True/False; or a callable ``f(done, total, elapsed_s, label)``).
    """
    graph = _load(model, batch)
    opts = _runner(runner)
    if peers:
        measure_peers(model, db=db, batch=batch, progress=progress, **runner)
    text = _core.lowerbound_analyze(graph, _db(db), opts, measure, apply, _progress.callback(progress, "variant benchmarks"))
    return json.loads(text)


def render_report(analysis: dict) -> str:
    """The self-contained HTML page of an analysis (charts inline, no external resources)."""
    return _core.lowerbound_render_html(json.dumps(analysis))


def report(model: ModelLike, output="report.html", db=None, batch: Optional[int] = None, **kwargs) -> dict:
    """Analyze the model and write the HTML report to ``output``; returns the analysis."""
    analysis = analyze(model, db=db, batch=batch, **kwargs)
    pathlib.Path(output).write_text(render_report(analysis), encoding="utf-8")
    return analysis


# ---- peer runtimes --------------------------------------------------------------------------

def _zoo_entry(path: str) -> Optional[dict]:
    manifest = pathlib.Path(path).resolve().parent / "MANIFEST.json"
    if not manifest.exists():
        return None
    for entry in json.loads(manifest.read_text())["models"]:
        if entry["file"] == pathlib.Path(path).name:
            return entry
    return None


def peer_module(path: str):
    """The PyTorch module (torchvision, random weights, eval mode) a zoo model was exported from,
    or None when the file is not a zoo model."""
    entry = _zoo_entry(path)
    if entry is None:
        return None
    from . import zoo

    return zoo.torch_module(entry)


def _time(fn, warmup: int, repeats: int, warmup_s: float = 0.5):
    # Warm up for at least `warmup` runs and `warmup_s` seconds: the runtime that ran before
    # (bricklab's OpenMP threads, another runtime's pool) may still be spinning on the cores.
    t_end = time.perf_counter() + warmup_s
    done = 0
    while done < warmup or time.perf_counter() < t_end:
        fn()
        done += 1
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def measure_peers(model, db=None, batch: Optional[int] = None, runtimes: Iterable[str] = PEERS,
                  repeats: int = 20, warmup: int = 3, progress: _progress.ProgressArg = None, **runner) -> Dict[str, object]:
    """Time the model end to end in ONNX Runtime, OpenVINO and PyTorch with the runner's thread
    count and store the results in ``db`` under the same fingerprint as the variant benchmarks.
    A runtime already stored for this fingerprint is not measured again (like every result).
    OpenVINO is skipped (with the reason) when its package is not installed, PyTorch for models
    that are not from the zoo. Returns runtime -> median ms, or the reason it was skipped."""
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError("measure_peers needs the model's file path (the peers load the file themselves)")
    path = os.fspath(model)
    graph = _load(path, batch)
    opts = _runner(runner)
    threads = opts.get("threads", 1) or os.cpu_count()
    import numpy as np
    from . import zoo

    out: Dict[str, object] = {}
    inputs = graph.inputs
    if len(inputs) != 1:
        return {r: "skipped: peers are measured for single-input models" for r in runtimes}
    shape = list(inputs[0].shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    runtimes = list(runtimes)
    for runtime in runtimes:
        if runtime not in PEERS:
            raise ValueError(f"unknown runtime '{runtime}' (known: {', '.join(PEERS)})")
    show = _progress.callback(progress, "peers")
    t0 = time.perf_counter()
    for k, runtime in enumerate(runtimes):
        if show:
            show(k, len(runtimes), time.perf_counter() - t0, runtime)
        stored = _core.lowerbound_peer_ms(graph, runtime, _db(db), opts)
        if stored is not None:  # measured before for this fingerprint: never again
            out[runtime] = stored
            continue
        if runtime == "openvino":
            try:
                import openvino as ov
            except ImportError:
                out[runtime] = "skipped: the openvino package is not installed"
                continue
            with tempfile.TemporaryDirectory() as tmp:
                full = os.path.join(tmp, "model.onnx")
                zoo.materialize_file(path, full, seed=0)
                compiled = ov.Core().compile_model(full, "CPU", {"INFERENCE_NUM_THREADS": int(threads),
                                                                 "PERFORMANCE_HINT": "LATENCY"})
                request = compiled.create_infer_request()
                samples = _time(lambda: request.infer({0: x}), warmup, repeats)
        elif runtime == "onnxruntime":
            import onnxruntime as ort

            with tempfile.TemporaryDirectory() as tmp:
                full = os.path.join(tmp, "model.onnx")
                zoo.materialize_file(path, full, seed=0)
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                sess = ort.InferenceSession(full, so, providers=["CPUExecutionProvider"])
                name = sess.get_inputs()[0].name
                samples = _time(lambda: sess.run(None, {name: x}), warmup, repeats)
        elif runtime == "pytorch":
            module = peer_module(path)
            if module is None:
                out[runtime] = "skipped: not a zoo model (no PyTorch source)"
                continue
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            torch.set_flush_denormal(True)
            xt = torch.from_numpy(x)
            try:
                with torch.no_grad():
                    samples = _time(lambda: module(xt), warmup, repeats)
            finally:
                torch.set_num_threads(previous)
        _core.lowerbound_store_peer(graph, runtime, _db(db), opts, samples)
        out[runtime] = statistics.median(samples)
    if show:
        show(len(runtimes), len(runtimes), time.perf_counter() - t0, "done")
    return out
