"""DLBricks: benchmark a suite of models by timing only their unique layers ("bricks"), and
predict each model's latency from them.

    >>> import bricklab
    >>> d = bricklab.bricks.decompose(["models/zoo/resnet18.onnx", "models/zoo/resnet34.onnx"], batch=8)
    >>> d.instances, d.unique                     # layer instances vs unique bricks
    >>> bricklab.bricks.benchmark(d, db="bricks.sqlite", tolerance=0.02)
    >>> bricklab.predict("models/zoo/resnet50.onnx", db="bricks.sqlite", batch=8)["sum_ms"]

Runner options (the same for bricks, models and predictions, so that results share a
fingerprint): ``threads`` (default 1), ``pin``, ``cold_weights`` (flush all caches before every
repetition), ``evict_weights`` (default True: evict a brick's own weights from the caches before
each repetition, as a model run leaves them), ``evict_outputs`` (default False; True: also evict
the buffers a brick writes that are at least a core's L2 cache in size; or a byte count),
``warmup``, ``min_reps``, ``max_reps``,
``tolerance`` (relative half-width of the median's 95% CI, default 0.02), ``budget_s`` (per
brick, default 10), ``fusion``, ``clock`` (``"wall"`` or ``"cpu"``).
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Optional, Union

from . import _core, _progress

__all__ = [
    "decompose", "benchmark", "predict", "measure_model", "emit", "fingerprint", "node_key", "group_key",
    "subgraph", "to_onnx", "default_db", "Decomposition", "MissingBricksError", "NoisyBricksError",
    "NoisyMeasurementWarning",
]


class MissingBricksError(_core.Error, LookupError):
    """The database lacks some of a model's bricks, so its predicted latency would be a partial sum.

    ``missing``: the ids of the bricks not measured on this machine (with these runner settings);
    ``prediction``: the partial prediction (what ``predict(..., allow_missing=True)`` returns).
    Benchmark the model first (``bricklab.bricks.benchmark``), or pass ``allow_missing=True``.
    """

    def __init__(self, message: str, missing: list, prediction: dict):
        super().__init__(message)
        self.missing = missing
        self.prediction = prediction

Decomposition = _core.Decomposition
ModelLike = Union[str, os.PathLike, "_core.Model"]


def _runner(options: dict) -> dict:
    opts = {"threads": 1}
    opts.update(options)
    return opts


def _load(model: ModelLike, batch: Optional[int]):
    if isinstance(model, _core.Model):
        if batch is not None:
            raise ValueError("batch applies when a path is given; load the model with bricklab.load(path, batch=...)")
        return model
    return _core.load(os.fspath(model), batch)


def decompose(models: Union[ModelLike, Iterable[ModelLike]], batch: Optional[int] = None, granularity: str = "fused",
              **runner) -> "_core.Decomposition":
    """Split models into bricks. ``granularity``: "op", "fused" (the engine's fused groups) or "seq:K"."""
    if isinstance(models, (str, os.PathLike, _core.Model)):
        models = [models]
    elif models is None or not hasattr(models, "__iter__"):
        raise TypeError(f"decompose(): models must be a path, a bricklab.Model or a list of them, got {type(models).__name__}")
    graphs = [_load(m, batch) for m in models]
    if not graphs:
        raise ValueError("decompose: no models given")
    return _core.bricks_decompose(graphs, granularity, _runner(runner))


def benchmark(models, db: Optional[Union[str, os.PathLike]] = None, batch: Optional[int] = None,
              granularity: str = "fused", queue: str = "", progress: _progress.ProgressArg = None,
              remeasure: bool = False, **runner) -> dict:
    """Time every brick of the models not yet in ``db`` (a SQLite path or postgresql:// URL) for this
    machine's fingerprint, and those stored marked noisy. ``queue``: claim bricks from a shared
    PostgreSQL work queue of that name. ``remeasure=True``: measure every brick again and replace
    its stored result (this fingerprint only).

    A measurement taken while the machine is busy (CPU pressure, steal time, other runnable tasks;
    see docs/measurement-quality.md) is retried ``busy_retries`` times (default 2) after waiting up
    to ``busy_wait_s`` (5) for quiet; one that stays busy is stored marked noisy, with a warning.

    ``progress``: a line with counts and time left on stderr (None: when stderr is a terminal or in
    a notebook; True/False; or a callable ``f(done, total, elapsed_s, label)``). Returns counts:
    ``bricks``, ``already_stored``, ``measured``, ``remeasured``, ``noisy``, ``wall_s``, ``fingerprint``.
    """
    d = models if isinstance(models, _core.Decomposition) else decompose(models, batch, granularity, **runner)
    s = d.benchmark(_db(db), _runner(runner), queue, _progress.callback(progress, "bricks"), remeasure)
    if s["noisy"]:
        warnings.warn(f"{s['noisy']} brick measurement(s) stayed noisy (the machine was busy); they are stored marked "
                      f"noisy, predict() does not use them without accept_noisy=True, and the next benchmark() "
                      f"measures them again", NoisyMeasurementWarning, stacklevel=2)
    return s


def predict(model: ModelLike, db: Optional[Union[str, os.PathLike]] = None, batch: Optional[int] = None,
            granularity: str = "fused", allow_missing: bool = False, accept_noisy: bool = False, **runner) -> dict:
    """The model's latency from its bricks in ``db``: ``sum_ms`` (sequential), ``critical_path_ms``
    (parallel branches), ``ci_ms``, the per-brick breakdown (``bricks``) and ``complete``.

    Raises ``MissingBricksError`` (a ``LookupError``) naming the bricks the database lacks, unless
    ``allow_missing=True``, which returns the partial sums with the ``missing`` list instead.
    Raises ``NoisyBricksError`` naming the bricks stored marked noisy (measured on a busy machine),
    unless ``accept_noisy=True``, which uses them with a ``NoisyMeasurementWarning``; ``noisy`` lists them.
    """
    d = decompose([model], batch, granularity, **runner)
    p = d.predict(0, _db(db), _runner(runner), accept_noisy)
    if p["noisy"]:
        id_of = {u["key"]: u["id"] for u in p["bricks"]}
        ids = [id_of.get(k, k[:60]) for k in p["noisy"]]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        if not accept_noisy:
            raise NoisyBricksError(
                f"{p['model']}: {len(ids)} of its bricks are stored marked noisy in {_db(db)} (measured while the machine "
                f"was busy: {shown}); re-measure them on a quiet machine (bricklab.bricks.benchmark, which measures noisy "
                f"ones again, or remeasure=True) or pass accept_noisy=True", ids, p)
        warnings.warn(f"{p['model']}: the prediction uses {len(ids)} brick(s) stored marked noisy ({shown})",
                      NoisyMeasurementWarning, stacklevel=2)
    if p["missing"] and not allow_missing:
        ids = p["missing"]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise MissingBricksError(
            f"{p['model']}: {len(ids)} of its bricks are not in the database {_db(db)} for this machine and these "
            f"runner settings ({shown}); benchmark them first (bricklab.bricks.benchmark) or pass allow_missing=True",
            ids, p)
    return p


class NoisyMeasurementWarning(UserWarning):
    """Measurements taken while the machine was busy were stored or used (see docs/measurement-quality.md)."""


class NoisyBricksError(_core.Error, LookupError):
    """A prediction would rest on bricks stored marked noisy. ``noisy``: their ids; ``prediction``: the
    prediction with them (what ``predict(..., accept_noisy=True)`` returns)."""

    def __init__(self, message: str, noisy: list, prediction: dict):
        super().__init__(message)
        self.noisy = noisy
        self.prediction = prediction


def _db(db) -> str:
    return os.fspath(db) if db else default_db()


def measure_model(model: ModelLike, batch: Optional[int] = None, **runner) -> dict:
    """End-to-end latency of the whole model under the same runner and stopping rule as bricks."""
    return _core.bricks_measure_model(_load(model, batch), _runner(runner))


EMIT_LIMIT_BYTES = 1 << 30


def emit(models, out_dir, batch: Optional[int] = None, granularity: str = "fused", weight_seed: int = 0,
         force: bool = False, **runner) -> list:
    """Write every brick as a standalone ONNX model ``out_dir/<id>.onnx``; returns the paths.

    Refuses (``bricklab.InvalidArgument``, a ``ValueError``) when the bricks would take more than
    ``EMIT_LIMIT_BYTES`` (1 GiB, weights included; ``Decomposition.emit_bytes`` says how much) unless
    ``force=True``.
    """
    d = models if isinstance(models, _core.Decomposition) else decompose(models, batch, granularity, **runner)
    if d.emit_bytes > EMIT_LIMIT_BYTES and not force:
        raise _core.InvalidArgument(
            f"emit to {os.fspath(out_dir)}: the {len(d.bricks)} bricks would take about {d.emit_bytes / 1e9:.2f} GB "
            f"(over the 1 GiB limit); emit fewer models, or pass force=True")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return d.emit(out_dir, weight_seed)


def fingerprint(**runner) -> dict:
    """This machine's fingerprint for the runner settings: {'id': ..., 'json': ...}."""
    return _core.bricks_fingerprint(_runner(runner))


def node_key(model, node: str) -> str:
    """Canonical brick key of one node."""
    return _core.bricks_node_key(model, node)


def group_key(model, nodes) -> str:
    """Canonical brick key of a group of nodes."""
    return _core.bricks_group_key(model, list(nodes))


def subgraph(model, nodes) -> "_core.Model":
    """The runnable graph of some nodes (what a brick runs), as a Model usable with bricklab.Session."""
    return _core.bricks_subgraph(model, list(nodes))


def to_onnx(model, weight_seed: int = 0) -> bytes:
    """Serialized standalone ONNX model of a graph (e.g. a subgraph)."""
    return _core.bricks_to_onnx(model, weight_seed)


def default_db() -> str:
    """The default results database path ($BRICKLAB_DB or the user's cache directory)."""
    return _core.bricks_default_db()
