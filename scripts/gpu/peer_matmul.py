#!/usr/bin/env python3
"""torch.matmul TFLOP/s on the shapes and dtypes of kernels/cuda's BenchmarkGemm.

bf16: a [n, n] @ b [n, n] (NN, bf16 out); fp8: torch._scaled_mm(a_e4m3 [n, n],
b_e4m3 [n, n].t(), per-tensor scales, bf16 out, use_fast_accum=True) - the TN layout
cuBLASLt's FP8 path needs. Random operands (never zeros), 5 warm-ups, then the median of
7 timings of `iters` back-to-back products with CUDA events. Prints one line per case:
`peer <kind>/<n> <TFLOP/s>`.
"""
import statistics
import sys

import torch


def bench(fn, n, iters):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / iters)
    return 2 * n**3 / statistics.median(times) / 1e12


def main():
    if not torch.cuda.is_available():
        print("peer: torch sees no GPU", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    for n in (4096, 8192):
        iters = 50 if n == 4096 else 10
        a = torch.randn(n, n, device="cuda").to(torch.bfloat16)
        b = torch.randn(n, n, device="cuda").to(torch.bfloat16)
        print(f"peer bf16/{n} {bench(lambda: torch.matmul(a, b), n, iters):.1f}", flush=True)
        try:
            a8 = (a.float() * 0.5).to(torch.float8_e4m3fn)
            b8 = (b.float() * 0.5).to(torch.float8_e4m3fn)
            one = torch.ones((), device="cuda")
            fp8 = lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True)
            print(f"peer fp8/{n} {bench(fp8, n, iters):.1f}", flush=True)
        except Exception as e:  # older torch or no FP8 support
            print(f"peer: fp8/{n} failed: {e}", file=sys.stderr)
        del a, b
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
