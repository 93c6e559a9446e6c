"""Native engine on another machine against reference outputs stored on this one.

    python engine_smoke.py make MODEL.pface REF.npz     # on the reference machine (x86_64)
    python engine_smoke.py check MODEL.pface REF.npz    # on the target (e.g. aarch64 under qemu)

``make`` runs the model on a seeded input (1x3x96x128, for dynamic detectors) with the default
ISA and stores input and outputs; ``check`` runs it with every ISA the target supports and
requires each float output within 1e-5 of its largest reference value (the kernels differ
in summation order only). An int8 model runs a second time with every int8 activation
exposed as an output (which also turns off fusion of the pairs it splits), and those must
match bit for bit (the int8 kernels' contract). Needs only numpy and an installed picoface — no onnx, no
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


def _variants(model_path: str) -> dict:
    """Key prefix -> model bytes: the model, and for an int8 model the same with every int8
    activation added to its outputs."""
    from picoface import modelfile
    from picoface.quant_graph import load_graph

    model = open(model_path, "rb").read()
    if modelfile.summary(model)["metadata"].get("quant.scheme", "none") == "none":
        return {"out": model}
    graph = load_graph(model)
    int8 = [n for n, t in graph.tensors.items() if t.data is None and t.dtype == "int8"]
    return {"out": model,
            "int8": graph.encode(list(graph.outputs) + [n for n in int8 if n not in graph.outputs])}


def make(model_path: str, ref_path: str) -> int:
    variants = _variants(model_path)
    x = _input(variants["out"])
    arrays = {"input": x}
    for prefix, model in variants.items():
        engine = _core.Engine(model, 1)
        arrays.update({f"{prefix}_{n}": o for n, o in zip(engine.output_names, engine.run([x]))})
    np.savez(ref_path, **arrays)
    print(f"{ref_path}: input {list(x.shape)}, {len(arrays) - 1} outputs ({', '.join(variants)}), "
          f"isa {_core.get_isa()}")
    return 0


def check(model_path: str, ref_path: str) -> int:
    variants = _variants(model_path)
    ref = np.load(ref_path)
    status = 0
    before = _core.get_isa()
    for isa in _core.supported_isas():
        _core.set_isa(isa)
        worst, floats, exact = 0.0, 0, 0
        for prefix, model in variants.items():
            engine = _core.Engine(model, 1)
            for name, got in zip(engine.output_names, engine.run([ref["input"]])):
                want = ref[f"{prefix}_{name}"]
                if got.shape != want.shape:
                    print(f"FAIL {isa} {name}: shape {got.shape}, reference {want.shape}")
                    status = 1
                elif np.issubdtype(want.dtype, np.integer):
                    exact += 1
                    if not np.array_equal(got, want):
                        print(f"FAIL {isa} {name}: {int((got != want).sum())} int8 values differ")
                        status = 1
                else:
                    floats += 1
                    err = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-30)
                    worst = max(worst, err)
                    if not err <= TOLERANCE:
                        print(f"FAIL {isa} {name}: max error {err:.3g} of its largest value")
                        status = 1
        print(f"{isa}: {floats} float outputs, max relative error {worst:.3g} (<= {TOLERANCE:g}); "
              f"{exact} int8 outputs bit-exact" if status == 0 else f"{isa}: mismatches above")
    _core.set_isa(before)
    return status


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("make", "check"):
        print(__doc__.strip().splitlines()[2:4], file=sys.stderr)
        sys.exit(2)
    sys.exit({"make": make, "check": check}[sys.argv[1]](sys.argv[2], sys.argv[3]))
