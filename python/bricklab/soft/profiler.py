"""Per-layer training cost as a function of the kept fraction of channels, measured on this machine.

For every Conv2d / Linear of a model (found by :class:`ChannelGraph`), the profiler builds the
layer alone at a grid of kept input and output fractions and measures one training step of it
(forward, backward of the summed output) -- best-of-N time, and memory as the bytes of the tensors
autograd saves for backward plus weights, gradients and optimizer state. Per layer it fits

    cost(r_in, r_out) = a + b * r_in * r_out + c * r_out

(``b``: the multiply-adds, ``c``: the output activations), by least squares. Whole-model step
time is then ``t0 + k * sum(b * r_in * r_out + c * r_out)`` over the layers, with ``t0`` and ``k``
calibrated on measured whole-model steps at a few uniform keep ratios (they absorb the loss, the
optimizer, activations and framework overhead, including the per-call overhead ``a`` that the
isolated layer runs include). Memory is modelled per channel space (see :class:`Profile`).
:meth:`Profile.validate` measures held-out random mask configurations against the prediction.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .extract import extract
from .graph import ChannelGraph
from .masks import MaskScheduler, kept_count

__all__ = ["LayerCost", "Profile", "profile", "measure_step", "measure_steps", "step_memory_bytes", "summarise",
           "torch_threads", "STATISTICS"]

GRID = (0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass
class LayerCost:
    """Fitted cost of one layer: seconds and bytes as ``a + b*r_in*r_out + c*r_out``."""
    name: str
    time_coef: Tuple[float, float, float]
    memory_coef: Tuple[float, float, float]
    samples: List[Tuple[float, float, float, float]]  # (r_in, r_out, seconds, bytes)

    def time(self, r_in: float, r_out: float) -> float:
        """Predicted seconds of the layer (forward + backward) with input/output keep ratios r_in, r_out."""
        a, b, c = self.time_coef
        return a + b * r_in * r_out + c * r_out

    def scalable_time(self, r_in: float, r_out: float) -> float:
        """The part of :meth:`time` that shrinks with the layer (without the fixed per-call overhead
        of running the layer alone, which the whole-model calibration accounts for once)."""
        _, b, c = self.time_coef
        return b * r_in * r_out + c * r_out

    def memory(self, r_in: float, r_out: float) -> float:
        """Predicted training memory of the layer in bytes with keep ratios r_in, r_out."""
        a, b, c = self.memory_coef
        return a + b * r_in * r_out + c * r_out


def _lstsq_nonneg(a: np.ndarray, y: np.ndarray, signed=()) -> np.ndarray:
    """Least squares ``a @ coef ~ y`` with ``coef >= 0`` except the columns in ``signed``: the best
    fit over every subset of the constrained columns (exact for the few columns used here).
    Columns of very different units (1, seconds, bytes) are solved on a common scale."""
    scale = np.abs(a).max(0)
    scale[scale == 0] = 1.0
    a = a / scale
    n = a.shape[1]
    constrained = [j for j in range(n) if j not in signed]
    best_err, best = None, np.zeros(n)
    for mask in range(1 << len(constrained)):
        cols = sorted(list(signed) + [j for i, j in enumerate(constrained) if mask >> i & 1])
        if not cols:
            continue
        sol, *_ = np.linalg.lstsq(a[:, cols], y, rcond=None)
        coef = np.zeros(n)
        coef[cols] = sol
        if any(coef[j] < 0 for j in constrained):
            continue
        err = float(np.sum((a @ coef - y) ** 2))
        if best_err is None or err < best_err:
            best_err, best = err, coef
    return best / scale


def _fit(samples) -> Tuple[float, float, float]:
    """Least squares for ``a + b*r_in*r_out + c*r_out`` with ``b, c >= 0`` (a cost never grows
    when channels are removed; noisy timings could otherwise give negative slopes)."""
    x = np.array([[1.0, ri * ro, ro] for ri, ro, _ in samples])
    y = np.array([v for _, _, v in samples])
    return tuple(float(c) for c in _lstsq_nonneg(x, y, signed=(0,)))


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct tensors autograd saves for backward while ``fn`` runs its forward."""
    seen: Dict[Tuple[int, int], int] = {}

    def pack(t):
        if isinstance(t, torch.Tensor):
            seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def step_memory_bytes(model: nn.Module, batch: torch.Tensor, target: torch.Tensor, loss_fn=None,
                      optimizer_slots: int = 1) -> int:
    """Training memory of one step: saved activations + weights + gradients + optimizer slots."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    saved = _saved_bytes(lambda: loss_fn(model(batch), target))
    return saved + params * (2 + optimizer_slots)


STATISTICS = ("median", "trimmed", "min")


def summarise(times: Sequence[float], statistic: str = "median") -> float:
    """One number for repeated timings: ``median``, ``trimmed`` (mean of the middle half) or ``min``."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got '{statistic}'")
    t = np.sort(np.asarray(times, dtype=float))
    if t.size == 0:
        raise ValueError("no timings to summarise")
    if statistic == "min":
        return float(t[0])
    if statistic == "median":
        return float(np.median(t))
    cut = t.size // 4
    return float(t[cut:t.size - cut].mean())


