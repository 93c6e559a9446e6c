"""detect -> align -> embed in one call."""

from picoface.align import align
from picoface.detector import FaceDetector
from picoface.embedder import FaceEmbedder
from picoface.results import Faces


class FaceAnalyzer:
    """Runs a detector and an embedder on one image.

    Args:
        detector: a :class:`FaceDetector`.
        embedder: a :class:`FaceEmbedder`; crops are aligned to its input size.
    """

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder):
        if not isinstance(detector, FaceDetector) or not isinstance(embedder, FaceEmbedder):
            raise ValueError("expected FaceAnalyzer(FaceDetector, FaceEmbedder), got "
                             f"({type(detector).__name__}, {type(embedder).__name__})")
        self.detector = detector
        self.embedder = embedder

    def __call__(self, image, color: str = "bgr") -> Faces:
        """Returns the detector's :class:`Faces` with ``embeddings`` filled in."""
        faces = self.detector(image, color=color)
        e = self.embedder
        crops = align(image, faces, e.crop_size, template=e.template,
                      template_size=e.template_size, color=color)
        embeddings = self.embedder(crops, color=color)
        return Faces(faces.boxes, faces.scores, faces.landmarks, embeddings)
