"""EdgeFace-style face recognisers (after George, Ecabert, Otroshi Shahreza, Kotwal and Marcel,
"EdgeFace: Efficient Face Recognition Model for Edge Devices", arXiv 2307.01838), written from
the paper and the EdgeNeXt paper it builds on (Maaz et al., arXiv 2206.10589).

Layout (EdgeNeXt): a 4x4 stride-4 stem, then four stages at strides 4, 8, 16, 32 (a 2x2 stride-2
conv between them). A stage is a run of *convolution encoders* (depthwise kxk conv, then an
inverted-bottleneck MLP, residual; k = 3, 5, 7, 9 by stage); stages 2-4 end in one *split
depth-wise transpose attention* (STDA) encoder: the channels are split into s groups, each group
after the first adds the previous group's output and goes through a depthwise 3x3 conv (a
Res2Net-like cascade of growing receptive fields), then *transposed* attention — attention
between channels, the d x d cross-covariance of L2-normalised queries and keys over all
positions, so its cost is linear in the number of pixels — and an MLP. Stage 2's STDA adds a
Fourier positional encoding. Global average pooling and a linear head give the 512-d embedding.

EdgeFace's change: linear layers become LoRaLin low-rank pairs ``Linear(in -> r) .
Linear(r -> out)``, r = max(2, floor(gamma * min(in, out))). The head is low-rank too: only then
does the count match the published 1.77 M parameters of XS (1,769,404 here; 1,786,748 with a full
192 -> 512 head).

Deployment-friendly changes from the papers, all for the native engine (NCHW convolutions):

* Linear layers on feature maps are 1x1 convs (the same maths on NCHW, no transposes); a LoRaLin
  pair is two 1x1 convs.
* BatchNorm replaces LayerNorm. After the stem, a depthwise conv or a downsampling conv it folds
  into that conv at import (zero cost); the two norms inside an STDA encoder stay as a
  per-channel affine. LayerNorm over channels would need a transpose to NHWC and back per block.
  The downsampling norm moves from before the 2x2 conv to after it, so that it folds too.
* The positional encoding is computed once for the fixed 112x112 input (a buffer), so the
  exported graph holds no sin/cos.
* No stochastic depth (the models here train for minutes, not epochs).

Input: N x 3 x 112 x 112, RGB scaled to [-1, 1] ((x - 127.5) / 127.5), a face aligned to the
ArcFace 5-point template. Output: N x 512 embedding (not normalised; compare by cosine).
"""

import math
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

INPUT_SIZE = 112
EMBEDDING_DIM = 512
# Published sizes (arXiv 2307.01838): parameters and FLOPs at 112x112. The paper's FLOPs are
# 2 x multiply-adds (count_macs gives 76.9 M / 47.3 M for XS / XXS).
PUBLISHED = {"edgeface_xs": (1.77e6, 154e6), "edgeface_xxs": (1.24e6, 94.7e6)}


@dataclass(frozen=True)
class EdgeFaceConfig:
    dims: Tuple[int, int, int, int]  # channels per stage
    depths: Tuple[int, int, int, int]  # encoders per stage (the last of stages 2-4 is STDA)
    gamma: float  # LoRaLin rank ratio; 0 = plain linear layers
    kernels: Tuple[int, int, int, int] = (3, 5, 7, 9)  # conv encoder kernel per stage
    splits: Tuple[int, int, int, int] = (2, 2, 3, 4)  # STDA channel groups per stage
    heads: int = 4
    expansion: int = 4  # MLP hidden width = expansion * dim


# EdgeNeXt-XS / XXS widths and depths. EdgeFace-XS uses LoRaLin with gamma 0.6; EdgeFace-XXS
# is the XXS backbone with plain linear layers (its published 1.24 M parameters match that).
VARIANTS = {
    "edgeface_xs": EdgeFaceConfig(dims=(32, 64, 100, 192), depths=(3, 3, 9, 3), gamma=0.6),
    "edgeface_xxs": EdgeFaceConfig(dims=(24, 48, 88, 168), depths=(2, 2, 6, 2), gamma=0.0),
}


