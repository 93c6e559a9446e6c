"""Reading, annotating and writing images for the CLI (OpenCV, from the ``[opencv]`` extra;
Pillow is used for reading when OpenCV is absent)."""

from pathlib import Path

import numpy as np

from picoface.results import Faces

_NEED = "reading and writing images needs OpenCV: pip install 'picoface[opencv]'"


def read_bgr(path) -> np.ndarray:
    """uint8 HxWx3 BGR pixels of an image file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {str(p)!r}")
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"could not decode image {str(p)!r} (not an image, or corrupt)")
        return img
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(_NEED) from None
    try:
        with Image.open(p) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
    except OSError as e:
        raise ValueError(f"could not decode image {str(p)!r}: {e}") from None


def annotate(image: np.ndarray, faces: Faces) -> np.ndarray:
    """A copy of ``image`` with boxes, scores and landmarks drawn."""
    try:
        import cv2
    except ImportError:
        raise ImportError(_NEED) from None
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 500))
    # One colour per landmark: right eye, left eye, nose, right and left mouth corner.
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255)]
    for f in faces:
        x1, y1, x2, y2 = (int(round(float(v))) for v in f.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
        cv2.putText(out, f"{f.score:.2f}", (x1, max(0, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, (0, 255, 0), thick)
        for (x, y), c in zip(f.landmarks, colours):
            cv2.circle(out, (int(round(float(x))), int(round(float(y)))), thick + 1, c, -1)
    return out


def write(path, image: np.ndarray) -> None:
    try:
        import cv2
    except ImportError:
        raise ImportError(_NEED) from None
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"could not write {str(path)!r} (unknown extension or unwritable path)")
