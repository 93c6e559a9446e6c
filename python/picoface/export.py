"""``picoface export``: a detector checkpoint (.pth) through the project's own PyTorch
definitions (``models/``) to ONNX, checked against PyTorch on the same input.

The definitions and exporters (``models/``, ``tools/export_*.py``) are not installed with the
package: export runs from a source checkout (found from the working directory upwards, or
named by ``PICOFACE_SOURCE``), with PyTorch from the ``[export]`` extra.
"""

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Optional

# Architecture -> the exporter in tools/ that holds its ExportSpec.
ARCHS = {"extd": "export_extd", "retinaface": "export_retinaface"}
FORMATS = ("onnx", "tflite")
INSTALL_HINT = "pip install 'picoface[export]' (torch 2.13.0, onnxscript, onnxruntime)"


def source_root(start: Optional[Path] = None) -> Path:
    """The picoface source checkout holding models/ and tools/: $PICOFACE_SOURCE, else the
    working directory or its nearest parent that has them."""
    marker = ("models/extd.py", "tools/onnx_export.py")
    env = os.environ.get("PICOFACE_SOURCE")
    candidates = [Path(env)] if env else [p for d in [Path(start or Path.cwd()).resolve()]
                                          for p in (d, *d.parents)]
    for c in candidates:
        if all((c / m).is_file() for m in marker):
            return c
    where = f"PICOFACE_SOURCE={env!r}" if env else f"{str(Path(start or Path.cwd()))!r} or its parents"
    raise FileNotFoundError(f"picoface export needs the model definitions of a picoface source "
                            f"checkout (models/, tools/; not installed), none in {where}: run it "
                            "from the repository or set PICOFACE_SOURCE")


def _require_export_deps() -> None:
    missing = []
    for module in ("torch", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"picoface export needs {', '.join(missing)}: {INSTALL_HINT}")


def _exporter(arch: str, root: Path):
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"tools.{ARCHS[arch]}")


def export(checkpoint, output, *, arch: Optional[str] = None, to: str = "onnx",
           image=None) -> dict:
    """Exports ``checkpoint`` to ``output`` and checks it against PyTorch.

    Args:
        checkpoint: a .pth weight file of one of the project's architectures.
        output: the file to write.
        arch: "extd" or "retinaface"; None: the one whose layout loads the checkpoint strictly.
        to: "onnx" ("tflite" arrives with issue #7).
        image: optional uint8 HxWx3 BGR image for the check (default: a seeded random input).

    Returns:
        {"arch", "output", "bytes", "input", "max_abs_error", "tolerance"}.

    Raises:
        FileNotFoundError: checkpoint or source checkout missing.
        ImportError: PyTorch / onnxscript / onnxruntime missing (names the extra).
        ValueError: unknown format or architecture, or a checkpoint no definition loads.
        RuntimeError: the exported model differs from PyTorch by the tolerance or more.
    """
    if to not in FORMATS:
        raise ValueError(f"expected --to one of {FORMATS}, got {to!r}")
    if arch is not None and arch not in ARCHS:
        raise ValueError(f"expected arch one of {sorted(ARCHS)}, got {arch!r}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(checkpoint)!r}")
    if to == "tflite":
        raise ValueError("--to tflite is not available yet (issue #7): export to ONNX; the "
                         "tflite backend runs .tflite files made by litert-torch")
    root = source_root()
    _require_export_deps()
    import numpy as np

    from tools import onnx_export  # noqa: F401  (importable once the root is on sys.path)

    tool, errors = None, {}
    for name in [arch] if arch else sorted(ARCHS):
        candidate = _exporter(name, root)
        try:
            candidate.SPEC.load(str(checkpoint))
        except (RuntimeError, KeyError, ValueError) as e:  # strict load: layout mismatch
            errors[name] = str(e).splitlines()[0]
            continue
        tool, arch = candidate, name
        break
    if tool is None:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        raise ValueError(f"{str(checkpoint)!r} loads into none of {sorted(errors)} ({detail})")
    spec, tools_export = tool.SPEC, tool.onnx_export
    # torch.onnx prints progress on stdout, which must stay clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        out = tools_export.export(spec, str(checkpoint), output)
    if image is not None:
        x = tools_export.input_tensor(spec, image)
    else:
        w, h = spec.example_size
        x = np.random.default_rng(0).uniform(-128, 128, (1, 3, h, w)).astype(np.float32)
    err = tools_export.max_abs_error(spec, str(checkpoint), out, x)
    report = {"arch": arch, "output": str(out), "bytes": Path(out).stat().st_size,
              "input": f"{x.shape[3]}x{x.shape[2]}", "max_abs_error": err,
              "tolerance": tools_export.TOLERANCE}
    if not err < tools_export.TOLERANCE:
        raise RuntimeError(f"{out}: ONNX differs from PyTorch by {err:.3g} (tolerance "
                           f"{tools_export.TOLERANCE:g})")
    return report
