"""The project's own face detectors: an EXTD-style and an SSH-style network, both with the
YuNet output layout so that ``picoface convert --head yunet``, :class:`picoface.FaceDetector`
and ``picoface eval wider`` run them unchanged.

* **EXTD-style** (after Yoo, Han and Yun, "EXTD: Extremely Tiny Face Detector via Iterative
  Filter Reuse", arXiv 1906.06579): a stem brings the image to stride 4, then *one* block
  with one set of conv weights is applied three times, each pass halving the resolution, to
  give strides 8, 16 and 32 — the pyramid costs the parameters of one level. Only the
  BatchNorms are per pass (they fold into the convs at export, so the deployed graph has
  per-level weights at no parameter cost in training terms; the statistics of a stride-8
  map and a stride-32 map differ too much to share). An FPN-style top-down path (nearest
  2x upsample + add, then a refining unit) gives the fine levels the context of the coarse
  ones, and a small head per level predicts the outputs below.
* **SSH-style** (after Najibi et al., "SSH: Single Stage Headless Face Detector", ICCV 2017):
  a light MobileNet-like backbone, and on strides 8, 16 and 32 a detection module: a 3x3
  branch beside a context module whose stacked 3x3 units reach 5x5 and 7x7 receptive fields,
  concatenated. As in SSH's M1, the stride-8 module sees the stride-8 features plus the
  upsampled stride-16 ones (and likewise stride 16 from 32).

Every "3x3 conv" here is YuNet's depthwise-separable unit (1x1 conv, depthwise 3x3, BN, ReLU),
the pattern the native engine fuses into one pass; the rest is 1x1 convs, MaxPool, nearest
Resize, Add and Concat.

Outputs (the ``yunet`` head, see ``picoface.heads.YuNetHead``), per stride S in 8, 16, 32,
each [N, H/S, W/S, C] (cells row-major; the head reads them as [-1, C]):

- ``cls_S`` [.., 1]  sigmoid face-class quality (trained towards the IoU of the box)
- ``obj_S`` [.., 1]  sigmoid objectness; the detection score is sqrt(cls * obj)
- ``bbox_S`` [.., 4] (dx, dy, log w, log h) in stride units: centre = (c + dx, r + dy) * S,
  size = exp(log w / log h) * S, where (c, r) is the cell's corner
- ``kps_S`` [.., 10] 5 points (x, y) in stride units from the cell's corner: right eye,
  left eye (from the viewer: the image-left one first), nose, right and left mouth corner

Input: N x 3 x H x W, BGR, 0..255 with no normalisation (the yunet head's convention); H and
W multiples of 32.
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (8, 16, 32)
SIZE_MULTIPLE = 32
# Output widths of the yunet head.
OUTPUTS = (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))
OUTPUT_NAMES = tuple(f"{name}_{s}" for s in STRIDES for name, _ in OUTPUTS)
NUM_POINTS = 5
# Mirror order of the 5 points: eyes swap, nose stays, mouth corners swap.
FLIP_ORDER = (1, 0, 2, 4, 3)


class DPUnit(nn.Module):
    """YuNet's "3x3 conv": 1x1 pointwise (no BN) -> depthwise 3x3 -> BN [-> ReLU]; with
    ``stride`` 2 the depthwise conv halves the resolution."""

    def __init__(self, cin: int, cout: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.dw = nn.Conv2d(cout, cout, 3, stride, 1, groups=cout, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        y = self.bn(self.dw(self.pw(x)))
        return F.relu(y) if self.relu else y


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Head(nn.Module):
    """One level's predictions: a DPUnit, then one 1x1 conv per output."""

    def __init__(self, channels: int):
        super().__init__()
        self.unit = DPUnit(channels, channels)
        self.out = nn.ModuleDict({name: nn.Conv2d(channels, width, 1) for name, width in OUTPUTS})

    def forward(self, x) -> Dict[str, torch.Tensor]:
        y = self.unit(x)
        return {name: conv(y) for name, conv in self.out.items()}