def lowrank_rank(cin: int, cout: int, gamma: float) -> int:
    """LoRaLin rank: max(2, floor(gamma * min(cin, cout)))."""
    return max(2, int(math.floor(gamma * min(cin, cout))))


def linear(cin: int, cout: int, gamma: float, bias: bool = True) -> nn.Module:
    """A linear layer on NCHW maps (1x1 conv), low-rank (two 1x1 convs) when gamma > 0."""
    if gamma <= 0:
        return nn.Conv2d(cin, cout, 1, bias=bias)
    r = lowrank_rank(cin, cout, gamma)
    return nn.Sequential(nn.Conv2d(cin, r, 1, bias=False), nn.Conv2d(r, cout, 1, bias=bias))


class LayerScale(nn.Module):
    """Per-channel learned scale on a residual branch, starting near zero so that each block
    starts as the identity (EdgeNeXt's layer scale)."""

    def __init__(self, channels: int, init: float = 1e-6):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels, 1, 1), init))

    def forward(self, x):
        return x * self.scale


class Mlp(nn.Module):
    """Inverted bottleneck: linear dim -> e*dim, GELU, linear back, layer scale."""

    def __init__(self, dim: int, cfg: EdgeFaceConfig):
        super().__init__()
        hidden = cfg.expansion * dim
        self.fc1 = linear(dim, hidden, cfg.gamma)
        self.fc2 = linear(hidden, dim, cfg.gamma)
        self.scale = LayerScale(dim)

    def forward(self, x):
        return self.scale(self.fc2(F.gelu(self.fc1(x))))


class ConvEncoder(nn.Module):
    """Depthwise kxk conv -> BN -> MLP, added to the input."""

    def __init__(self, dim: int, kernel: int, cfg: EdgeFaceConfig):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, cfg)

    def forward(self, x):
        return x + self.mlp(self.bn(self.dw(x)))


def fourier_features(height: int, width: int, hidden: int = 32,
                     temperature: float = 10000.0) -> torch.Tensor:
    """[1, 2*hidden, H, W] sine/cosine features of the normalised (y, x) position (XCiT's
    positional encoding): per axis, hidden frequencies temperature^(-2*floor(i/2)/hidden),
    sine on even and cosine on odd channels."""
    eps = 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32)[:, None].expand(height, width)
    x = torch.arange(1, width + 1, dtype=torch.float32)[None, :].expand(height, width)
    y = y / (height + eps) * 2 * math.pi
    x = x / (width + eps) * 2 * math.pi
    freq = temperature ** (2 * (torch.arange(hidden) // 2).float() / hidden)
    out = []
    for pos in (y, x):
        p = pos[None] / freq[:, None, None]
        p = torch.where((torch.arange(hidden) % 2 == 0)[:, None, None], p.sin(), p.cos())
        out.append(p)
    return torch.cat(out)[None]


class TransposedAttention(nn.Module):
    """Cross-covariance ("transposed") attention: per head, softmax(temperature * q k^T) over
    channels, q and k L2-normalised over positions; output = attention @ v, then a linear."""

    def __init__(self, dim: int, cfg: EdgeFaceConfig):
        super().__init__()
        if dim % cfg.heads:
            raise ValueError(f"expected channels divisible by {cfg.heads} heads, got {dim}")
        self.heads = cfg.heads
        self.temperature = nn.Parameter(torch.ones(cfg.heads, 1, 1))
        self.qkv = linear(dim, 3 * dim, cfg.gamma)
        self.proj = linear(dim, dim, cfg.gamma)

    def forward(self, x):
        n, c, h, w = x.shape
        qkv = self.qkv(x).reshape(n, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        return self.proj((attn @ v).reshape(n, c, h, w))


class StdaEncoder(nn.Module):
    """Split depth-wise transpose attention: channel-group cascade of depthwise 3x3 convs,
    [+ positional encoding], BN -> transposed attention (residual), BN -> MLP; the block's
    input is added to the MLP output."""

    def __init__(self, dim: int, splits: int, cfg: EdgeFaceConfig, pos_size: int = 0):
        super().__init__()
        width = math.ceil(dim / splits)
        self.sizes = [width] * (splits - 1) + [dim - width * (splits - 1)]
        # The last group passes through unchanged, as in EdgeNeXt (Res2Net's identity group).
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, groups=width)
                                   for _ in range(max(1, splits - 1)))
        if pos_size:
            self.register_buffer("pos_features", fourier_features(pos_size, pos_size),
                                 persistent=False)
            self.pos_proj = nn.Conv2d(self.pos_features.shape[1], dim, 1)
        else:
            self.pos_proj = None
        self.bn_attn = nn.BatchNorm2d(dim)
        self.attn = TransposedAttention(dim, cfg)
        self.attn_scale = LayerScale(dim)
        self.bn_mlp = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, cfg)

    def forward(self, x):
        groups = torch.split(x, self.sizes, dim=1) if len(self.sizes) > 1 else (x,)
        out, y = [], None
        for i, conv in enumerate(self.convs):
            y = groups[i] if y is None else y + groups[i]
            y = conv(y)
            out.append(y)
        y = torch.cat(out + list(groups[len(self.convs):]), dim=1) if len(out) > 1 or \
            len(groups) > 1 else out[0]
        if self.pos_proj is not None:
            if y.shape[-2:] != self.pos_features.shape[-2:]:
                raise ValueError(f"expected a {INPUT_SIZE}x{INPUT_SIZE} input (stage maps "
                                 f"{tuple(self.pos_features.shape[-2:])}), got maps "
                                 f"{tuple(y.shape[-2:])}")
            y = y + self.pos_proj(self.pos_features)
        y = y + self.attn_scale(self.attn(self.bn_attn(y)))
        return x + self.mlp(self.bn_mlp(y))


