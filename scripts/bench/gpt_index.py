#!/usr/bin/env python3
"""GPT index build: gomegatron (Go) beside Megatron's own recipe (numpy + C++), same run.

Builds GPTDataset indices for a synthetic dataset (default 2M documents with lengths
numpy.random.RandomState(0).randint(1, 1000) ~ 1e9 tokens, seq length 2048, one epoch), step by
step as megatron/core/datasets/gpt_dataset.py _build_document_sample_shuffle_indices does:

  num_tokens      int(numpy.sum(lengths[indices]))
  document_index  numpy.mgrid epochs x documents -> int32, RandomState(seed).shuffle
  sample_index    build_sample_idx: a C++ transcription of helpers.cpp's loop compiled with
                  Megatron's Makefile flags (g++ -O3 -Wall -shared -std=c++17 -fPIC), via ctypes
                  (pybind11 is not installed here; the loop is the same)
  shuffle_index   numpy.arange(n, dtype=uint32), RandomState.shuffle

then runs `go test -bench BenchmarkGPTIndex1B` (data/gpt/bench_test.go) on the same lengths,
checks that both produced byte-identical .npy files (SHA-256), and prints a markdown table of
mean times and ratios. Usage (from the repository root):

  /usr/bin/python3 scripts/bench/gpt_index.py [--docs 2000000] [--seq-length 2048] [--reps 3]

Go flags can be passed with GOFLAGS (e.g. GOFLAGS=-modfile=...).
"""
import argparse
import ctypes
import hashlib
import io
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy

CPP = r"""
#include <cstdint>
#include <cmath>
// helpers.cpp build_sample_idx<int32_t>, writing into a caller-allocated [n+1, 2] buffer.
extern "C" void build_sample_idx_i32(const int32_t *sizes, const int32_t *document_idx,
                                     int64_t document_idx_len, int32_t seq_length,
                                     int64_t num_samples, int32_t add_extra_token_to_sequence,
                                     int32_t *sample_idx) {
  int64_t sample_idx_index = 0;
  int32_t document_idx_index = 0;
  int32_t doc_offset = 0;
  sample_idx[2 * sample_idx_index] = document_idx_index;
  sample_idx[2 * sample_idx_index + 1] = doc_offset;
  ++sample_idx_index;
  while (sample_idx_index <= num_samples) {
    int32_t remaining_seq_length = seq_length + add_extra_token_to_sequence;
    while (remaining_seq_length != 0) {
      auto document_index = document_idx[document_idx_index];
      auto document_length = sizes[document_index] - doc_offset;
      remaining_seq_length -= document_length;
      if (remaining_seq_length <= 0) {
        doc_offset += (remaining_seq_length + document_length - add_extra_token_to_sequence);
        remaining_seq_length = 0;
      } else {
        if (document_idx_index == (document_idx_len - 1)) {
          doc_offset = sizes[document_idx[document_idx_index]] - add_extra_token_to_sequence;
          break;
        }
        ++document_idx_index;
        doc_offset = 0;
      }
    }
    sample_idx[2 * sample_idx_index] = document_idx_index;
    sample_idx[2 * sample_idx_index + 1] = doc_offset;
    ++sample_idx_index;
  }
}
"""


def compile_helper(tmp):
    src = os.path.join(tmp, "helpers_peer.cpp")
    lib = os.path.join(tmp, "helpers_peer.so")
    with open(src, "w") as f:
        f.write(CPP)
    subprocess.run(["g++", "-O3", "-Wall", "-shared", "-std=c++17", "-fPIC", src, "-o", lib], check=True)
    h = ctypes.CDLL(lib)
    p = ctypes.c_void_p
    h.build_sample_idx_i32.argtypes = [p, p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int64, ctypes.c_int32, p]
    h.build_sample_idx_i32.restype = None
    return h


def npy_sha(a):
    b = io.BytesIO()
    numpy.save(b, a, allow_pickle=True)
    return hashlib.sha256(b.getvalue()).hexdigest()