def _init_head_biases(heads: Sequence[Head], prior: float = 0.01):
    # Focal-loss style prior: objectness starts near `prior` everywhere, so the first steps
    # are not dominated by the flood of easy negatives.
    b = -torch.log(torch.tensor((1 - prior) / prior)).item()
    for h in heads:
        nn.init.constant_(h.out["obj"].bias, b)
        nn.init.constant_(h.out["cls"].bias, b)


class Detector(nn.Module):
    """Common output step of both families: raw level maps -> the yunet head's named outputs.

    In training mode :meth:`forward` returns the raw (pre-sigmoid) maps as
    ``{name: [N, H, W, C]}`` for the loss; in eval mode the exported layout (sigmoid on cls
    and obj)."""

    output_names = OUTPUT_NAMES

    def levels(self, x) -> List[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x):
        feats = self.levels(x)
        out = {}
        for s, f, head in zip(STRIDES, feats, self.heads):
            for name, y in head(f).items():
                y = y.permute(0, 2, 3, 1)
                if not self.training and name in ("cls", "obj"):
                    y = torch.sigmoid(y)
                out[f"{name}_{s}"] = y
        if self.training:
            return out
        return tuple(out[n] for n in OUTPUT_NAMES)


@dataclass(frozen=True)
class ExtdConfig:
    stem: int  # channels at stride 2
    width: int  # channels of every pyramid level (the reused block keeps them)
    expansion: int  # the reused block's inverted-residual expansion


EXTD_VARIANTS = {
    "extd_tiny": ExtdConfig(stem=16, width=56, expansion=2),
    "extd_large": ExtdConfig(stem=24, width=112, expansion=2),
}


class ReusedBlock(nn.Module):
    """The block EXTD applies again and again: maxpool 2x2 (stride doubles), inverted
    residual (1x1 expand + depthwise 3x3, 1x1 project, added back), then a DPUnit. Conv
    weights are shared by every pass; each pass has its own BatchNorms."""

    def __init__(self, channels: int, expansion: int, passes: int):
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.dw = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.pw2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.dw2 = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.bn = nn.ModuleList(nn.ModuleList([nn.BatchNorm2d(hidden), nn.BatchNorm2d(hidden),
                                               nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)])
                                for _ in range(passes))

    def forward(self, x, i: int):
        bn = self.bn[i]
        x = F.max_pool2d(x, 2, 2)
        y = F.relu(bn[0](self.expand(x)))
        y = F.relu(bn[1](self.dw(y)))
        x = x + bn[2](self.project(y))
        return F.relu(bn[3](self.dw2(self.pw2(x))))


