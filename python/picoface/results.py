"""Result types: frozen dataclasses of numpy arrays (struct of arrays).

Coordinates are float32 pixels in the frame of the image passed in: x to the right, y down,
origin at the top-left corner of the top-left pixel's centre as in OpenCV. Boxes are
(x1, y1, x2, y2) and may extend beyond the image for faces cut by its border.
Landmarks are, in order: right eye, left eye (as seen in the image: left, right), nose tip,
right mouth corner, left mouth corner.
"""

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np


@dataclass(frozen=True)
class Face:
    """A light view of one face of a :class:`Faces` result."""

    box: np.ndarray  # float32 [4] x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # float32 [5, 2]
    embedding: Optional[np.ndarray] = None  # float32 [D], L2-normalised


@dataclass(frozen=True)
class Faces:
    """Faces found in one image, sorted by descending score.

    Attributes:
        boxes: float32 [N, 4] (x1, y1, x2, y2) in pixels.
        scores: float32 [N] in [0, 1].
        landmarks: float32 [N, 5, 2] (x, y) in pixels.
        embeddings: float32 [N, D] L2-normalised, when produced by :class:`FaceAnalyzer`.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    embeddings: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __iter__(self) -> Iterator[Face]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> Face:
        return Face(self.boxes[i], float(self.scores[i]), self.landmarks[i],
                    None if self.embeddings is None else self.embeddings[i])

    def to_dict(self) -> dict:
        """JSON-ready form: ``{"faces": [{"box", "score", "landmarks"[, "embedding"]}]}``."""
        faces = []
        for f in self:
            d = {"box": [round(float(v), 2) for v in f.box], "score": round(f.score, 4),
                 "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in f.landmarks]}
            if f.embedding is not None:
                d["embedding"] = [float(v) for v in f.embedding]
            faces.append(d)
        return {"faces": faces}

    @staticmethod
    def empty(num_points: int = 5) -> "Faces":
        return Faces(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                     np.zeros((0, num_points, 2), np.float32))