class EdgeFace(nn.Module):
    """EdgeNeXt-style backbone with a 512-d linear embedding head (see the module docstring)."""

    def __init__(self, cfg: EdgeFaceConfig, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.cfg = cfg
        d = cfg.dims
        self.stem = nn.Sequential(nn.Conv2d(3, d[0], 4, 4), nn.BatchNorm2d(d[0]))
        size = INPUT_SIZE // 4
        stages = []
        for i in range(4):
            blocks = []
            if i > 0:
                blocks += [nn.Conv2d(d[i - 1], d[i], 2, 2), nn.BatchNorm2d(d[i])]
                size //= 2
            convs = cfg.depths[i] - (1 if i > 0 else 0)
            blocks += [ConvEncoder(d[i], cfg.kernels[i], cfg) for _ in range(convs)]
            if i > 0:
                blocks.append(StdaEncoder(d[i], cfg.splits[i], cfg, pos_size=size if i == 1 else 0))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(d[3])
        if cfg.gamma > 0:
            r = lowrank_rank(d[3], embedding_dim, cfg.gamma)
            self.head = nn.Sequential(nn.Linear(d[3], r, bias=False), nn.Linear(r, embedding_dim))
        else:
            self.head = nn.Linear(d[3], embedding_dim)
        self.apply(_init)

    def forward(self, x):
        x = self.norm(self.stages(self.stem(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def edgeface_xs() -> EdgeFace:
    """EdgeFace-XS (gamma = 0.6)."""
    return EdgeFace(VARIANTS["edgeface_xs"])


def edgeface_xxs() -> EdgeFace:
    """EdgeFace-XXS."""
    return EdgeFace(VARIANTS["edgeface_xxs"])


def build(name: str) -> EdgeFace:
    if name not in VARIANTS:
        raise ValueError(f"expected a model one of {sorted(VARIANTS)}, got {name!r}")
    return EdgeFace(VARIANTS[name])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: EdgeFace) -> int:
    """Multiply-adds of one 112x112 forward pass: convs and the head by hooks, plus the two
    attention matmuls (q k^T and attn v) per STDA encoder. Norms, activations and softmax are
    left out, as FLOP counts in the papers do."""
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    def attn_hook(m, inp, out):
        nonlocal total
        n, c, h, w = inp[0].shape
        total += 2 * n * m.heads * (c // m.heads) ** 2 * h * w

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, TransposedAttention):
            hooks.append(m.register_forward_hook(attn_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total