class ExtdDetector(Detector):
    """EXTD-style detector (see the module docstring)."""

    def __init__(self, cfg: ExtdConfig):
        super().__init__()
        c = cfg.width
        self.stem = nn.Sequential(conv_bn_relu(3, cfg.stem, 3, 2), DPUnit(cfg.stem, cfg.stem))
        # Stride 4 (maxpool in forward), then up to the pyramid width.
        self.stage4 = nn.Sequential(DPUnit(cfg.stem, c // 2), DPUnit(c // 2, c))
        self.block = ReusedBlock(c, cfg.expansion, len(STRIDES))
        # Extra context on the coarsest level: its faces are the largest.
        self.context32 = nn.Sequential(DPUnit(c, c), DPUnit(c, c))
        self.refine = nn.ModuleList(DPUnit(c, c) for _ in STRIDES[:-1])
        self.heads = nn.ModuleList(Head(c) for _ in STRIDES)
        _init_head_biases(self.heads)

    def levels(self, x):
        x = self.stem(x)
        x = self.stage4(F.max_pool2d(x, 2, 2))
        feats = []
        for i in range(len(STRIDES)):
            x = self.block(x, i)
            feats.append(x)
        feats[-1] = self.context32(feats[-1])
        # Top-down: coarse context into the finer levels.
        for i in range(len(feats) - 2, -1, -1):
            up = F.interpolate(feats[i + 1], scale_factor=2.0, mode="nearest")
            feats[i] = self.refine[i](feats[i] + up)
        return feats


class ContextModule(nn.Module):
    """SSH's detection module: a 3x3 branch (C/2) beside a context branch whose shared first
    3x3 unit (C/4) feeds one more 3x3 (5x5 receptive field, C/4) and two more (7x7, C/4);
    the three are concatenated to C channels."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.branch3 = DPUnit(cin, half, relu=False)
        self.context = DPUnit(cin, quarter)
        self.branch5 = DPUnit(quarter, quarter, relu=False)
        self.branch7 = nn.Sequential(DPUnit(quarter, quarter), DPUnit(quarter, quarter, relu=False))

    def forward(self, x):
        c = self.context(x)
        return F.relu(torch.cat([self.branch3(x), self.branch5(c), self.branch7(c)], dim=1))


@dataclass(frozen=True)
class SshConfig:
    channels: Tuple[int, ...]  # backbone widths at strides 2, 4, 8, 16, 32
    module: int  # detection-module width


SSH_VARIANTS = {
    "ssh_mobile": SshConfig(channels=(16, 32, 64, 128, 160), module=64),
}


class SshDetector(Detector):
    """SSH-style detector with a light backbone (see the module docstring)."""

    def __init__(self, cfg: SshConfig):
        super().__init__()
        c2, c4, c8, c16, c32 = cfg.channels
        m = cfg.module
        self.stem = nn.Sequential(conv_bn_relu(3, c2, 3, 2), DPUnit(c2, c2))
        self.stage4 = nn.Sequential(DPUnit(c2, c4, stride=2), DPUnit(c4, c4))
        self.stage8 = nn.Sequential(DPUnit(c4, c8, stride=2), DPUnit(c8, c8), DPUnit(c8, c8))
        self.stage16 = nn.Sequential(DPUnit(c8, c16, stride=2), DPUnit(c16, c16), DPUnit(c16, c16))
        self.stage32 = nn.Sequential(DPUnit(c16, c32, stride=2), DPUnit(c32, c32))
        # SSH reduces the backbone maps to the module width before fusing levels.
        self.lateral = nn.ModuleList(nn.Sequential(nn.Conv2d(c, m, 1, bias=False), nn.BatchNorm2d(m))
                                     for c in (c8, c16, c32))
        self.modules_ = nn.ModuleList(ContextModule(m, m) for _ in STRIDES)
        self.heads = nn.ModuleList(Head(m) for _ in STRIDES)
        _init_head_biases(self.heads)

    def levels(self, x):
        x4 = self.stage4(self.stem(x))
        x8 = self.stage8(x4)
        x16 = self.stage16(x8)
        x32 = self.stage32(x16)
        lat = [F.relu(l(f)) for l, f in zip(self.lateral, (x8, x16, x32))]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], scale_factor=2.0, mode="nearest")
        return [mod(f) for mod, f in zip(self.modules_, lat)]


def build(name: str) -> Detector:
    """A fresh (randomly initialised) detector: one of :data:`VARIANTS`."""
    if name in EXTD_VARIANTS:
        model = ExtdDetector(EXTD_VARIANTS[name])
    elif name in SSH_VARIANTS:
        model = SshDetector(SSH_VARIANTS[name])
    else:
        raise ValueError(f"expected a variant in {sorted(VARIANTS)}, got {name!r}")
    model.variant = name
    return model


VARIANTS = tuple(EXTD_VARIANTS) + tuple(SSH_VARIANTS)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def deploy_params(model: nn.Module) -> int:
    """Parameters of the exported graph: BatchNorm folded into the preceding conv (its
    shift becomes the conv's bias; a BN with no conv before it would stay, here none)."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            n += mod.weight.numel() + mod.out_channels
    return n
