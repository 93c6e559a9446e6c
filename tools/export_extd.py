"""Export EXTD-32/48/64 weights to ONNX through the project's own definition.

    python tools/export_extd.py EXTD_64.pth -o extd64.onnx
    picoface convert extd64.onnx --task detect --head extd -o extd64.pface

Loads the .pth (any released width) strictly into ``models/extd.py``, exports at opset 18
with dynamic H and W (multiples of 128, batch 1), and checks onnxruntime against PyTorch on a
real image (or a fixed random input when no image is given); exits non-zero when the max abs
error is 1e-4 or more.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import extd  # noqa: E402
from tools import onnx_export  # noqa: E402

SPEC = onnx_export.ExportSpec(load=extd.load, output_names=extd.EXTD.output_names,
                              mean=extd.MEAN_RGB, color="rgb", multiple=extd.SIZE_MULTIPLE,
                              example_size=(640, 512))

if __name__ == "__main__":
    sys.exit(onnx_export.main(SPEC, __doc__.splitlines()[0]))
