#!/usr/bin/python3
"""OpenBLAS sgemm peer for kernels/cpu BenchmarkSgemm and TestGemmVsOpenBLAS.

Times C = op(A)·op(B) in float32 through numpy (Debian's numpy calls cblas_sgemm from the
libblas.so.3 alternative; transposed operands are passed as transposed C-contiguous views,
which numpy hands to BLAS as Trans flags, so no copies are timed). Prints one JSON object:
the OpenBLAS library, its config and core, the thread count, and per case the best time
and GFLOP/s (2·m·n·k / seconds).

Run it with OPENBLAS_NUM_THREADS set and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, e.g.
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \\
      /usr/bin/python3 scripts/bench/gemm_openblas.py --cases 1024x1024x1024:NN 1024x1536x512:NT
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


_operands = {}


def operands(m, n, k, ta, tb):
    """Random op(A), op(B) (transposed views of C-contiguous arrays) and C, kept per case."""
    key = (m, n, k, ta, tb)
    if key not in _operands:
        rng = np.random.default_rng(1)
        a = rng.random((k, m) if ta else (m, k), dtype=np.float32) - 0.5
        b = rng.random((n, k) if tb else (k, n), dtype=np.float32) - 0.5
        _operands[key] = (a.T if ta else a, b.T if tb else b, np.empty((m, n), dtype=np.float32))
    return _operands[key]


def bench(m, n, k, ta, tb, reps, min_seconds, clock=time.perf_counter):
    """Best time of np.matmul by clock over at least reps calls and min_seconds of wall
    time. clock=time.thread_time measures the CPU time of this thread, which is all of
    OpenBLAS's work when OPENBLAS_NUM_THREADS=1 and is not inflated when other processes
    share the cores."""
    opa, opb, c = operands(m, n, k, ta, tb)
    np.matmul(opa, opb, out=c)  # warm up threads and caches
    best = float("inf")
    start = time.perf_counter()
    done = 0
    while done < reps or time.perf_counter() - start < min_seconds:
        t0 = clock()
        np.matmul(opa, opb, out=c)
        best = min(best, clock() - t0)
        done += 1
    return best, done


def parse_case(case):
    shape, _, t = case.partition(":")
    try:
        m, n, k = (int(x) for x in shape.lower().split("x"))
    except ValueError:
        raise ValueError(f"case {case!r}: {shape!r} is not MxNxK")
    if len(t) != 2 or any(ch not in "NT" for ch in t):
        raise ValueError(f"case {case!r}: op {t!r} is not one of NN NT TN TT")
    return m, n, k, t


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def run_case(case, reps, min_seconds, clock="wall"):
    m, n, k, t = parse_case(case)
    if clock not in CLOCKS:
        raise ValueError(f"clock {clock!r} is not one of {sorted(CLOCKS)}")
    best, done = bench(m, n, k, t[0] == "T", t[1] == "T", reps, min_seconds, CLOCKS[clock])
    return {"m": m, "n": n, "k": k, "trans": t, "seconds": best, "reps": done,
            "gflops": 2.0 * m * n * k / best / 1e9}


def serve(reps):
    """Line protocol for interleaved timing: prints the info object on one line, then for
    each input line "MxNxK:OP SECONDS [wall|thread]" prints one case object on one line."""
    print(json.dumps({"numpy": np.__version__, "openblas": openblas_info(), "cases": []}), flush=True)
    for line in sys.stdin:
        fields = line.split()
        if not fields:
            continue
        try:
            min_seconds = float(fields[1]) if len(fields) > 1 else 0.5
            clock = fields[2] if len(fields) > 2 else "wall"
            print(json.dumps(run_case(fields[0], reps, min_seconds, clock)), flush=True)
        except ValueError as e:
            print(json.dumps({"error": str(e)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", metavar="MxNxK:OP",
                    default=[f"{s}:{op}" for s in ("1024x1024x1024", "4096x4096x1024")
                             for op in ("NN", "NT", "TN", "TT")],
                    help="products C[MxN] = op(A)·op(B), OP one of NN NT TN TT")
    ap.add_argument("--reps", type=int, default=5, help="minimum timed repetitions per case")
    ap.add_argument("--min-seconds", type=float, default=0.5,
                    help="keep repeating until this much time has passed")
    ap.add_argument("--serve", action="store_true",
                    help="read cases from stdin, one per line (see serve)")
    args = ap.parse_args()
    if args.serve:
        serve(args.reps)
        return
    out = {"numpy": np.__version__, "openblas": openblas_info(), "cases": []}
    for case in args.cases:
        try:
            out["cases"].append(run_case(case, args.reps, args.min_seconds))
        except ValueError as e:
            sys.exit(f"gemm_openblas.py: --cases: {e}")
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
