#!/usr/bin/env python3
# Exports the bricklab model zoo: real torchvision architectures with random weights,
# exported to ONNX, stripped of their weights (see python/bricklab/zoo.py for the
# convention) and written to models/zoo/<name>.onnx, together with models/zoo/MANIFEST.json
# (shapes, parameter counts and independent reference MAC counts) and docs/model-zoo.md.
#
#   .venv/bin/python scripts/export_zoo.py                 # export what is missing
#   .venv/bin/python scripts/export_zoo.py --list          # show the registry
#   .venv/bin/python scripts/export_zoo.py --only resnet50,vit_b_16 --force
#   .venv/bin/python scripts/export_zoo.py --jobs 2 --verify
#
# Needs torch + torchvision (Debian's 1.13 / 0.14), onnx and numpy; onnxruntime for --verify.
# Never downloads anything: every model is built with weights=None (and weights_backbone=None).
from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import importlib.util
import io
import json
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "models" / "zoo"
DEFAULT_DOCS = REPO / "docs" / "model-zoo.md"
ZOO_PY = REPO / "python" / "bricklab" / "zoo.py"
MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1


def load_zoo_module():
    """Import python/bricklab/zoo.py by path (the bricklab package needs its C++ extension)."""
    spec = importlib.util.spec_from_file_location("bricklab_zoo", ZOO_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# ======================================================================================
# Registry
# ======================================================================================

FAMILIES = ("classification", "mobile", "transformer", "segmentation", "video")


@dataclass(frozen=True)
class Spec:
    name: str                       # file stem and manifest name
    family: str                     # one of FAMILIES
    builder: str                    # attribute path under torchvision.models
    kwargs: Tuple[Tuple[str, Any], ...] = ()
    input_shape: Tuple[int, ...] = (1, 3, 224, 224)   # at batch 1
    opsets: Tuple[int, ...] = (13,)  # tried in order, first that exports wins
    outputs: Tuple[str, ...] = ("logits",)
    seg_out: bool = False           # segmentation: model returns a dict, keep only "out"

    @property
    def kwargs_dict(self) -> Dict[str, Any]:
        return dict(self.kwargs)

    def builder_call(self) -> str:
        args = ", ".join(["weights=None"] + [f"{k}={v!r}" for k, v in self.kwargs])
        return f"torchvision.models.{self.builder}({args})"


def _cls(name: str, *extra: Tuple[str, Any], size: int = 224, family: str = "classification") -> Spec:
    return Spec(name, family, name, tuple(extra), (1, 3, size, size))


def _tr(name: str) -> Spec:
    # LayerNormalization only exists from opset 17; fall back if the export fails.
    return Spec(name, "transformer", name, (), (1, 3, 224, 224), opsets=(17, 14, 13))


def _seg(name: str) -> Spec:
    return Spec(name, "segmentation", f"segmentation.{name}",
                (("weights_backbone", None), ("aux_loss", False)), (1, 3, 224, 224),
                outputs=("out",), seg_out=True)


def _vid(name: str) -> Spec:
    return Spec(name, "video", f"video.{name}", (), (1, 3, 8, 112, 112))


REGISTRY: List[Spec] = [
    # --- classification -------------------------------------------------------------
    _cls("alexnet"),
    _cls("vgg11"), _cls("vgg11_bn"), _cls("vgg13"), _cls("vgg13_bn"),
    _cls("vgg16"), _cls("vgg16_bn"), _cls("vgg19"), _cls("vgg19_bn"),
    _cls("resnet18"), _cls("resnet34"), _cls("resnet50"), _cls("resnet101"), _cls("resnet152"),
    _cls("resnext50_32x4d"), _cls("resnext101_32x8d"), _cls("wide_resnet50_2"),
    _cls("densenet121"), _cls("densenet161"), _cls("densenet169"), _cls("densenet201"),
    _cls("inception_v3", ("aux_logits", False), ("init_weights", False), size=299),
    _cls("googlenet", ("aux_logits", False), ("init_weights", False)),
    _cls("regnet_x_400mf"), _cls("regnet_y_400mf"), _cls("regnet_x_800mf"),
    _cls("regnet_y_800mf"), _cls("regnet_x_1_6gf"), _cls("regnet_y_1_6gf"),
    _cls("convnext_tiny"), _cls("convnext_small"),
    # --- mobile -----------------------------------------------------------------------
    *[_cls(n, family="mobile") for n in (
        "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
        "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
        "squeezenet1_0", "squeezenet1_1",
        "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
        "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
        "efficientnet_v2_s",
    )],
    # --- transformer ------------------------------------------------------------------
    _tr("vit_b_16"), _tr("vit_b_32"), _tr("swin_t"), _tr("swin_s"), _tr("maxvit_t"),
    # --- segmentation (224x224, aux_loss=False, only the "out" head) --------------------
    _seg("fcn_resnet50"), _seg("deeplabv3_resnet50"), _seg("deeplabv3_mobilenet_v3_large"),
    _seg("lraspp_mobilenet_v3_large"),
    # --- video (1x3x8x112x112) --------------------------------------------------------------
    _vid("r3d_18"), _vid("mc3_18"), _vid("r2plus1d_18"),
]

# Architectures that were tried and left out, with the reason (kept in the manifest/docs).
EXCLUDED: Dict[str, str] = {
    "swin_v2_t": "torch 1.13 cannot export it: no ONNX symbolic for aten::zero_ (used by "
                 "its continuous relative position bias), at opsets 17, 14 and 13",
}

BY_NAME = {s.name: s for s in REGISTRY}
assert len(BY_NAME) == len(REGISTRY), "duplicate names in REGISTRY"
assert all(s.family in FAMILIES for s in REGISTRY)


# ======================================================================================
# Building the torch model
# ======================================================================================


def build_model(spec: Spec):
    """Build the torch module for ``spec`` with seeded random weights, in eval mode."""
    import torch
    import torchvision

    torch.manual_seed(0)
    fn: Any = torchvision.models
    for part in spec.builder.split("."):
        fn = getattr(fn, part)
    model = fn(weights=None, **spec.kwargs_dict)
    _decorrelate_constant_tensors(model)
    if spec.seg_out:
        model = _SegOut(model)
    return model.eval()


def _decorrelate_constant_tensors(model) -> None:
    """Give constant-initialised tensors (BatchNorm/LayerNorm affine params and running
    stats, zero biases, zero class tokens) seeded random values.

    Without this, all BatchNorm layers of a fresh model are identical (1, 0, 0, 1): after
    Conv+BN fusion many Conv biases are equal and the ONNX exporter deduplicates them into
    ``Identity`` nodes, a graph that no pretrained model would give.  The values stay in
    the usual ranges, so the model remains numerically sane.
    """
    import torch

    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or t.numel() < 2:
                continue
            flat = t.reshape(-1)
            if not bool((flat == flat[0]).all()):
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif float(flat[0]) == 1.0:           # norm scales, layer-scale factors of 1
                t.copy_(1.0 + 0.1 * torch.randn_like(t))
            elif float(flat[0]) == 0.0:           # biases, running means, class tokens
                t.copy_(0.02 * torch.randn_like(t))
            else:                                 # other constants (e.g. layer scale 1e-6)
                t.copy_(flat[0] * (1.0 + 0.1 * torch.randn_like(t)))


def _SegOut(inner):
    """Wrap a torchvision segmentation model so that it returns only its "out" tensor."""
    import torch

    class SegOut(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)["out"]

    return SegOut(inner)


# ======================================================================================
# Independent reference MAC count (batch 1)
# ======================================================================================


def count_macs(model, x) -> Dict[str, Any]:
    """Count multiply-accumulates of one forward pass of ``model`` on ``x``.

    * Conv{1,2,3}d modules (forward hooks): out_numel * (in_channels/groups) * prod(kernel)
    * Linear modules (forward hooks): out_numel * in_features
    * MultiheadAttention modules (analytic, through a wrapper of their forward, since
      torchvision passes query/key/value as keywords): the q/k/v and output projections
      go to "convlinear", QK^T and attention*V to "attention".
    * Everything else is seen through a TorchFunctionMode, but only outside the hooked
      modules: functional linear/conv (e.g. Swin's attention uses F.linear with the
      weights of its nn.Linear modules) count as "convlinear"; matmul/bmm/baddbmm/mm/addmm
      between two activations (attention) count as "attention", with a Parameter operand
      as "convlinear"; two-operand einsums (MaxViT's attention) likewise.
    * Ops that multiply-accumulate but are not understood (bilinear, ...) make the count
      incomplete.  Elementwise ops, normalisation, pooling and resizing are not MACs.
    Returns {"convlinear", "attention", "total", "complete", "outputs"}.
    """
    import torch
    import torch.nn as nn

    state = {"depth": 0, "convlinear": 0, "attention": 0, "unknown": set()}

    def prod(xs) -> int:
        return int(math.prod(int(v) for v in xs))

    def pre(_mod, _inp):
        state["depth"] += 1

    def conv_hook(mod, _inp, out):
        state["depth"] -= 1
        state["convlinear"] += out.numel() * (mod.in_channels // mod.groups) * prod(mod.kernel_size)

    def linear_hook(mod, _inp, out):
        state["depth"] -= 1
        state["convlinear"] += out.numel() * mod.in_features

    def count_mha(mod, args, kwargs) -> None:
        # torchvision calls self_attention(query=x, key=x, value=x, ...): the arguments
        # may be keywords, which forward hooks of torch 1.13 do not see, hence a wrapper.
        q = args[0] if len(args) > 0 else kwargs.get("query")
        k = args[1] if len(args) > 1 else kwargs.get("key")
        if q is None or k is None:
            state["unknown"].add("MultiheadAttention(arguments)")
            return
        e = mod.embed_dim
        if q.dim() == 2:                      # unbatched (L, E)
            n, lq, s = 1, q.shape[0], k.shape[0]
        elif mod.batch_first:                 # (N, L, E)
            n, lq, s = q.shape[0], q.shape[1], k.shape[1]
        else:                                 # (L, N, E)
            n, lq, s = q.shape[1], q.shape[0], k.shape[0]
        state["convlinear"] += n * lq * e * e + n * s * mod.kdim * e + n * s * mod.vdim * e
        state["convlinear"] += n * lq * e * e                       # out_proj
        state["attention"] += 2 * n * lq * s * e                     # QK^T and attn @ V

    def wrap_mha(mod):
        orig = mod.forward

        def forward(*args, **kwargs):
            count_mha(mod, args, kwargs)
            state["depth"] += 1
            try:
                return orig(*args, **kwargs)
            finally:
                state["depth"] -= 1

        mod.forward = forward               # instance attribute shadows the class method
        return orig

    handles = []
    wrapped = []
    for mod in model.modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hook = conv_hook
        elif isinstance(mod, nn.Linear):
            hook = linear_hook
        elif isinstance(mod, nn.MultiheadAttention):
            wrapped.append((mod, wrap_mha(mod)))
            continue
        else:
            continue
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(hook))

    unknown_mac_ops = {"bilinear", "tensordot", "chain_matmul", "addbmm", "addmv",
                       "mv", "inner", "outer", "dot", "vdot", "kron"}

    def count_einsum(args) -> None:
        # Two-operand einsum: MACs = product of the sizes of all distinct indices.
        eq = args[0].replace(" ", "")
        ops = args[1:]
        if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
            ops = tuple(ops[0])
        lhs = eq.split("->")[0].split(",")
        if len(ops) == 1:
            return                            # transpose / reduction: no MACs
        if len(ops) != 2 or "..." in eq or len(lhs) != 2:
            state["unknown"].add("einsum")
            return
        sizes: Dict[str, int] = {}
        for sub, t in zip(lhs, ops):
            for ch, d in zip(sub, t.shape):
                sizes[ch] = max(sizes.get(ch, 1), int(d))
        bucket = "convlinear" if any(isinstance(t, nn.Parameter) for t in ops) else "attention"
        state[bucket] += prod(sizes.values())

    class Mode(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if state["depth"] > 0:
                return out
            fname = getattr(func, "__name__", "")
            if fname in ("linear",):
                state["convlinear"] += out.numel() * args[1].shape[-1]
            elif fname in ("conv1d", "conv2d", "conv3d"):
                w = args[1]
                state["convlinear"] += out.numel() * prod(w.shape[1:])
            elif fname.startswith("conv_transpose"):
                inp, w = args[0], args[1]
                state["convlinear"] += inp.numel() * prod(w.shape[1:])
            elif fname in ("matmul", "__matmul__", "__rmatmul__", "bmm", "mm",
                           "baddbmm", "addmm"):
                a, b = (args[1], args[2]) if fname in ("baddbmm", "addmm") else (args[0], args[1])
                if fname == "__rmatmul__":
                    a, b = b, a
                k = a.shape[-1] if a.dim() >= 1 else 1
                bucket = "convlinear" if isinstance(a, nn.Parameter) or isinstance(b, nn.Parameter) \
                    else "attention"
                state[bucket] += out.numel() * int(k)
            elif fname == "einsum":
                count_einsum(args)
            elif fname in unknown_mac_ops:
                state["unknown"].add(fname)
            return out

    try:
        with torch.enable_grad(), Mode():   # grad on: MultiheadAttention takes its slow path
            y = model(x)
    finally:
        for h in handles:
            h.remove()
        for mod, _orig in wrapped:
            del mod.forward                   # back to the class method
    assert state["depth"] == 0, "unbalanced module hooks"
    outs = y if isinstance(y, (tuple, list)) else [y]
    return {
        "convlinear": int(state["convlinear"]),
        "attention": int(state["attention"]),
        "total": int(state["convlinear"] + state["attention"]),
        "complete": not state["unknown"],
        "unknown": sorted(state["unknown"]),
        "outputs": [list(o.shape) for o in outs],
    }


# ======================================================================================
# Export of one model (runs in a worker process)
# ======================================================================================


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _export_onnx(spec: Spec, model, x) -> Tuple[Any, int, List[str]]:
    """torch.onnx.export into memory; returns (ModelProto, opset, notes)."""
    import onnx
    import torch

    notes: List[str] = []
    dynamic = {"input": {0: "batch"}}
    dynamic.update({o: {0: "batch"} for o in spec.outputs})
    last_err: Optional[BaseException] = None
    for opset in spec.opsets:
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, x, buf, opset_version=opset, input_names=["input"],
                                  output_names=list(spec.outputs), dynamic_axes=dynamic,
                                  do_constant_folding=True)
        except Exception as e:  # noqa: BLE001 - try the next opset
            notes.append(f"opset {opset} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            last_err = e
            continue
        return onnx.load_from_string(buf.getvalue()), opset, notes
    raise RuntimeError("; ".join(notes)) from last_err


def _verify(zoo, path: Path, spec: Spec, out_shapes: List[List[int]]) -> str:
    """Materialize the stripped file and run it in onnxruntime at batch 1 and 2."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    model = zoo.materialize(onnx.load(str(path)), seed=0)
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(os.environ.get("BRICKLAB_EXPORT_THREADS", "1")))
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    results = []
    for batch in (1, 2):
        x = rng.standard_normal((batch,) + tuple(spec.input_shape[1:])).astype(np.float32)
        ys = sess.run(None, {"input": x})
        for y, want in zip(ys, out_shapes):
            if list(y.shape) != [batch] + list(want[1:]):
                raise RuntimeError(f"batch {batch}: output shape {list(y.shape)}, expected "
                                   f"{[batch] + list(want[1:])}")
            if not np.isfinite(y).all():
                raise RuntimeError(f"batch {batch}: non-finite outputs")
        results.append(f"b{batch} ok |y|max={max(float(np.abs(y).max()) for y in ys):.3g}")
    return ", ".join(results)


def export_one(spec: Spec, out_dir: str, force: bool, verify: bool, threads: int,
               old_entry: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Export (or just describe) one model; returns {"entry"|"error", "status", "seconds"}."""
    t0 = time.time()
    try:
        import onnx
        import torch

        warnings.filterwarnings("ignore")   # tracer / meshgrid warnings of torch 1.13
        torch.set_num_threads(threads)
        os.environ["BRICKLAB_EXPORT_THREADS"] = str(threads)
        zoo = load_zoo_module()
        path = Path(out_dir) / f"{spec.name}.onnx"
        exists = path.exists() and not force
        verify_msg = ""
        if exists and old_entry and old_entry.get("sha256") == _sha256(path) \
                and old_entry.get("builder") == spec.builder_call() and not verify:
            return {"entry": old_entry, "status": "up to date", "seconds": time.time() - t0}

        model = build_model(spec)
        params = sum(p.numel() for p in model.parameters())
        x = torch.randn(*spec.input_shape)
        macs = count_macs(model, x)
        notes: List[str] = []
        if exists:
            proto = onnx.load(str(path))
            opset = _file_opset(proto)
            status = "kept"
        else:
            # Not under no_grad(): with grad enabled nn.MultiheadAttention takes its slow
            # path, whose ops export (the fused fast path has no ONNX symbolic in 1.13).
            proto, opset, notes = _export_onnx(spec, model, x)
            stripped = zoo.strip(proto)
            stripped.doc_string = (f"bricklab model zoo: {spec.builder_call()}, torch "
                                   f"{torch.__version__}, random weights (seed 0), stripped")
            tmp = path.with_suffix(".onnx.tmp")
            zoo.save_model(stripped, tmp)
            os.replace(tmp, path)
            proto = stripped
            status = "exported"
        if verify:
            verify_msg = _verify(zoo, path, spec, macs["outputs"])

        op_types = sorted({n.op_type for n in proto.graph.node})
        entry = {
            "name": spec.name,
            "family": spec.family,
            "file": path.name,
            "builder": spec.builder_call(),
            "opset": opset,
            "input_name": "input",
            "input_shape": ["batch"] + list(spec.input_shape[1:]),
            "input_dtype": "float32",
            "output_names": list(spec.outputs),
            "output_shapes": [["batch"] + s[1:] for s in macs["outputs"]],
            "params": int(params),
            "ref_macs_convlinear": macs["convlinear"],
            "ref_macs_attention": macs["attention"],
            "ref_macs": macs["total"],
            "ref_macs_complete": macs["complete"],
            "nodes": len(proto.graph.node),
            "initializers": len(proto.graph.initializer),
            "op_types": op_types,
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
        }
        if macs["unknown"]:
            entry["ref_macs_unknown_ops"] = macs["unknown"]
        if notes:
            entry["export_notes"] = notes
        return {"entry": entry, "status": status, "verify": verify_msg,
                "seconds": time.time() - t0}
    except Exception as e:  # noqa: BLE001 - reported, the other models go on
        return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(),
                "status": "FAILED", "seconds": time.time() - t0}


# ======================================================================================
# Manifest and docs
# ======================================================================================


def _fmt_count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} G"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def write_manifest(out_dir: Path, entries: List[Dict[str, Any]]) -> Dict[str, Any]:
    import onnx
    import torch
    import torchvision

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "scripts/export_zoo.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "weights": "stripped (see python/bricklab/zoo.py); materialize with "
                   "`python -m bricklab.zoo materialize`",
        "ref_macs_note": "batch 1; conv: out_numel*(in_channels/groups)*prod(kernel); linear: "
                         "out_numel*in_features; attention: QK^T + attn*V matmuls",
        "families": sorted({e["family"] for e in entries}, key=FAMILIES.index),
        "count": len(entries),
        "excluded": EXCLUDED,
        "models": entries,
    }
    tmp = out_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out_dir / MANIFEST_NAME)
    return manifest


