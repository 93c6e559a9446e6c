"""Native engine on another machine against reference outputs stored on this one.

    python engine_smoke.py make MODEL.pface REF.npz     # on the reference machine (x86_64)
    python engine_smoke.py check MODEL.pface REF.npz    # on the target (e.g. aarch64 under qemu)

``make`` runs the model on a seeded input (1x3x96x128, for dynamic detectors) with the default
ISA and stores input and outputs; ``check`` runs it with every ISA the target supports and
requires each output within 1e-5 of its largest reference value (fp32; the kernels differ
in summation order only). Needs only numpy and an installed picoface — no onnx, no
onnxruntime — so it runs in a bare arm64 root. Exit status 0 when all match.
"""

import sys

import numpy as np

from picoface import _core

TOLERANCE = 1e-5


def _input(model: bytes) -> np.ndarray:
    from picoface import modelfile

    summary = modelfile.summary(model)
    shape = summary["tensors"][summary["inputs"][0]]["shape"]
    dims = [d if d > 0 else default for d, default in zip(shape, (1, 3, 96, 128))]
    return np.random.default_rng(0).uniform(-1, 1, dims).astype(np.float32) * 128


def make(model_path: str, ref_path: str) -> int:
    model = open(model_path, "rb").read()
    x = _input(model)
    engine = _core.Engine(model, 1)
    outputs = engine.run([x])
    np.savez(ref_path, input=x, **{f"out_{n}": o for n, o in zip(engine.output_names, outputs)})
    print(f"{ref_path}: input {list(x.shape)}, outputs {list(engine.output_names)}, "
          f"isa {_core.get_isa()}")
    return 0


def check(model_path: str, ref_path: str) -> int:
    model = open(model_path, "rb").read()
    ref = np.load(ref_path)
    status = 0
    before = _core.get_isa()
    for isa in _core.supported_isas():
        _core.set_isa(isa)
        engine = _core.Engine(model, 1)
        outputs = engine.run([ref["input"]])
        worst = 0.0
        for name, got in zip(engine.output_names, outputs):
            want = ref[f"out_{name}"]
            if got.shape != want.shape:
                print(f"FAIL {isa} {name}: shape {got.shape}, reference {want.shape}")
                status = 1
                continue
            err = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-30)
            worst = max(worst, err)
            if not err <= TOLERANCE:
                print(f"FAIL {isa} {name}: max error {err:.3g} of its largest value")
                status = 1
        print(f"{isa}: {len(outputs)} outputs, max relative error {worst:.3g} (<= {TOLERANCE:g})")
    _core.set_isa(before)
    return status


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("make", "check"):
        print(__doc__.strip().splitlines()[2:4], file=sys.stderr)
        sys.exit(2)
    sys.exit({"make": make, "check": check}[sys.argv[1]](sys.argv[2], sys.argv[3]))
