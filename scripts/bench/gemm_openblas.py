#!/usr/bin/python3
"""OpenBLAS sgemm peer for kernels/cpu BenchmarkSgemm and TestGemmVsOpenBLAS.

Times C = op(A)·op(B) in float32 through numpy (Debian's numpy calls cblas_sgemm from the
libblas.so.3 alternative; transposed operands are passed as transposed C-contiguous views,
which numpy hands to BLAS as Trans flags, so no copies are timed). Prints one JSON object:
the OpenBLAS library, its config and core, the thread count, and per case the best time
and GFLOP/s (2·m·n·k / seconds).

Run it with OPENBLAS_NUM_THREADS set and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, e.g.
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \\
      /usr/bin/python3 scripts/bench/gemm_openblas.py --shapes 1024x1024x1024 4096x4096x1024
"""
import argparse
import ctypes
import json
import sys
import time

import numpy as np


def openblas_info():
    """Finds the OpenBLAS that numpy loaded (from /proc/self/maps) and asks it who it is."""
    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and "openblas" in fields[5].lower():
                paths.add(fields[5])
    # libopenblas itself, else a BLAS/LAPACK shim that links it (both export openblas_*).
    ranked = sorted(paths, key=lambda p: ("libopenblas" not in p, "libblas" not in p, p))
    path = ranked[0] if ranked else None
    info = {"library": path}
    if path is None:
        return info
    lib = ctypes.CDLL(path)
    for name in ("openblas_get_config", "openblas_get_corename"):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            info[name[len("openblas_get_"):]] = fn().decode()
    fn = getattr(lib, "openblas_get_num_threads", None)
    if fn is not None:
        fn.restype = ctypes.c_int
        info["num_threads"] = fn()
    return info


def bench(m, n, k, ta, tb, reps, min_seconds):
    rng = np.random.default_rng(1)
    a = (rng.random((k, m) if ta else (m, k), dtype=np.float32) - 0.5)
    b = (rng.random((n, k) if tb else (k, n), dtype=np.float32) - 0.5)
    opa = a.T if ta else a
    opb = b.T if tb else b
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(opa, opb, out=c)  # warm up threads and caches
    best = float("inf")
    start = time.perf_counter()
    done = 0
    while done < reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        np.matmul(opa, opb, out=c)
        best = min(best, time.perf_counter() - t0)
        done += 1
    return best, done


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["1024x1024x1024", "4096x4096x1024"],
                    help="MxNxK shapes")
    ap.add_argument("--trans", nargs="+", default=["NN", "NT", "TN", "TT"])
    ap.add_argument("--reps", type=int, default=5, help="minimum timed repetitions per case")
    ap.add_argument("--min-seconds", type=float, default=0.5,
                    help="keep repeating until this much time has passed")
    args = ap.parse_args()
    out = {"numpy": np.__version__, "openblas": openblas_info(), "cases": []}
    for s in args.shapes:
        try:
            m, n, k = (int(x) for x in s.lower().split("x"))
        except ValueError:
            sys.exit(f"gemm_openblas.py: --shapes entry {s!r} is not MxNxK")
        for t in args.trans:
            if len(t) != 2 or any(ch not in "NT" for ch in t):
                sys.exit(f"gemm_openblas.py: --trans entry {t!r} is not one of NN NT TN TT")
            best, reps = bench(m, n, k, t[0] == "T", t[1] == "T", args.reps, args.min_seconds)
            out["cases"].append({"m": m, "n": n, "k": k, "trans": t, "seconds": best,
                                 "reps": reps, "gflops": 2.0 * m * n * k / best / 1e9})
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
