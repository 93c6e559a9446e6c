"""Building blocks shared by the detector definitions in this folder (RetinaFace, EXTD).

Each definition names its modules after its weight file so that the state dict loads
strictly; these helpers build the pieces whose layout the weight files share.
"""

from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, *, groups: int = 1,
            bias: bool = False, act: Optional[nn.Module] = None) -> nn.Sequential:
    """Conv ("same" padding) -> BatchNorm [-> act], at indices 0, 1 [, 2] as the weight files
    store them. Spread it into a larger Sequential to keep the files' flat numbering."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=bias),
              nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def per_anchor(y: torch.Tensor, width: int) -> torch.Tensor:
    """A head's [N, A*width, H, W] map as [N, H*W*A, width]: cells row-major, the cell's
    anchors innermost — the order ``picoface._core.anchor_boxes`` generates anchors in."""
    y = y.permute(0, 2, 3, 1)
    return y.reshape(y.shape[0], -1, width)


def state_dict_from(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The weight file's state dict with any ``module.`` (DataParallel) prefix removed."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def load_strict(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> nn.Module:
    """``model`` with ``state_dict`` loaded strictly (every tensor named and shaped as the
    definition expects, none left over), in eval mode."""
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def randomize_bn_statistics(model: nn.Module) -> nn.Module:
    """Gives every BatchNorm2d non-trivial running statistics (mean in [-0.5, 0.5], variance
    in [0.5, 2]) from torch's RNG, so an export check of an untrained model exercises BN
    folding; returns ``model``."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model