def write_docs(path: Path, manifest: Dict[str, Any], out_dir: Path) -> None:
    entries = manifest["models"]
    total_bytes = sum(e["bytes"] for e in entries)
    try:
        rel_out = out_dir.resolve().relative_to(REPO)
    except ValueError:
        rel_out = out_dir
    lines = [
        "# Model zoo",
        "",
        "<!-- Generated by scripts/export_zoo.py from models/zoo/MANIFEST.json: do not edit",
        "     by hand, re-run the script instead. -->",
        "",
        f"`{rel_out}/` holds {len(entries)} real torchvision architectures "
        f"({', '.join(manifest['families'])}) exported to ONNX with random weights and then "
        f"*stripped* of their weights, {total_bytes / 1e6:.1f} MB in all. They are the "
        "inputs of bricklab's analyses and benchmarks: bricklab needs the graph, the shapes "
        "and the data types of a model, not the values of its weights.",
        "",
        "## Regenerating the zoo",
        "",
        "```sh",
        ".venv/bin/python scripts/export_zoo.py --list          # the registry",
        ".venv/bin/python scripts/export_zoo.py --jobs 2        # export what is missing",
        ".venv/bin/python scripts/export_zoo.py --only resnet50,vit_b_16 --force --verify",
        "```",
        "",
        "* Models are built with `weights=None` (and `weights_backbone=None`): nothing is "
        "downloaded. `torch.manual_seed(0)` before each model; constant-initialised tensors "
        "(BatchNorm/LayerNorm parameters and running statistics, zero biases) get seeded "
        "random values too, so that the exporter does not merge identical Conv biases into "
        "`Identity` nodes as it would for a freshly initialised model.",
        "* Export: `torch.onnx.export(model.eval(), x, f, opset_version=OPSET, "
        "input_names=[\"input\"], dynamic_axes={\"input\": {0: \"batch\"}, <outputs>: {0: "
        "\"batch\"}}, do_constant_folding=True)`. OPSET is 13, and 17 for transformers (for "
        "`LayerNormalization`; 14 then 13 are tried if 17 fails). In eval mode the exporter "
        "folds BatchNorm into the preceding Conv.",
        "* Inputs: 1x3x224x224 images (inception_v3: 299x299), segmentation at 224x224 "
        "(`aux_loss=False`, only the `out` head), video 1x3x8x112x112 (N, C, T, H, W). The "
        "batch dimension is dynamic (`batch`).",
        "* The script is idempotent: a model whose file exists is kept (and its manifest "
        "entry reused when the file's sha256 matches) unless `--force` is given. "
        "`--verify` materializes each file and runs it in onnxruntime at batch 1 and 2.",
        f"* Exported with torch {manifest['torch']}, torchvision {manifest['torchvision']}, "
        f"onnx {manifest['onnx']}.",
        "",
        "## The stripped-weights convention",
        "",
        "Implemented by `python/bricklab/zoo.py` (pure Python: numpy + onnx).",
        "",
        "* A *stripped* initializer keeps `name`, `data_type` and `dims` and has NO data "
        "field: no `raw_data`, no typed `*_data`, no `external_data`, `data_location` "
        "DEFAULT.",
        "* Only floating-point tensors (FLOAT, FLOAT16, BFLOAT16, DOUBLE) with more than 64 "
        "elements are stripped; integer tensors and small tensors keep their values (shape "
        "inference needs Reshape shapes, Resize scales, Slice starts, Pad pads, ...).",
        "* The same rule applies to the `value` tensor of `Constant` nodes.",
        "* The model gets the `metadata_props` entry `bricklab.weights` = `stripped`.",
        "",
        "A stripped model keeps all its shapes, so shape inference and cost analysis work on "
        "it, but `onnx.checker` rejects it and runtimes cannot run it. To get a runnable "
        "model with deterministic random weights:",
        "",
        "```sh",
        "python -m bricklab.zoo materialize models/zoo/resnet50.onnx /tmp/resnet50.onnx --seed 0",
        "python -m bricklab.zoo strip full_model.onnx stripped.onnx",
        "python -m bricklab.zoo info models/zoo/resnet50.onnx",
        "```",
        "",
        "From Python: `strip(model)`, `is_stripped(model)`, `materialize(model, seed=0)`, "
        "`strip_file(src, dst)`, `materialize_file(src, dst, seed=0)`. Materialized values: "
        "normal with std `1/sqrt(fan_in)` for tensors of rank >= 2, small values around 0 "
        "for rank 1, uniform(0.5, 1.5) for normalisation scales and BatchNorm variances; one "
        "random stream per (seed, tensor name).",
        "",
        "## MANIFEST.json",
        "",
        "One entry per model: `name`, `family`, `file`, `builder` (the torchvision call), "
        "`opset`, `input_name`, `input_shape` (batch as the string `\"batch\"`), "
        "`input_dtype`, `output_names`, `output_shapes`, `params` (parameter count of the "
        "torch module), `nodes`, `initializers`, `op_types`, `bytes`, `sha256`, and an "
        "independent reference MAC count at batch 1 taken on the torch module with forward "
        "hooks:",
        "",
        "* `ref_macs_convlinear`: Conv{1,2,3}d = out_numel x (in_channels/groups) x "
        "prod(kernel_size); Linear = out_numel x in_features (also the functional q/k/v and "
        "output projections of attention: `nn.MultiheadAttention` is counted analytically, "
        "Swin's `F.linear` calls through a `TorchFunctionMode`);",
        "* `ref_macs_attention`: the activation x activation matmuls of attention (QK^T and "
        "attention x V);",
        "* `ref_macs` = the sum; `ref_macs_complete` is true when no multiply-accumulating "
        "op escaped the count (elementwise ops, normalisation, pooling, resizing are not "
        "counted as MACs).",
        "",
        "## Models",
        "",
        "| model | family | opset | input | params | ref MACs (conv+linear) | ref MACs (attention) "
        "| complete | nodes | file size |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | :---: | ---: | ---: |",
    ]
    for e in entries:
        shape = "x".join(str(d) for d in e["input_shape"][1:])
        lines.append(
            f"| {e['name']} | {e['family']} | {e['opset']} | {shape} | {_fmt_count(e['params'])} "
            f"| {_fmt_count(e['ref_macs_convlinear'])} | {_fmt_count(e['ref_macs_attention'])} "
            f"| {'yes' if e['ref_macs_complete'] else 'no'} | {e['nodes']} "
            f"| {e['bytes'] / 1024:.0f} KiB |")
    lines.append("")
    if manifest["excluded"]:
        lines += ["## Left out", ""]
        lines += [f"* `{k}`: {v}" for k, v in manifest["excluded"].items()]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# ======================================================================================
