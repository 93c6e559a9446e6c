"""EXTD-32/48/64 (Yoo, Han and Yun, "EXTD: Extremely Tiny Face Detector via Iterative Filter
Reuse", arXiv 1906.06579), as a PyTorch definition for export.

Written from the paper and from the tensor names and shapes of the public ``EXTD_{32,48,64}.pth``
weights, so that each state dict loads strictly. The paper's idea: one shallow backbone of
MobileNetV2 inverted-residual blocks is applied again and again to its own output, each
pass halving the resolution, so six pyramid levels (strides 4 to 128) cost the parameters of
one; an FPN-style top-down path (upsample, refine, add) then gives the fine levels the
semantics of the coarse ones, and S3FD-style SSD heads (one square anchor per cell, 4x the
stride) predict a face score and box deltas per level.

Output layout (fixed by picoface, see ``picoface.heads.AnchorDeltaHead``), P anchors ordered
level by level (strides 4 ... 128), row-major over cells, one anchor per cell:

- ``scores`` [N, P]     softmax probability of "face"
- ``boxes``  [N, P, 4]  raw (dx, dy, dw, dh) deltas, decoded with variances (0.1, 0.2)

Input: N x 3 x H x W, RGB minus the mean (123, 117, 104), no scaling; H and W multiples of
128 (every level is then exactly twice the next, so the top-down path upsamples by a
constant factor and the export needs no shape arithmetic).
"""

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from models import common

STRIDES = (4, 8, 16, 32, 64, 128)
# S3FD's anchor design, kept by EXTD: one square anchor per cell, 4x the level's stride.
ANCHOR_SIZES = tuple((4.0 * s,) for s in STRIDES)
VARIANCES = (0.1, 0.2)
# The released weights were trained on RGB images minus the S3FD mean (104, 117, 123 in BGR)
# with no further scaling; measured: /127 finds 0/131 faces on WIDER fullres12, none 130/131.
MEAN_RGB = (123.0, 117.0, 104.0)
STEM_CHANNELS = 64
SIZE_MULTIPLE = STRIDES[-1]


@dataclass(frozen=True)
class Variant:
    """What differs between the released widths (read off the weight files)."""

    width: int  # channels of every pyramid level
    expansions: Tuple[int, ...]  # expansion ratio of each block of the reused backbone
    project_act: bool  # EXTD-32 has a PReLU after each block's 1x1 projection; 48/64 do not


VARIANTS = {
    32: Variant(32, (2, 2, 4, 4, 2, 2), True),
    48: Variant(48, (2, 2, 4, 4), False),
    64: Variant(64, (2, 2, 4, 4), False),
}
# Parameter counts the authors report for the released models (checked by the tests).
RELEASED_PARAMS = {32: 62_939, 48: 100_160, 64: 162_352}


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018): 1x1 expansion (left out at ratio 1), 3x3
    depthwise conv (biased in these weights), 1x1 projection, each followed by BatchNorm and
    the first two by a single-slope PReLU; the input is added back when the shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, project_act: bool):
        super().__init__()
        hidden = cin * expansion
        layers = []
        if expansion != 1:
            layers += common.conv_bn(cin, hidden, 1, act=nn.PReLU())
        layers += common.conv_bn(hidden, hidden, 3, stride, groups=hidden, bias=True, act=nn.PReLU())
        layers += common.conv_bn(hidden, cout, 1, act=nn.PReLU() if project_act else None)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.residual else y


def top_down(width: int) -> nn.Sequential:
    """Refines an upsampled coarse level before it is added to the finer one: depthwise 3x3,
    pointwise 1x1, BatchNorm, ReLU (the weights cannot show a parameter-free activation;
    measured on WIDER fullres12 with EXTD-64: 130/131 faces with it, 59/131 without)."""
    return nn.Sequential(nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False),
                         *common.conv_bn(width, width, 1, act=nn.ReLU()))


class EXTD(nn.Module):
    """``base[0]`` (3x3 stride-2 conv) and ``base[1]`` (expansion-1 block, 64 -> width) run
    once; ``base[2:]`` is the backbone reused for every level, its last block halving the
    resolution — the paper's 640 px input gives 160, 80, 40, 20, 10 and 5 px maps. ``upfeat[k]``
    merges level 5-k into level 4-k top-down; ``loc`` / ``conf`` are 3x3 heads per level."""

    output_names = ("scores", "boxes")

    def __init__(self, variant: Variant):
        super().__init__()
        w, n = variant.width, len(variant.expansions)
        blocks = [InvertedResidual(w, w, 2 if i == n - 1 else 1, t, variant.project_act)
                  for i, t in enumerate(variant.expansions)]
        self.base = nn.ModuleList([
            common.conv_bn(3, STEM_CHANNELS, 3, 2, act=nn.PReLU()),
            InvertedResidual(STEM_CHANNELS, w, 1, 1, variant.project_act),
            *blocks])
        levels = len(STRIDES)
        self.upfeat = nn.ModuleList([top_down(w) for _ in range(levels - 1)])
        self.loc = nn.ModuleList([nn.Conv2d(w, 4, 3, padding=1) for _ in range(levels)])
        # S3FD's max-out background label (Zhang et al. 2017) on the finest level, whose
        # tiny anchors see mostly background: 3 background scores, their max kept, + 1 face.
        self.conf = nn.ModuleList([nn.Conv2d(w, 4 if i == 0 else 2, 3, padding=1)
                                   for i in range(levels)])

    def pyramid(self, x: torch.Tensor):
        """The six levels, finest first, after the top-down merge."""
        for block in self.base:
            x = block(x)
        levels = [x]
        for _ in range(len(STRIDES) - 1):
            for block in self.base[2:]:
                x = block(x)
            levels.append(x)
        merged = [levels[-1]]
        for refine, finer in zip(self.upfeat, reversed(levels[:-1])):
            up = F.interpolate(merged[-1], scale_factor=2.0, mode="bilinear", align_corners=False)
            merged.append(finer + refine(up))
        return merged[::-1]

    def forward(self, x: torch.Tensor):
        feats = self.pyramid(x)
        logits, boxes = [], []
        for i, f in enumerate(feats):
            c = self.conf[i](f)
            if c.shape[1] == 4:
                c = torch.cat([c[:, :3].amax(1, keepdim=True), c[:, 3:]], 1)
            logits.append(common.per_anchor(c, 2))
            boxes.append(common.per_anchor(self.loc[i](f), 4))
        scores = torch.softmax(torch.cat(logits, 1), -1)[:, :, 1]
        return scores, torch.cat(boxes, 1)


def variant_of(state_dict: Dict[str, torch.Tensor]) -> Variant:
    """The variant whose width the weights have (the first block's projection)."""
    width = state_dict["base.1.conv.3.weight"].shape[0]
    if width not in VARIANTS:
        raise ValueError(f"expected EXTD weights of width {sorted(VARIANTS)}, got {width}")
    return VARIANTS[width]


def load(path) -> EXTD:
    """EXTD with the weights at ``path`` (any released width) loaded strictly, in eval mode."""
    sd = common.state_dict_from(path)
    return common.load_strict(EXTD(variant_of(sd)), sd)
