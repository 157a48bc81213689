"""Whole models on the CPU engine against PyTorch: each torchvision module (random weights,
seeded) is exported to ONNX with its weights, run by bricklab.Session at batch 1 and 4, and
compared with the module's own forward pass (float32, max error relative to the output's scale
<= 1e-4), with fusion on and off."""
import numpy as np
import pytest
import torch
import torchvision

import bricklab
from cpuinfo import cpu_has

MODELS = [
    ("resnet18", {}, (3, 224, 224)),
    ("resnext50_32x4d", {}, (3, 224, 224)),
    ("mobilenet_v2", {}, (3, 224, 224)),
    ("mobilenet_v3_small", {}, (3, 224, 224)),
    ("mobilenet_v3_large", {}, (3, 224, 224)),
    ("squeezenet1_1", {}, (3, 224, 224)),
    ("shufflenet_v2_x0_5", {}, (3, 224, 224)),
    ("mnasnet0_5", {}, (3, 224, 224)),
    ("efficientnet_b0", {}, (3, 224, 224)),
    ("densenet121", {}, (3, 224, 224)),
    ("googlenet", {"aux_logits": False, "init_weights": True}, (3, 224, 224)),
    ("inception_v3", {"aux_logits": False, "init_weights": True}, (3, 299, 299)),
    ("regnet_y_400mf", {}, (3, 224, 224)),
    ("alexnet", {}, (3, 224, 224)),
    ("convnext_tiny", {}, (3, 224, 224)),
    ("vit_b_32", {}, (3, 224, 224)),
    ("segmentation.lraspp_mobilenet_v3_large", {"weights_backbone": None}, (3, 224, 224)),
    ("video.r3d_18", {}, (3, 8, 112, 112)),
]


