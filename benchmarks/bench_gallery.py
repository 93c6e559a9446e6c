"""Gallery search time: picoface.Gallery.identify (one query, top-1) over N identities x D,
fp32 vs int8 storage, one thread, against a numpy baseline (BLAS matrix-vector product +
argmax on the same fp32 rows) timed in the same loop.

    python benchmarks/bench_gallery.py [--sizes 10000,100000] [--dims 128,512] [--runs 200]

Prints a markdown table (median / p90 in ms). Random unit vectors stand in for embeddings:
search time does not depend on their values.
"""

import argparse
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import picoface  # noqa: E402
from picoface import Gallery  # noqa: E402


def timed(fn, runs):
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(t)), float(np.percentile(t, 90))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--dims", default="128,512")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"- picoface {picoface.__version__}, ISA {picoface.get_isa()}, numpy {np.__version__}, "
          f"Python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"1 thread")
    print(f"- {args.runs} timed queries per case after 10 warm-up ones; each query a fresh "
          "noisy copy of a random gallery row; one embedding per identity")
    print()
    print("| identities | D | storage | gallery MB | identify median ms | p90 | numpy fp32 "
          "(rows @ q, argmax) median ms | ratio | top-1 correct |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for d in (int(x) for x in args.dims.split(",")):
        for n in (int(x) for x in args.sizes.split(",")):
            rows = rng.standard_normal((n, d)).astype(np.float32)
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
            probes = rows[rng.integers(0, n, args.runs + 10)] + \
                0.05 * rng.standard_normal((args.runs + 10, d)).astype(np.float32)
            for storage in ("fp32", "int8"):
                g = Gallery(storage=storage)
                for i in range(n):
                    g.enroll(f"id{i}", rows[i])
                it = iter(probes)
                hits = []

                def ours():
                    p = next(it)
                    hits.append(g.identify(p)[0][0])

                def baseline(i=iter(probes)):
                    int(np.argmax(rows @ next(i)))

                for _ in range(10):
                    ours()
                    baseline()
                hits.clear()
                med, p90 = timed(ours, args.runs)
                bmed, _ = timed(baseline, args.runs)
                want = [f"id{int(np.argmax(rows @ p))}" for p in probes[10:]]
                correct = np.mean([a == b for a, b in zip(hits, want)])
                mb = g._data[:n].nbytes / 2**20
                print(f"| {n} | {d} | {storage} | {mb:.1f} | {med:.3f} | {p90:.3f} | {bmed:.3f} | "
                      f"{bmed / med:.2f}x | {100 * correct:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
