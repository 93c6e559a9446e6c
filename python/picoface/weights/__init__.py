"""Model files the package ships, by name.

Every file here was produced by the project's own code: trained by tools/train_detector.py
on the data its model card names (models/README.md), exported by tools/export_own.py and
converted by `picoface convert`; the int8 files by `picoface quantize` from the float ones.
Nothing here comes from a third party's weights.
"""

from pathlib import Path
from typing import List

# name -> file in this folder
_FILES = {
    "picoface-det-tiny": "picoface_det_tiny.pface",
    # `picoface quantize picoface-det-tiny --calib ../shared/data/wider/test183/images`
    # (minmax, all 48 Convs int8; accuracy report in models/README.md)
    "picoface-det-tiny-int8": "picoface_det_tiny_int8.pface",
}
DEFAULT_DETECTOR = "picoface-det-tiny"


def names() -> List[str]:
    """Names of the shipped models present in this installation."""
    return [n for n, f in _FILES.items() if (Path(__file__).parent / f).is_file()]


def is_name(model) -> bool:
    return isinstance(model, str) and model in _FILES


def path(name: str) -> Path:
    """The file of shipped model `name`. Raises ValueError for an unknown name,
    FileNotFoundError when this installation lacks the file."""
    if name not in _FILES:
        raise ValueError(f"expected a shipped model name from {sorted(_FILES)}, got {name!r}")
    p = Path(__file__).parent / _FILES[name]
    if not p.is_file():
        raise FileNotFoundError(f"shipped model {name!r} is missing from this installation ({p})")
    return p
