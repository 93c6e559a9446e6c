"""detect -> align -> embed for the recognition commands (verify, enroll, identify, eval)."""

from typing import Optional, Tuple

import numpy as np

from picoface.align import ARCFACE_TEMPLATE_112, align
from picoface.detector import FaceDetector
from picoface.embedder import FaceEmbedder
from picoface.results import Faces


class NoFace(ValueError):
    """An image in which the detector found no face."""


class Recognizer:
    """Embeds the faces of an image.

    Args:
        detector: a :class:`FaceDetector`.
        embedder: a :class:`FaceEmbedder`.
        flip: also embed each horizontally mirrored crop and average the two embeddings
            (then re-normalise): slower by the embedder's time, usually a little more accurate.
    """

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, flip: bool = False):
        self.detector = detector
        self.embedder = embedder
        self.flip = bool(flip)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """L2-normalised float32 [N, D] embeddings of aligned BGR crops [N, S, S, 3]."""
        emb = self.embedder(crops)
        if self.flip and len(crops):
            emb = emb + self.embedder(np.ascontiguousarray(crops[:, :, ::-1]))
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb.astype(np.float32)

    def faces(self, image) -> Tuple[Faces, np.ndarray]:
        """All faces (detector order: by score) and their embeddings."""
        faces = self.detector(image)
        crops = self._align(image, faces)
        return faces, (self.embed_crops(crops) if len(faces) else np.zeros((0, 0), np.float32))

    def largest(self, image) -> Tuple[np.ndarray, int]:
        """Embedding [D] of the largest face (box area) and the number of faces found.

        Raises:
            NoFace: no face detected.
        """
        crop, count = self.largest_crop(image)
        return self.embed_crops(crop[None])[0], count

    def largest_crop(self, image) -> Tuple[np.ndarray, int]:
        """The aligned crop [S, S, 3] of the largest face (box area) and the number of faces.

        Raises:
            NoFace: no face detected.
        """
        faces = self.detector(image)
        if len(faces) == 0:
            raise NoFace("no face found")
        areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
        i = int(np.argmax(areas))
        return self._align(image, faces.landmarks[i:i + 1])[0], len(faces)

    def centre(self, image) -> np.ndarray:
        """Embedding [D] of the image's central square, mapped onto the alignment template as
        if it were a face box (a fallback for images where no face is detected)."""
        return self.embed_crops(self.centre_crop(image)[None])[0]

    def face_crop(self, image) -> np.ndarray:
        """:meth:`largest_crop`, or :meth:`centre_crop` where no face is found (the policy of
        ``picoface eval verify --undetected centre``)."""
        try:
            return self.largest_crop(image)[0]
        except NoFace:
            return self.centre_crop(image)

    def centre_crop(self, image) -> np.ndarray:
        """The crop [S, S, 3] :meth:`centre` embeds."""
        h, w = image.shape[:2]
        side = min(h, w)
        pts = ARCFACE_TEMPLATE_112 * (side / 112.0) + np.array([(w - side) / 2, (h - side) / 2],
                                                               np.float32)
        return self._align(image, pts.astype(np.float32)[None])[0]

    def _align(self, image, landmarks) -> np.ndarray:
        e = self.embedder
        return align(image, landmarks, e.crop_size, template=e.template,
                     template_size=e.template_size)


def open_embedder(model, *, preset: Optional[str] = None, threads: int = 1) -> FaceEmbedder:
    """A .pface recogniser runs natively; an ONNX one is converted in memory and run natively
    too (onnxruntime cannot run some quantised recognisers, e.g. the OpenCV-zoo SFace int8bq
    file), falling back to onnxruntime when the native engine lacks one of its ops."""
    from pathlib import Path

    from picoface.backends.base import is_native_model

    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"recogniser model not found: {str(path)!r}")
    if is_native_model(path):
        return FaceEmbedder(path, threads=threads)
    from picoface.convert import convert_onnx

    try:
        blob = convert_onnx(path, task="embed", preset=preset)
    except ValueError as e:
        if "does not support these ops" not in str(e):
            raise
        return FaceEmbedder(path, preset=preset or "arcface", backend="onnxruntime",
                            threads=threads)
    return FaceEmbedder(blob, threads=threads)
