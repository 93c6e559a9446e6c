"""RetinaFace with a MobileNet-0.25 backbone, as a PyTorch definition for export.

Written from the papers — RetinaFace (Deng et al., "RetinaFace: Single-shot Multi-level Face
Localisation in the Wild", CVPR 2020), MobileNet v1 (Howard et al. 2017, width multiplier
0.25), FPN (Lin et al. 2017) and the SSH context module (Najibi et al. 2017) — and from the
tensor names and shapes of the public ``mobilenet0.25_Final.pth`` weights, so that its state
dict loads strictly. Module names follow the weight file; nothing else is taken from it.

Output layout (fixed by picoface, see ``picoface.heads.AnchorDeltaHead``), P anchors ordered
level by level (strides 8, 16, 32), row-major over cells, 2 anchors per cell (the smaller
size first):

- ``scores``    [N, P]      softmax probability of "face" (class index 1 of 2)
- ``boxes``     [N, P, 4]   raw (dx, dy, dw, dh) deltas, decoded with variances (0.1, 0.2)
- ``landmarks`` [N, P, 10]  raw (dx, dy) deltas of 5 points, decoded with variance 0.1

Input: N x 3 x H x W, BGR minus the mean (104, 117, 123), H and W multiples of 32.

Only export-friendly ops are used: Conv, BatchNorm, ReLU, Add, Concat, nearest Resize
by a constant factor of 2, Transpose, Reshape, Softmax, Slice.
"""

from typing import Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from models import common

ANCHORS_PER_CELL = 2
NUM_POINTS = 5
STRIDES = (8, 16, 32)
# This checkpoint (Face-Detector-1MB-with-landmark, trained on 300x300 crops) was trained
# with anchors of 10/20, 32/64 and 128/256 px, not the 16/32, 64/128, 256/512 of the
# RetinaFace paper: decoding its deltas against the paper's anchors scales every box by
# 1.6-2x and shifts it off the face (2/131 faces found on WIDER fullres12; 131/131 with these).
ANCHOR_SIZES = ((10.0, 20.0), (32.0, 64.0), (128.0, 256.0))
MEAN_BGR = (104.0, 117.0, 123.0)
VARIANCES = (0.1, 0.2)


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm [-> ReLU].

    Plain ReLU everywhere: the leaky (0.1) activations of other RetinaFace-mnet0.25 releases
    are not this checkpoint's (with them 120/131 faces are found, with ReLU 131/131)."""
    return common.conv_bn(cin, cout, kernel, stride, groups=groups,
                          act=nn.ReLU() if act else None)


def depthwise_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """MobileNet v1 block: depthwise 3x3 (indices 0-2) then pointwise 1x1 (indices 3-5)."""
    return nn.Sequential(*conv_bn(cin, cin, 3, stride, groups=cin),
                         *conv_bn(cin, cout, 1))


class MobileNetV1(nn.Module):
    """MobileNet v1 at width 0.25, cut into the three stages whose outputs (strides 8, 16
    and 32; 64, 128 and 256 channels) feed the FPN. The classifier layers are not used."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 3, 2),
            depthwise_separable(8, 16, 1),
            depthwise_separable(16, 32, 2),
            depthwise_separable(32, 32, 1),
            depthwise_separable(32, 64, 2),
            depthwise_separable(64, 64, 1))
        self.stage2 = nn.Sequential(
            depthwise_separable(64, 128, 2),
            *[depthwise_separable(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(
            depthwise_separable(128, 256, 2),
            depthwise_separable(256, 256, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return c3, c4, c5


class FPN(nn.Module):
    """Top-down pyramid: 1x1 lateral projections to a common width, the coarser level
    upsampled x2 (nearest) and added, then a 3x3 conv to smooth the sum (levels 1 and 2;
    the coarsest level is its lateral projection alone)."""

    def __init__(self, in_channels: Sequence[int], width: int):
        super().__init__()
        self.output1 = conv_bn(in_channels[0], width, 1)
        self.output2 = conv_bn(in_channels[1], width, 1)
        self.output3 = conv_bn(in_channels[2], width, 1)
        self.merge1 = conv_bn(width, width, 3)
        self.merge2 = conv_bn(width, width, 3)

    def forward(self, c3, c4, c5):
        p5 = self.output3(c5)
        # A constant factor (not the finer map's size) keeps the export free of Shape
        # arithmetic; inputs are multiples of 32 so every level is exactly twice the next.
        p4 = self.merge2(self.output2(c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest"))
        p3 = self.merge1(self.output1(c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest"))
        return p3, p4, p5


class SSH(nn.Module):
    """SSH context module: three branches of one, two and three stacked 3x3 convs (receptive
    fields 3, 5 and 7; the deeper two share their first conv) with width/2, width/4 and
    width/4 channels, concatenated and passed through a ReLU."""

    def __init__(self, width: int):
        super().__init__()
        half, quarter = width // 2, width // 4
        self.conv3X3 = conv_bn(width, half, 3, act=False)
        self.conv5X5_1 = conv_bn(width, quarter, 3)
        self.conv5X5_2 = conv_bn(quarter, quarter, 3, act=False)
        self.conv7X7_2 = conv_bn(quarter, quarter, 3)
        self.conv7x7_3 = conv_bn(quarter, quarter, 3, act=False)

    def forward(self, x):
        b3 = self.conv3X3(x)
        t = self.conv5X5_1(x)
        b5 = self.conv5X5_2(t)
        b7 = self.conv7x7_3(self.conv7X7_2(t))
        return F.relu(torch.cat([b3, b5, b7], 1))


class Head1x1(nn.Module):
    """Per-level 1x1 conv predicting ``per_anchor`` values for each of the cell's anchors,
    returned as [N, H*W*anchors, per_anchor] (row-major cells, anchors innermost)."""

    def __init__(self, width: int, per_anchor: int, anchors: int = ANCHORS_PER_CELL):
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(width, anchors * per_anchor, 1)

    def forward(self, x):
        return common.per_anchor(self.conv1x1(x), self.per_anchor)


class RetinaFace(nn.Module):
    """RetinaFace-MobileNet0.25: backbone -> FPN (3 levels, 64 wide) -> SSH per level ->
    class / box / landmark 1x1 heads per level. See the module docstring for the outputs."""

    output_names = ("scores", "boxes", "landmarks")

    def __init__(self, width: int = 64):
        super().__init__()
        self.body = MobileNetV1()
        self.fpn = FPN((64, 128, 256), width)
        self.ssh1, self.ssh2, self.ssh3 = SSH(width), SSH(width), SSH(width)
        levels = len(STRIDES)
        self.ClassHead = nn.ModuleList([Head1x1(width, 2) for _ in range(levels)])
        self.BboxHead = nn.ModuleList([Head1x1(width, 4) for _ in range(levels)])
        self.LandmarkHead = nn.ModuleList([Head1x1(width, 2 * NUM_POINTS) for _ in range(levels)])

    def forward(self, x: torch.Tensor):
        p3, p4, p5 = self.fpn(*self.body(x))
        feats = [self.ssh1(p3), self.ssh2(p4), self.ssh3(p5)]
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], 1)
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], 1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], 1)
        scores = torch.softmax(logits, -1)[:, :, 1]
        return scores, boxes, landmarks


def load(path) -> RetinaFace:
    """RetinaFace with the weights at ``path`` loaded strictly, in eval mode."""
    return common.load_strict(RetinaFace(), common.state_dict_from(path))
