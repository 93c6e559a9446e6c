"""Face alignment: similarity transform from 5 landmarks to a template, then a SIMD warp."""

import numpy as np

from picoface import _core, _validate
from picoface.results import Faces

# The ArcFace 112x112 5-point template (x, y per point, in the landmark order of Faces).
ARCFACE_TEMPLATE_112 = np.asarray(_core.ARCFACE_TEMPLATE_112, dtype=np.float32).reshape(5, 2)


def align(image, landmarks, size=112, *, template=None, template_size=112, color="bgr",
          border=0) -> np.ndarray:
    """Warps each face onto the alignment template.

    Args:
        image: uint8 HxWx3 (or HxW for ``color="gray"``).
        landmarks: [P, 2] or [N, P, 2] points in image pixels, or a :class:`Faces`.
        size: crop side, or (width, height). The template is scaled from ``template_size``.
        template: [P, 2] target points; the ArcFace 112x112 5-point template by default.
        template_size: side (or (w, h)) of the frame the template is given in.
        color: colour order of ``image`` (crops keep it).
        border: value of crop pixels that fall outside the image.

    Returns:
        uint8 [N, S, S, C] crops (C = 3, or 1 for grey).

    Raises:
        ValueError: bad image, non-finite or degenerate landmarks, mismatched template.
    """
    img = _validate.image(image, color)
    if isinstance(landmarks, Faces):
        landmarks = landmarks.landmarks
        if landmarks.shape[0] == 0:
            c = 1 if img.ndim == 2 else 3
            w, h = _validate.size(size, "size")
            return np.zeros((0, h, w, c), np.uint8)
    pts = _validate.points(landmarks)
    tmpl = ARCFACE_TEMPLATE_112 if template is None else _validate.points(template, "template")[0]
    if tmpl.shape[0] != pts.shape[1]:
        raise ValueError(f"expected landmarks with {tmpl.shape[0]} points to match the template, "
                         f"got {pts.shape[1]}")
    sw, sh = _validate.size(size, "size")
    tw, th = _validate.size(template_size, "template_size")
    if not 0 <= int(border) <= 255:
        raise ValueError(f"expected border in 0..255, got {border!r}")
    crops = _core.align(img, pts, np.ascontiguousarray(tmpl), tw, th, sw, sh, int(border))
    return crops
