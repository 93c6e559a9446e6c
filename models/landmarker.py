"""picoface-lmk68: the project's own 68-point face landmarker, distilled from PFLD-68.

Input and output follow the teacher exactly (the ``pfld`` preset of
``picoface.landmarks``), so the same crop, the same .pface metadata and the same
:class:`picoface.FaceLandmarker` code serve both: N x 3 x 112 x 112, RGB / 255, a square of
side 1.1 x max(w, h) on the detector box's centre; output ``output`` [N, 136] = 68 (x, y)
pairs in iBUG 300-W order as fractions of the crop.

Why direct regression with a global depthwise conv, not heat maps: at 112 x 112 a heat-map
head needs an upsampling decoder and a soft-argmax (or a decoder of its own in C++), several
times this network's FLOPs, for a gain that shows mostly on large crops; PFLD itself, the
teacher, regresses directly. Global *average* pooling would throw away where a feature
fired, which is the whole answer here; a 7 x 7 depthwise conv over the last map (the
"GDC" of MobileFaceNet, Chen et al. 2018) learns a per-channel spatial weighting instead at
12 k parameters. Multi-scale context comes from concatenating that with the global average
of the 14 x 14 stage, as PFLD concatenates its scales.

Every op is Conv (dense 3 x 3, 1 x 1, depthwise 3 x 3 / 7 x 7) + BatchNorm (folded at
export) + ReLU, GlobalAveragePool, Concat, Flatten and one Gemm: all in the native engine's
set, and the convs in its int8 path.
"""

from typing import Tuple

import torch
from torch import nn

from models.common import conv_bn

INPUT_SIZE = 112
NUM_POINTS = 68
OUTPUT_NAME = "output"

# Mirror order of the 68 iBUG points (zero-based): point i of a horizontally flipped face
# is point FLIP_68[i] of the original. Jaw, brows, nose base, eyes and mouth swap sides; the
# nose bridge and the mouth's centre line stay.
FLIP_68 = tuple(
    list(range(16, -1, -1))                      # jaw 0..16
    + list(range(26, 21, -1))                    # right brow 17..21 <- left brow 26..22
    + list(range(21, 16, -1))                    # left brow 22..26 <- right brow 21..17
    + [27, 28, 29, 30]                           # nose bridge
    + [35, 34, 33, 32, 31]                       # nose base
    + [45, 44, 43, 42, 47, 46]                   # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]                   # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48]               # outer lip top
    + [59, 58, 57, 56, 55]                       # outer lip bottom
    + [64, 63, 62, 61, 60]                       # inner lip top
    + [67, 66, 65])                              # inner lip bottom


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018): 1x1 expand, depthwise 3x3 (``stride``),
    1x1 project without activation; the identity is added when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.body = nn.Sequential(
            *conv_bn(cin, mid, 1, act=nn.ReLU(inplace=True)),
            *conv_bn(mid, mid, 3, stride, groups=mid, act=nn.ReLU(inplace=True)),
            *conv_bn(mid, cout, 1))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def _stage(cin: int, cout: int, blocks: int, stride: int, expansion: int) -> nn.Sequential:
    return nn.Sequential(*[InvertedResidual(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                            expansion) for i in range(blocks)])


class Landmarker(nn.Module):
    """112 x 112 crop -> [N, 136] unit coordinates (see the module docstring)."""

    def __init__(self, widths: Tuple[int, int, int] = (32, 64, 128), embed: int = 256):
        super().__init__()
        w28, w14, w7 = widths
        self.stem = nn.Sequential(
            *conv_bn(3, 16, 3, 2, act=nn.ReLU(inplace=True)),                     # 56
            *conv_bn(16, 16, 3, 2, groups=16, act=nn.ReLU(inplace=True)),         # 28
            *conv_bn(16, w28, 1, act=nn.ReLU(inplace=True)))
        self.s28 = _stage(w28, w28, 2, 1, 2)
        self.s14 = _stage(w28, w14, 3, 2, 3)
        self.s7 = _stage(w14, w7, 3, 2, 3)
        self.expand = conv_bn(w7, embed, 1, act=nn.ReLU(inplace=True))
        # Global depthwise conv: a learned spatial weighting per channel over the 7 x 7 map.
        self.gdc = conv_bn(embed, embed, 7, groups=embed)
        self.gdc[0].padding = (0, 0)
        self.pool14 = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(embed + w14, 2 * NUM_POINTS)

    def forward(self, x):
        x = self.s28(self.stem(x))
        f14 = self.s14(x)
        g = self.gdc(self.expand(self.s7(f14)))
        feats = torch.cat([g, self.pool14(f14)], 1)
        return self.fc(torch.flatten(feats, 1))

    def init_mean_shape(self, unit_points) -> None:
        """Starts the regression from ``unit_points`` [68, 2] (the teacher's mean shape):
        the FC bias holds it and the weights start small, so early steps refine a face
        instead of learning where faces sit in a crop."""
        with torch.no_grad():
            self.fc.bias.copy_(torch.as_tensor(unit_points, dtype=torch.float32).reshape(-1))
            self.fc.weight.mul_(0.1)


def build() -> Landmarker:
    return Landmarker()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_mmacs(model: nn.Module) -> float:
    """Multiply-adds (millions) of one 112 x 112 forward pass through convs and linears,
    the convention of the MobileNet papers (BN folds away; ReLU and pooling are ignored)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += module.weight.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total / 1e6