@contextlib.contextmanager
def torch_threads(threads: Optional[int]):
    """Runs the block with ``torch.set_num_threads(threads)`` (None: unchanged), then restores."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Stepper:
    """One model with its optimizer: ``step()`` runs and times one SGD training step."""

    def __init__(self, model: nn.Module, batch, target, loss_fn, lr: float):
        self.model, self.batch, self.target = model, batch, target
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step(self) -> float:
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        self.loss_fn(self.model(self.batch), self.target).backward()
        self.opt.step()
        return time.perf_counter() - t0


def measure_steps(models: Sequence[nn.Module], batch: torch.Tensor, target: torch.Tensor, loss_fn=None,
                  rounds: int = 5, repeats: int = 5, warmup: int = 3, statistic: str = "median",
                  threads: Optional[int] = None, lr: float = 0.01, fresh_copies: bool = True) -> List[float]:
    """Seconds of one SGD training step of each of ``models``, measured interleaved.

    Every model is warmed up (``warmup`` steps: allocator, kernel selection, optimizer state), then
    ``rounds`` times each model in turn runs one untimed step (its caches warm again after the
    others ran) and ``repeats`` timed steps, in a new random order every round. Load from other
    processes and slow phases of the machine (seconds long here) thus hit all models alike, and ``statistic`` (default: the median
    of the ``rounds * repeats`` samples) summarises each. ``fresh_copies``: each round times a new
    deep copy of the model (new buffers), so that one lucky or unlucky placement of the weights in
    memory does not decide the figure (on this project's 2-core machine the same sub-model timed
    20-30% apart from one allocation to the next). ``threads``: torch threads while measuring.
    """
    samples: List[List[float]] = [[] for _ in models]
    with torch_threads(threads):
        steppers = [_Stepper(m, batch, target, loss_fn, lr) for m in models]
        for s in steppers:
            for _ in range(warmup):
                s.step()
        order = np.random.default_rng(0)
        for rnd in range(rounds):
            for i in order.permutation(len(steppers)):
                if fresh_copies and rnd > 0:
                    steppers[i] = _Stepper(copy.deepcopy(models[i]), batch, target, loss_fn, lr)
                    steppers[i].step()
                steppers[i].step()
                samples[i].extend(steppers[i].step() for _ in range(repeats))
    return [summarise(t, statistic) for t in samples]


def measure_step(model: nn.Module, batch: torch.Tensor, target: torch.Tensor, loss_fn=None, repeats: int = 5,
                 warmup: int = 2, lr: float = 0.01, statistic: str = "median", threads: Optional[int] = None) -> float:
    """Seconds of one SGD training step (forward, loss, backward, update) of ``model``: ``statistic``
    (default the median) of ``repeats`` timed steps after ``warmup`` untimed ones. To compare
    several models, :func:`measure_steps` interleaves them."""
    return measure_steps([model], batch, target, loss_fn, rounds=1, repeats=repeats, warmup=max(0, warmup - 1),
                         statistic=statistic, threads=threads, lr=lr, fresh_copies=False)[0]


def _layer_input_shape(graph: ChannelGraph, name: str) -> Tuple[int, ...]:
    for node in graph.traced.graph.nodes:
        if node.op == "call_module" and node.target == name:
            return tuple(node.args[0].meta["tensor_meta"].shape)
    raise ValueError(f"layer '{name}' not found in the traced graph")


def _time_layers(probes: Sequence[Tuple[nn.Module, torch.Tensor, bool]], rounds: int, repeats: int,
                 statistic: str) -> List[float]:
    """Seconds of forward + backward of each ``(layer, input, input_needs_grad)``, interleaved like
    :func:`measure_steps`."""
    def run(layer, x):
        t0 = time.perf_counter()
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()
        return time.perf_counter() - t0

    samples: List[List[float]] = [[] for _ in probes]
    for layer, x, _ in probes:
        run(layer, x)
        run(layer, x)
    order = np.random.default_rng(0)
    for _ in range(rounds):
        for i in order.permutation(len(probes)):
            layer, x, _ = probes[i]
            run(layer, x)
            samples[i].extend(run(layer, x) for _ in range(repeats))
    return [summarise(t, statistic) for t in samples]


def _layer_bytes(layer: nn.Module, x: torch.Tensor) -> int:
    params = sum(p.numel() * p.element_size() for p in layer.parameters())
    return _saved_bytes(lambda: layer(x).sum()) + 3 * params


@dataclasses.dataclass
class Profile:
    """A model's per-layer cost model on one machine, for one batch size."""
    graph: ChannelGraph
    layers: Dict[str, LayerCost]
    time_calibration: Tuple[float, float]    # (t0, k): step seconds = t0 + k * sum(layer times)
    memory_calibration: Tuple[float, float]  # (m0, k): step bytes = m0 + k * sum(layer bytes)
    batch_size: int
    calibration: List[Tuple[Dict[int, float], float, int]] = dataclasses.field(default_factory=list)
    # Memory: bytes = param_bytes(ratios) + memory_const + sum_s memory_per_space[s] * r_s, where
    # param_bytes counts Conv/Linear weights (r_in * r_out) and biases (r_out) with gradient and
    # optimizer state, and the per-space terms (activations, batch norm) are measured on the model.
    memory_const: float = 0.0
    memory_per_space: Dict[int, float] = dataclasses.field(default_factory=dict)
    param_slots: int = 3
    threads: Optional[int] = None            # torch threads the timings were taken at (None: as set)
    statistic: str = "median"                # how repeated timings were summarised
    activation_scale: float = 0.0            # e: seconds per byte of saved activations (element-wise work)

    def layer_ratios(self, ratios: Mapping[int, float]) -> Dict[str, Tuple[float, float]]:
        """(r_in, r_out) of every layer under per-space keep ratios (missing spaces: 1)."""
        out = {}
        for name, layer in self.graph.layers.items():
            if layer.kind == "norm":
                continue
            r_out = self._ratio(layer.out_space, ratios)
            total = in_kept = 0
            for sid, n, _ in layer.in_layout:
                total += n
                in_kept += kept_count(self._ratio(sid, ratios), n) if not self.graph.spaces[sid].fixed else n
            out[name] = (in_kept / total if total else 1.0, r_out)
        return out

    def _ratio(self, space, ratios) -> float:
        if space is None or self.graph.spaces[space].fixed:
            return 1.0
        n = self.graph.spaces[space].size
        return kept_count(float(ratios.get(space, 1.0)), n) / n

    def layer_times(self, ratios: Mapping[int, float]) -> Dict[str, float]:
        """Each layer's scalable training time (seconds, before calibration) under ``ratios``."""
        return {n: self.layers[n].scalable_time(*r) for n, r in self.layer_ratios(ratios).items()}

    def predict_time(self, ratios: Mapping[int, float]) -> float:
        """Predicted seconds of one training step under per-space keep ratios."""
        t0, k = self.time_calibration
        return t0 + k * sum(self.layer_times(ratios).values()) + self.activation_scale * self.activation_bytes(ratios)

    def activation_bytes(self, ratios: Mapping[int, float]) -> float:
        """Bytes of the saved activations that shrink with the channel spaces under ``ratios``."""
        return sum(a * self._ratio(s, ratios) for s, a in self.memory_per_space.items())

    def param_bytes(self, ratios: Mapping[int, float]) -> float:
        """Bytes of Conv/Linear weights and biases, with gradients and optimizer state, under ``ratios``."""
        total = 0.0
        for name, (r_in, r_out) in self.layer_ratios(ratios).items():
            mod = self.graph.modules[name]
            total += mod.weight.numel() * 4 * r_in * r_out
            if mod.bias is not None:
                total += mod.bias.numel() * 4 * r_out
        return total * self.param_slots

    def predict_memory(self, ratios: Mapping[int, float]) -> float:
        """Predicted training memory (bytes) of one step under per-space keep ratios."""
        return self.param_bytes(ratios) + self.memory_const + self.activation_bytes(ratios)

    def validate(self, batch, target, configs: int = 5, seed: int = 1, repeats: int = 5, loss_fn=None,
                 rounds: int = 3, extra: Sequence[Mapping[int, float]] = ()) -> List[Dict[str, float]]:
        """Predicted vs measured step time and memory for ``configs`` random held-out per-space
        ratios (uniform in [0.2, 1], drawn from ``seed``) and the configurations in ``extra``.

        All are measured interleaved (:func:`measure_steps`) with the profile's statistic and
        thread count, so that the measurement is taken the way the profile was."""
        rng = np.random.default_rng(seed)
        sched = MaskScheduler(self.graph, "random", seed)
        chosen = [{s: float(rng.uniform(0.2, 1.0)) for s in self.graph.maskable()} for _ in range(configs)]
        chosen += [dict(e) for e in extra]
        subs = [extract(self.graph, sched.masks(i, r)).module for i, r in enumerate(chosen)]
        measured = measure_steps(subs, batch, target, loss_fn, rounds=rounds, repeats=repeats,
                                 statistic=self.statistic, threads=self.threads)
        rows = []
        for i, (ratios, sub, seconds) in enumerate(zip(chosen, subs, measured)):
            mem = step_memory_bytes(sub, batch, target, loss_fn)
            rows.append({"config": i, "predicted_s": self.predict_time(ratios), "measured_s": seconds,
                         "predicted_bytes": self.predict_memory(ratios), "measured_bytes": float(mem),
                         "mean_ratio": float(np.mean(list(ratios.values()))) if ratios else 1.0,
                         "ratios": {int(k): v for k, v in ratios.items()}})
        return rows


