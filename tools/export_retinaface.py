"""Export RetinaFace-MobileNet0.25 weights to ONNX through the project's own definition.

    python tools/export_retinaface.py mobilenet0.25_Final.pth -o retinaface_mnet025.onnx

Loads the .pth strictly into ``models/retinaface.py``, exports at opset 18 with dynamic H and
W (batch 1), and checks onnxruntime against PyTorch on a real image (or a fixed random input
when no image is given); exits non-zero when the max abs error is 1e-4 or more.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import retinaface  # noqa: E402
from tools import onnx_export  # noqa: E402

SPEC = onnx_export.ExportSpec(load=retinaface.load, output_names=retinaface.RetinaFace.output_names,
                              mean=retinaface.MEAN_BGR, color="bgr", multiple=32)

if __name__ == "__main__":
    sys.exit(onnx_export.main(SPEC, __doc__.splitlines()[0]))