class OutOnly(torch.nn.Module):
    """Segmentation models return a dict; keep the main output."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out["out"] if isinstance(out, dict) else out


def build(name, kwargs):
    module = torchvision.models
    for part in name.split(".")[:-1]:
        module = getattr(module, part)
    torch.manual_seed(0)
    model = getattr(module, name.split(".")[-1])(weights=None, **kwargs)
    # Non-trivial BatchNorm statistics, so that folding them is actually exercised.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return OutOnly(model).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache = {}

    def get(name, kwargs, shape):
        if name not in cache:
            model = build(name, kwargs)
            path = tmp_path_factory.mktemp("models") / (name.replace(".", "_") + ".onnx")
            x = torch.randn(1, *shape)
            opset = 17 if "vit" in name or "convnext" in name else 13
            torch.onnx.export(model, x, str(path), opset_version=opset, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, do_constant_folding=True)
            cache[name] = (model, str(path))
        return cache[name]

    return get


@pytest.mark.parametrize("name, kwargs, shape", MODELS, ids=[m[0] for m in MODELS])
def test_model_matches_pytorch(exported, name, kwargs, shape):
    model, path = exported(name, kwargs, shape)
    for batch in (1, 4):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(x).numpy()
        for fusion in (True, False) if batch == 1 else (True,):
            session = bricklab.Session(path, batch=batch, fusion=fusion, threads=2)
            assert not session.uses_random_weights
            got = session.run({"input": x.numpy()})["output"]
            assert got.shape == want.shape
            err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)
            assert err <= 1e-4, f"{name} batch {batch} fusion {fusion}: relative error {err:.2e}"


class GroupedSE(torch.nn.Module):
    """Grouped convolutions with 8 channels per group (oneDNN leaves nChw8c behind them), then a
    per-channel operand applied by Mul, Add, Sub and Div: the engine's channel-broadcast kernel
    over blocked storage. 40 channels: not a multiple of 16."""

    def __init__(self, c=40):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, c, 3, padding=1)
        self.g1 = torch.nn.Conv2d(c, c, 3, padding=1, groups=c // 8)
        self.g2 = torch.nn.Conv2d(c, c, 3, padding=1, groups=c // 8)
        self.fc = torch.nn.Conv2d(c, c, 1)
        self.out = torch.nn.Conv2d(c, 8, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = self.g1(x)
        s = torch.sigmoid(self.fc(y.mean((2, 3), keepdim=True)))
        y = self.g2(y * s)
        y = self.g1(y + s) - s
        y = self.g2(y) / (s + 0.5)
        return self.out(y)


def test_channel_broadcast_on_blocked_layouts(tmp_path):
    torch.manual_seed(0)
    model = GroupedSE().eval()
    path = str(tmp_path / "grouped_se.onnx")
    torch.onnx.export(model, torch.randn(1, 3, 20, 20), path, opset_version=13, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    for batch in (1, 3):
        x = torch.randn(batch, 3, 20, 20, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(x).numpy()
        session = bricklab.Session(path, batch=batch, threads=2)
        kinds = session.describe()
        # The path under test is taken where oneDNN leaves 16-channel blocks (AVX-512); with AVX2
        # the whole model runs 8-channel blocked and the operand is fused instead (still checked below).
        if cpu_has("avx512f"):
            assert "(channel-broadcast)" in kinds, kinds
        got = session.run({"input": x.numpy()})["output"]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-4, f"batch {batch}: relative error {err:.2e}"


class Broadcasts(torch.nn.Module):
    """Broadcast patterns oneDNN 2.6 has only reference kernels for: an operand of shape
    [..., 1] (decomposed LayerNorm), [1, 1, H, W], and element-wise max / min against them."""

    def forward(self, x):  # x: [N, C, H, W]
        m = x.mean(-1, keepdim=True)
        d = x - m
        s = torch.sqrt((d * d).mean(-1, keepdim=True) + 1e-5)
        y = d / s
        plane = x.mean(1, keepdim=True)  # [N, 1, H, W]
        y = y * plane[:1] + torch.maximum(x, m) - torch.minimum(y, plane)
        return y


def test_plain_broadcast_kernels(tmp_path):
    path = str(tmp_path / "broadcasts.onnx")
    model = Broadcasts().eval()
    torch.onnx.export(model, torch.randn(2, 5, 6, 7), path, opset_version=13, input_names=["input"], output_names=["output"])
    x = torch.randn(2, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).numpy()
    for fusion in (True, False):
        session = bricklab.Session(path, fusion=fusion, threads=2)
        assert "(broadcast)" in session.describe()
        got = session.run({"input": x.numpy()})["output"]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-5, f"fusion {fusion}: relative error {err:.2e}"


class PaddedPools(torch.nn.Module):
    """Zero Pads before pooling: AvgPool2d with count_include_pad (exported as Pad + AveragePool),
    an asymmetric explicit pad before AveragePool (both folded into the pool), and one before a
    MaxPool (not foldable: max over zeros differs from max over padding)."""

    def forward(self, x):
        a = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)
        b = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 2, 0, 1)), 2, stride=2)
        c = torch.nn.functional.max_pool2d(torch.nn.functional.pad(-x.abs(), (1, 1, 1, 1)), 3, stride=2)
        d = torch.nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return torch.cat([a.flatten(1), b.flatten(1), c.flatten(1), d.flatten(1)], 1)


def test_zero_pads_folded_into_pools(tmp_path):
    path = str(tmp_path / "padded_pools.onnx")
    model = PaddedPools().eval()
    torch.onnx.export(model, torch.randn(2, 16, 9, 11), path, opset_version=13, input_names=["input"], output_names=["output"])
    assert sum(n.op == "Pad" for n in bricklab.load(path).nodes) >= 2
    x = torch.randn(2, 16, 9, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).numpy()
    for fusion in (True, False):
        session = bricklab.Session(path, fusion=fusion, threads=2)
        pads_run = sum(line.split()[0] == "pad" for line in session.describe().splitlines()[1:])
        # Exported Pads: avg_pool2d(padding=1) -> Pad + AveragePool (folded); F.pad -> Pad, then
        # avg_pool2d adds an all-zero Pad (aliased, never a step) before its AveragePool (the
        # explicit Pad stays: its consumer is that Pad); F.pad before max_pool2d stays.
        assert pads_run == (2 if fusion else 3), session.describe()
        got = session.run({"input": x.numpy()})["output"]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-5, f"fusion {fusion}: relative error {err:.2e}"


class ConcatNorm(torch.nn.Module):
    """DenseNet's pre-activation pattern: Concat -> BatchNorm -> ReLU, fused into one pass."""

    def __init__(self, widths=(16, 32, 48)):
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(3, w, 3, padding=1) for w in widths)
        self.bn = torch.nn.BatchNorm2d(sum(widths))
        self.bn2 = torch.nn.BatchNorm2d(sum(widths))
        self.out = torch.nn.Conv2d(sum(widths), 8, 1)
        g = torch.Generator().manual_seed(3)
        for bn in (self.bn, self.bn2):
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
            bn.weight.data.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.data.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)

    def forward(self, x):
        feats = [c(x) for c in self.convs]
        y = torch.relu(self.bn(torch.cat(feats, 1)))
        z = self.bn2(torch.cat(feats[::-1], 1))  # without a ReLU
        return self.out(y) + self.out(z)