def _input_needs_grad(graph: ChannelGraph, name: str) -> bool:
    """Whether the input of layer ``name`` needs a gradient inside the model (it does unless it is
    computed from the model input by parameter-free operations only): the first layer computes no
    input gradient, so its isolated probe must not either."""
    params = {n for n, m in graph.traced.named_modules() if any(True for _ in m.parameters(recurse=False))}
    start = next(n for n in graph.traced.graph.nodes if n.op == "call_module" and n.target == name)
    todo, seen = [start.args[0]], set()
    while todo:
        node = todo.pop()
        if not isinstance(node, torch.fx.Node) or node in seen:
            continue
        seen.add(node)
        if node.op == "call_module" and node.target in params:
            return True
        todo.extend(node.all_input_nodes)
    return False


def profile(model: nn.Module, batch: torch.Tensor, target: torch.Tensor, graph: Optional[ChannelGraph] = None,
            grid: Sequence[float] = GRID, repeats: int = 5, calibration_ratios: Sequence[float] = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15),
            loss_fn=None, calibration_random: int = 0, rounds: int = 3, statistic: str = "median",
            threads: Optional[int] = None, seed: int = 12345) -> Profile:
    """Profiles ``model`` for training at the batch size of ``batch`` on this machine.

    ``batch``/``target``: one representative mini-batch (inputs and class labels). ``grid``: kept
    fractions measured per layer (every pair of input and output fraction). Calibration uses
    whole-model steps at uniform keep ratios ``calibration_ratios`` and ``calibration_random``
    random per-space configurations (seeded by ``seed``; use another seed to validate). Every timing
    is ``statistic`` over ``rounds`` x ``repeats`` steps, with the configurations interleaved (see
    :func:`measure_steps`), at ``threads`` torch threads (None: the current setting).
    """
    summarise([1.0], statistic)  # validates the name early
    graph = graph or ChannelGraph(model, batch)
    layers: Dict[str, LayerCost] = {}
    torch.manual_seed(0)
    with torch_threads(threads):
        for name, layer in graph.layers.items():
            if layer.kind == "norm":
                continue
            mod = graph.modules[name]
            shape = _layer_input_shape(graph, name)
            needs_grad = _input_needs_grad(graph, name)
            in_fixed = all(graph.spaces[s].fixed for s, _, _ in layer.in_layout)
            out_fixed = graph.spaces[layer.out_space].fixed
            points, probes = [], []
            for r_in in ((1.0,) if in_fixed else grid):
                for r_out in ((1.0,) if out_fixed else grid):
                    in_size = max(1, round(shape[1] * r_in))
                    if isinstance(mod, nn.Conv2d):
                        out_size = max(1, round(mod.out_channels * r_out))
                        probe = nn.Conv2d(in_size, out_size, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                          bias=mod.bias is not None)
                    else:
                        out_size = max(1, round(mod.out_features * r_out))
                        probe = nn.Linear(in_size, out_size, bias=mod.bias is not None)
                    x = torch.randn((shape[0], in_size) + tuple(shape[2:])).requires_grad_(needs_grad)
                    points.append((r_in, r_out))
                    probes.append((probe, x, needs_grad))
            seconds = _time_layers(probes, rounds, repeats, statistic)
            samples = [(ri, ro, t, float(_layer_bytes(p, x))) for (ri, ro), t, (p, x, _) in zip(points, seconds, probes)]
            if len(samples) < 3:  # fixed on both sides: a constant cost
                t, m = samples[0][2], samples[0][3]
                layers[name] = LayerCost(name, (t, 0.0, 0.0), (m, 0.0, 0.0), samples)
            else:
                layers[name] = LayerCost(name, _fit([(a, b, t) for a, b, t, _ in samples]),
                                         _fit([(a, b, m) for a, b, _, m in samples]), samples)
        prof = Profile(graph, layers, (0.0, 1.0), (0.0, 1.0), int(batch.shape[0]), threads=threads, statistic=statistic)
        sched = MaskScheduler(graph, "static", 0)
        rng = np.random.default_rng(seed)
        configs = [{s: float(r) for s in graph.maskable()} for r in calibration_ratios]
        configs += [{s: float(rng.uniform(0.15, 1.0)) for s in graph.maskable()} for _ in range(calibration_random)]
        subs = [extract(graph, sched.masks(0, c)).module for c in configs]
        times = measure_steps(subs, batch, target, loss_fn, rounds=rounds, repeats=repeats, statistic=statistic)
    # Memory per space: the whole model's step memory with one space at half width, against the
    # whole model (memory is deterministic, so one measurement per space suffices).
    full_rest = step_memory_bytes(extract(graph, {}).module, batch, target, loss_fn) - prof.param_bytes({})
    per_space = {}
    for space in graph.maskable():
        ratios = {space: 0.5}
        r = prof._ratio(space, ratios)
        half = step_memory_bytes(extract(graph, sched.masks(0, ratios)).module, batch, target, loss_fn)
        per_space[space] = (full_rest - (half - prof.param_bytes(ratios))) / (1.0 - r)
    prof.memory_per_space = per_space
    prof.memory_const = full_rest - sum(per_space.values())
    xs, ms, ys_m = [], [], []
    for ratios, sub, seconds in zip(configs, subs, times):
        nbytes = step_memory_bytes(sub, batch, target, loss_fn)
        prof.calibration.append((ratios, seconds, nbytes))
        ms.append(sum(layers[n].memory(*rr) for n, rr in prof.layer_ratios(ratios).items()))
        ys_m.append(nbytes)
    prof.time_calibration, prof.activation_scale = _calibrate_time(prof, configs, times)
    prof.memory_calibration = _calibrate(ms, ys_m)
    return prof


