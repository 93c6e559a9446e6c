"""Input and output conventions of dense landmark models (the FaceLandmarker comes with #6).

ONNX landmark models carry none of this; ``picoface convert --task landmarks --preset NAME``
writes it into the .pface file (keys ``landmarks.*`` and ``crop.*``, validated by the C++
loader).
"""

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class LandmarkSpec:
    """How a landmark model wants its crop and what its output means.

    The crop is centred on the face box's centre; ``crop_policy`` "square_max" /
    "square_min" makes it a square of side max / min(w, h) * ``crop_scale``, "box" scales the
    box itself; it is then resized to the model's input size, zero-padded outside the image.
    The output is ``num_points`` (x, y) pairs, in ``coords`` "unit" (fractions of the crop,
    [0, 1] inside it) or "pixels" (of the network input).
    """

    color: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    num_points: int
    coords: str
    crop_policy: str
    crop_scale: float


PRESETS = {
    # cunjian/pytorch_face_landmark PFLD (68 points, iBUG 300-W order), from its ONNX demo
    # test_camera_pfld_onnx.py: Ultra-Light box, square of side max(w, h) * 1.1 on the box
    # centre, zero padding, RGB, ToTensor (x / 255, no mean), points as fractions of the crop
    # (BBox.reprojectLandmark). The demo resizes the crop to 56 and again to 112; one resize
    # to 112 is used here (sharper input, same geometry).
    "pfld": LandmarkSpec("rgb", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), num_points=68,
                         coords="unit", crop_policy="square_max", crop_scale=1.1),
}