@pytest.mark.parametrize("widths", [(16, 32, 48), (8, 24, 5)], ids=["blocked", "odd-channels"])
def test_concat_batchnorm_relu_fusion(tmp_path, widths):
    model = ConcatNorm(widths).eval()
    path = str(tmp_path / "concat_norm.onnx")
    torch.onnx.export(model, torch.randn(2, 3, 12, 10), path, opset_version=13, input_names=["input"], output_names=["output"])
    convs = [n.name for n in bricklab.load(path).nodes if n.op == "Conv"]
    x = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).numpy()
    fused_layouts = 0
    for layout in ("auto", "nhwc", "nchw"):  # the layout the Concat's inputs arrive in
        for fusion in (True, False):
            session = bricklab.Session(path, fusion=fusion, threads=2, variants={c: layout for c in convs[:-1]})
            fused_layouts += fusion and "concat+BatchNormalization" in session.describe()
            got = session.run({"input": x.numpy()})["output"]
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err <= 1e-5, f"{layout}, fusion {fusion}: relative error {err:.2e}"
    assert fused_layouts == 3 if widths == (16, 32, 48) else fused_layouts >= 2


class Resizes(torch.nn.Module):
    """Image resizes (the planar kernel: only H and W change) in every mode exporters write, a 3-D
    (video) trilinear resize (the general kernel), and the dense elementwise fast paths
    (HardSigmoid, HardSwish, same-shape Mul / Sub)."""

    def forward(self, x):
        f = torch.nn.functional
        a = f.interpolate(x, size=(29, 31), mode="bilinear", align_corners=False)
        b = f.interpolate(x, size=(29, 31), mode="bilinear", align_corners=True)
        c = f.interpolate(x, scale_factor=2, mode="nearest")
        d = f.interpolate(x, size=(7, 5), mode="bilinear", align_corners=False)  # downsampling
        v = f.interpolate(x.unsqueeze(2).repeat(1, 1, 3, 1, 1), size=(5, 9, 11), mode="trilinear", align_corners=False)
        e = f.hardsigmoid(a) * f.hardswish(b) - a
        return torch.cat([a.flatten(1), b.flatten(1), c.flatten(1), d.flatten(1), v.flatten(1), e.flatten(1)], 1)


def test_resize_and_dense_elementwise_match_pytorch(tmp_path):
    path = str(tmp_path / "resizes.onnx")
    model = Resizes().eval()
    torch.onnx.export(model, torch.randn(2, 3, 13, 17), path, opset_version=13, input_names=["input"], output_names=["output"])
    x = torch.randn(2, 3, 13, 17, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).numpy()
    ops = {n.op for n in bricklab.load(path).nodes}
    assert {"Resize", "HardSigmoid", "Mul", "Sub"} <= ops
    for fusion in (True, False):
        got = bricklab.Session(path, fusion=fusion, threads=2).run({"input": x.numpy()})["output"]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-5, f"fusion {fusion}: relative error {err:.2e}"


class Branches(torch.nn.Module):
    """An Inception-like block: four branches of different depth off one input, concatenated,
    and a residual sum: steps that can run concurrently, and one that waits for all."""

    def __init__(self):
        super().__init__()
        c = torch.nn.Conv2d
        self.a = c(8, 8, 1)
        self.b = torch.nn.Sequential(c(8, 12, 1), torch.nn.ReLU(), c(12, 8, 3, padding=1))
        self.d = torch.nn.Sequential(c(8, 4, 1), torch.nn.ReLU(), c(4, 8, 5, padding=2), torch.nn.ReLU(), c(8, 8, 3, padding=1))
        self.p = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1), c(8, 8, 1))
        self.out = c(32, 8, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x), self.d(x), self.p(x)], 1)
        return torch.relu(self.out(y) + x)


@pytest.mark.parametrize("workers", [2, 3])
def test_concurrent_branches_match_pytorch(tmp_path, workers):
    path = str(tmp_path / "branches.onnx")
    model = Branches().eval()
    torch.onnx.export(model, torch.randn(2, 8, 15, 15), path, opset_version=13, input_names=["input"], output_names=["output"])
    x = torch.randn(2, 8, 15, 15, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).numpy()
    session = bricklab.Session(path, threads=2, branch_workers=workers)
    assert f"{workers} branch workers" in session.describe()
    for _ in range(20):  # races would show up as run-to-run differences
        got = session.run({"input": x.numpy()})["output"]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-5, f"relative error {err:.2e}"
    steps = session.profile({"input": x.numpy()})
    assert len(steps) == len(bricklab.Session(path, threads=2).profile({"input": x.numpy()}))
    with pytest.raises(bricklab.InvalidArgument, match="branch_workers"):
        bricklab.Session(path, branch_workers=0)