def mean_time(fn, reps):
    """Mean wall and CPU (time.process_time) seconds of fn over reps calls, and its last result."""
    wall, cpu = [], []
    out = None
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return (sum(wall) / reps, sum(cpu) / reps), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2_000_000)
    ap.add_argument("--max-len", type=int, default=1000)
    ap.add_argument("--seq-length", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    S, X = args.seq_length, 1

    lengths = numpy.random.RandomState(0).randint(1, args.max_len, size=args.docs).astype(numpy.int32)
    indices = numpy.arange(0, args.docs, dtype=numpy.int32)
    with tempfile.TemporaryDirectory() as tmp:
        helper = compile_helper(tmp)

        t_tok, T = mean_time(lambda: int(numpy.sum(lengths[indices])), args.reps)

        def doc_index():
            d = numpy.mgrid[0:1, 0:len(indices)][1]
            d[:] = indices
            d = d.reshape(-1).astype(numpy.int32)
            numpy.random.RandomState(args.seed).shuffle(d)
            return d

        t_doc, D = mean_time(doc_index, args.reps)
        n = (T - X) // S

        def sample_index():
            out = numpy.empty((n + 1, 2), dtype=numpy.int32)
            helper.build_sample_idx_i32(lengths.ctypes.data, D.ctypes.data, len(D), S, n, X, out.ctypes.data)
            return out

        t_smp, SI = mean_time(sample_index, args.reps)

        def shuffle_index():
            s = numpy.arange(0, n, dtype=numpy.uint32)
            numpy.random.RandomState(args.seed).shuffle(s)
            return s

        t_shf, _ = mean_time(shuffle_index, args.reps)

        def total():
            rs = numpy.random.RandomState(args.seed)
            t = int(numpy.sum(lengths[indices]))
            d = numpy.mgrid[0:1, 0:len(indices)][1]
            d[:] = indices
            d = d.reshape(-1).astype(numpy.int32)
            rs.shuffle(d)
            m = (t - X) // S
            si = numpy.empty((m + 1, 2), dtype=numpy.int32)
            helper.build_sample_idx_i32(lengths.ctypes.data, d.ctypes.data, len(d), S, m, X, si.ctypes.data)
            sh = numpy.arange(0, m, dtype=numpy.uint32)
            rs.shuffle(sh)
            return d, si, sh

        t_tot, (d, si, sh) = mean_time(total, args.reps)
        peer_sha = {"document_index": npy_sha(d), "sample_index": npy_sha(si), "shuffle_index": npy_sha(sh)}

        sha_out = os.path.join(tmp, "go_sha.txt")
        env = dict(os.environ, GPT_INDEX_BENCH_DOCS=str(args.docs), GPT_INDEX_BENCH_MAXLEN=str(args.max_len),
                   GPT_INDEX_BENCH_SEQ=str(S), GPT_INDEX_BENCH_SEED=str(args.seed), GPT_INDEX_BENCH_SHA_OUT=sha_out)
        cmd = ["go", "test", "-run", "^$", "-bench", "BenchmarkGPTIndex1B", "-benchtime", f"{args.reps}x", "./data/gpt/"]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit("go benchmark failed:\n" + res.stdout + res.stderr)
        go = {}
        for m in re.finditer(r"BenchmarkGPTIndex1B/(\w+)-\d+\s+\d+\s+([\d.]+) ns/op\s+([\d.e+-]+) cpu-s/op", res.stdout):
            go[m.group(1)] = (float(m.group(2)) / 1e9, float(m.group(3)))
        go_sha = dict(line.split() for line in open(sha_out).read().splitlines())

    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {numpy.__version__}")
    print(f"dataset: {args.docs} documents, {T} tokens, seq length {S}, one epoch, {n} samples; {args.reps} reps (mean)")
    print(f"command: GOFLAGS='{os.environ.get('GOFLAGS', '')}' /usr/bin/python3 scripts/bench/gpt_index.py "
          f"--docs {args.docs} --max-len {args.max_len} --seq-length {S} --seed {args.seed} --reps {args.reps}")
    print()
    print("| step | Go wall (s) | peer wall (s) | peer/Go wall | Go CPU (s) | peer CPU (s) | peer/Go CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, peer in [("num_tokens", t_tok), ("document_index", t_doc), ("sample_index", t_smp),
                       ("shuffle_index", t_shf), ("total", t_tot)]:
        g = go.get(name)
        if not g:
            print(f"| {name} | n/a | {peer[0]:.4f} | n/a | n/a | {peer[1]:.4f} | n/a |")
            continue
        rc = f"{peer[1] / g[1]:.2f}x" if g[1] > 0 else "n/a"
        print(f"| {name} | {g[0]:.4f} | {peer[0]:.4f} | {peer[0] / g[0]:.2f}x | {g[1]:.4f} | {peer[1]:.4f} | {rc} |")
    print()
    same = all(go_sha.get(k) == v for k, v in peer_sha.items())
    print("identical .npy output (SHA-256):", "yes" if same else f"NO: go {go_sha} peer {peer_sha}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
