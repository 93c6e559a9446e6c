"""picoface: fast face detection, alignment and recognition for edge devices.

Data flow: ``uint8 HxWx3`` image -> :class:`FaceDetector` -> :class:`Faces` (boxes, scores,
5-point landmarks, in image pixels) -> :func:`align` (112x112 crops) -> :class:`FaceEmbedder`
(L2-normalised embeddings) -> :func:`cosine`; :class:`FaceLandmarker` gives 68 dense
points per face. :class:`FaceAnalyzer` runs it in one call.
"""

__version__ = "0.1.0"

from picoface._core import get_isa, set_isa, supported_isas
from picoface.align import ARCFACE_TEMPLATE_112, align
from picoface.analyzer import FaceAnalyzer
from picoface.detector import FaceDetector
from picoface.embedder import FaceEmbedder
from picoface.gallery import Gallery
from picoface.info import build_info
from picoface.landmarks import FaceLandmarker, nme
from picoface.matching import cosine
from picoface.results import Face, Faces

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "Face",
    "FaceAnalyzer",
    "FaceDetector",
    "FaceEmbedder",
    "FaceLandmarker",
    "Faces",
    "Gallery",
    "align",
    "build_info",
    "cosine",
    "get_isa",
    "nme",
    "set_isa",
    "supported_isas",
    "__version__",
]
