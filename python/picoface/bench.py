"""`picoface bench`: inference latency of one model on picoface's native engine and on
onnxruntime, interleaved on the same input, one process, one machine.

First version (issue #3): raw network inference per input size. The tools issue (#7) adds
pipelines, TFLite, peak RSS, per-op breakdown and callgrind counts.
"""

import platform
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from picoface import _core
from picoface.info import build_info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _stats(samples: List[float]) -> Dict[str, float]:
    a = np.sort(np.asarray(samples)) * 1e3
    return {"min_ms": float(a[0]), "median_ms": float(np.median(a)),
            "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
            "runs": int(a.size)}


def _runners(onnx_path: Path, task: str, head: Optional[str], preset: Optional[str],
             backends: Sequence[str], threads: int):
    """name -> (load seconds, callable(x) -> outputs, object with .macs or None)."""
    out = {}
    for b in backends:
        t0 = time.perf_counter()
        if b == "native":
            from picoface.convert import convert_onnx
            engine = _core.Engine(convert_onnx(onnx_path, task=task, head=head, preset=preset),
                                  threads)
            out[b] = (time.perf_counter() - t0, lambda x, e=engine: e.run([x]), engine)
        elif b == "onnxruntime":
            from picoface.backends.ort import OnnxRuntimeBackend
            net = OnnxRuntimeBackend(onnx_path, threads=threads)
            out[b] = (time.perf_counter() - t0, net.run, None)
        else:
            raise ValueError(f"expected backends from ('native', 'onnxruntime'), got {b!r}")
    return out


def bench(onnx_path, *, task: str, head: Optional[str] = None, preset: Optional[str] = None,
          sizes: Sequence[Tuple[int, int]] = ((320, 240),), backends=("native", "onnxruntime"),
          runs: int = 100, warmup: int = 10, threads: int = 1, progress=None) -> dict:
    """Times each backend on a seeded 0..255 input per size, interleaved (one call of every
    backend per iteration, the order rotating). Returns a JSON-ready report."""
    onnx_path = Path(onnx_path)
    runners = _runners(onnx_path, task, head, preset, backends, threads)
    rows = []
    for w, h in sizes:
        x = (np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32) * 255)
        names = list(runners)
        samples = {n: [] for n in names}
        for n in names:
            for _ in range(warmup):
                runners[n][1](x)
        for it in range(runs):
            order = names[it % len(names):] + names[:it % len(names)]
            for n in order:
                t0 = time.perf_counter()
                runners[n][1](x)
                samples[n].append(time.perf_counter() - t0)
            if progress is not None:
                progress(len(rows) * runs + it + 1, len(sizes) * runs)
        for n in names:
            engine = runners[n][2]
            row = {"backend": n, "size": f"{w}x{h}", "load_s": round(runners[n][0], 4),
                   **{k: round(v, 4) if isinstance(v, float) else v
                      for k, v in _stats(samples[n]).items()}}
            if engine is not None:
                row["gmacs"] = round(engine.macs / 1e9, 4)
            rows.append(row)
    info = build_info()
    return {"model": str(onnx_path), "threads": threads, "cpu": cpu_model(),
            "isa": info["isa_selected"], "picoface": info["version"], "rows": rows}


def markdown(report: dict) -> str:
    lines = [f"model `{Path(report['model']).name}`, {report['threads']} thread(s), "
             f"CPU {report['cpu']}, picoface {report['picoface']} ISA {report['isa']}", "",
             "| size | backend | median ms | p90 ms | min ms | p99 ms | vs onnxruntime | runs |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    ort = {r["size"]: r["median_ms"] for r in report["rows"] if r["backend"] == "onnxruntime"}
    for r in report["rows"]:
        ratio = f"{ort[r['size']] / r['median_ms']:.2f}x" if r["size"] in ort else "–"
        lines.append(f"| {r['size']} | {r['backend']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | "
                     f"{r['min_ms']:.3f} | {r['p99_ms']:.3f} | {ratio} | {r['runs']} |")
    return "\n".join(lines)