# Command line
# ======================================================================================


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__ or "Export the bricklab model zoo.")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default models/zoo)")
    ap.add_argument("--only", default="", help="comma-separated model names to export")
    ap.add_argument("--list", action="store_true", help="list the registry and exit")
    ap.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    ap.add_argument("--force", action="store_true", help="re-export models whose file exists")
    ap.add_argument("--verify", action="store_true",
                    help="materialize every model and run it in onnxruntime (batch 1 and 2)")
    ap.add_argument("--docs", default=str(DEFAULT_DOCS),
                    help="markdown file generated from the manifest (default docs/model-zoo.md)")
    ap.add_argument("--no-docs", action="store_true", help="do not write the markdown file")
    args = ap.parse_args(argv)

    if args.list:
        for s in REGISTRY:
            print(f"{s.name:32s} {s.family:14s} opset {'/'.join(map(str, s.opsets)):9s} "
                  f"input {'x'.join(map(str, s.input_shape))}")
        for name, why in EXCLUDED.items():
            print(f"{name:32s} (excluded: {why})")
        return 0

    selected = REGISTRY
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            print(f"error: unknown model(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        selected = [BY_NAME[n] for n in names]

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    old: Dict[str, Dict[str, Any]] = {}
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.exists():
        try:
            old = {e["name"]: e for e in json.loads(manifest_path.read_text())["models"]}
        except (ValueError, KeyError):
            print("warning: unreadable MANIFEST.json, rebuilding it", file=sys.stderr)

    # Models outside --only but with a file still belong in the manifest: they are
    # described too (reusing their old entry when the file is unchanged).
    sel_names = {s.name for s in selected}
    todo = list(selected) + [s for s in REGISTRY if s.name not in sel_names
                             and (out_dir / f"{s.name}.onnx").exists()]
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    t_start = time.time()
    results: Dict[str, Dict[str, Any]] = {}

    def report(i: int, spec: Spec, res: Dict[str, Any]) -> None:
        results[spec.name] = res
        extra = ""
        if "entry" in res:
            e = res["entry"]
            extra = (f"opset {e['opset']:2d}  {e['bytes'] / 1024:7.0f} KiB  "
                     f"{e['ref_macs'] / 1e9:7.3f} GMACs")
            if res.get("verify"):
                extra += f"  ort: {res['verify']}"
        else:
            extra = res["error"].splitlines()[0][:300]
        print(f"[{i:2d}/{len(todo)}] {spec.name:30s} {spec.family:14s} {res['status']:10s} "
              f"{res['seconds']:6.1f} s  {extra}", flush=True)

    force_names = sel_names if args.force else set()
    call_args = [(s, str(out_dir), s.name in force_names, args.verify and s.name in sel_names,
                  threads, old.get(s.name)) for s in todo]
    if jobs == 1:
        for i, a in enumerate(call_args, 1):
            report(i, a[0], export_one(*a))
    else:
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futs = {pool.submit(export_one, *a): a[0] for a in call_args}
            for i, fut in enumerate(cf.as_completed(futs), 1):
                report(i, futs[fut], fut.result())

    entries = []
    for s in REGISTRY:   # registry order; failed models of this run keep their old entry
        res = results.get(s.name)
        if res and "entry" in res:
            entries.append(res["entry"])
        elif s.name in old and (out_dir / f"{s.name}.onnx").exists():
            entries.append(old[s.name])
    manifest = write_manifest(out_dir, entries)
    if not args.no_docs:
        write_docs(Path(args.docs), manifest, out_dir)

    failed = [n for n, r in results.items() if "error" in r]
    total = sum(e["bytes"] for e in entries)
    print(f"done in {time.time() - t_start:.1f} s: {len(entries)} models in manifest, "
          f"{total / 1e6:.2f} MB, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}")
    for n in failed:
        print(f"--- {n} ---\n{results[n]['trace']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