def _calibrate_time(prof: "Profile", configs, times) -> Tuple[Tuple[float, float], float]:
    """``(t0, k), e`` of ``step = t0 + k * sum(layer times) + e * activation_bytes``, non-negative,
    by least squares over the calibration steps. The activation term stands for the element-wise
    work (batch norm, activations, pooling and their backward), which the Conv/Linear probes do not
    measure and which shrinks with the kept channels too; without it, a constant ``t0`` would
    absorb that work and over-predict small sub-models."""
    layer = np.array([sum(prof.layer_times(c).values()) for c in configs])
    act = np.array([prof.activation_bytes(c) for c in configs])
    y = np.asarray(times, dtype=float)
    if len(configs) >= 3 and np.ptp(act) > 0 and np.ptp(layer) > 0:
        t0, k, e = _lstsq_nonneg(np.stack([np.ones_like(y), layer, act], 1), y)
        if k > 0:
            return (float(t0), float(k)), float(e)
    return _calibrate(layer, y), 0.0


def _calibrate(x, y) -> Tuple[float, float]:
    if len(x) < 2 or np.ptp(x) == 0:
        return (0.0, float(np.mean(y) / max(np.mean(x), 1e-30)))
    a = np.stack([np.ones(len(x)), np.array(x)], 1)
    (c0, k), *_ = np.linalg.lstsq(a, np.array(y, dtype=float), rcond=None)
    if k <= 0 or c0 < 0:  # noisy or degenerate fit: a pure scale through the origin (k > 0)
        x, y = np.array(x, dtype=float), np.array(y, dtype=float)
        return (0.0, float(max((x @ y) / max(x @ x, 1e-30), 1e-12)))
    return float(c0), float(k)
