#!/usr/bin/python3
"""All-reduce bus bandwidth: gomegatron comm/tcp beside PyTorch's gloo backend.

    /usr/bin/python3 scripts/bench/allreduce_gloo.py [--golaunch BIN] [--nproc 4] [--rounds 5]

For each message size (float32 sum, 1 KiB ... 64 MiB) both backends run the same number of
all-reduces per round with the same number of processes on this machine, alternating
(gloo round, Go round, ...) so that load from other jobs hits both alike. A round's time is
the slowest rank's, and its CPU cost (user + system, all threads) is summed over the ranks;
the best round of each is kept. Bus bandwidth is NCCL-tests' definition,
busbw = bytes * 2(n-1)/n / t. Prints a markdown table; --golaunch omitted runs gloo only.
The Go side is `golaunch --nproc-per-node N _commtest -bench SIZES -iters I -rounds 1`.
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SIZES = [1 << k for k in range(10, 27, 2)]  # 1 KiB, 4 KiB, ..., 64 MiB


def iters_for(nbytes):
    """Enough all-reduces for ~0.1-0.3 s per round at a few hundred MB/s."""
    return max(3, min(300, (32 << 20) // nbytes))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds():
    """User + system CPU time of this process, all threads (gloo's included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def gloo_worker(rank, world, port, sizes, q):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    out = {}
    for nbytes in sizes:
        x = torch.ones(nbytes // 4, dtype=torch.float32)
        dist.all_reduce(x)  # warm-up
        n = iters_for(nbytes)
        dist.barrier()
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        for _ in range(n):
            dist.all_reduce(x)
        el = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        cpu = torch.tensor([cpu_seconds() - c0], dtype=torch.float64)
        dist.all_reduce(el, op=dist.ReduceOp.MAX)
        dist.all_reduce(cpu, op=dist.ReduceOp.SUM)
        out[nbytes] = (el.item() / n, cpu.item() / n)
    if rank == 0:
        q.put(out)
    dist.destroy_process_group()


def gloo_round(world, sizes):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=gloo_worker, args=(r, world, port, sizes, q)) for r in range(world)]
    for p in procs:
        p.start()
    res = q.get(timeout=600)
    for p in procs:
        p.join()
    return res


def go_round(golaunch, world, sizes):
    res = {}
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    for nbytes in sizes:  # one launch per size so each size gets its own iteration count
        out = subprocess.run([golaunch, "--nproc-per-node", str(world), "--master-port", str(free_port()),
                              "_commtest", "-bench", str(nbytes), "-iters", str(iters_for(nbytes)), "-rounds", "1"],
                             capture_output=True, text=True, env=env, timeout=600)
        if out.returncode != 0:
            sys.exit(f"golaunch failed:\n{out.stdout}\n{out.stderr}")
        for line in out.stdout.splitlines():
            f = line.split("bench ", 1)
            if len(f) == 2:
                b, t, c = f[1].split()
                res[int(b)] = (float(t), float(c))
    return res


def fmt_size(b):
    return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--golaunch", help="golaunch binary (go build -o /tmp/golaunch ./cmd/golaunch)")
    ap.add_argument("--nproc", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    best = {"gloo": {}, "go": {}}
    for _ in range(a.rounds):
        for name, run in (("gloo", lambda: gloo_round(a.nproc, SIZES)),
                          ("go", lambda: go_round(a.golaunch, a.nproc, SIZES) if a.golaunch else {})):
            for b, (t, c) in run().items():
                old = best[name].get(b, (float("inf"), float("inf")))
                best[name][b] = (min(old[0], t), min(old[1], c))
    n = a.nproc
    bus = lambda b, t: b * 2 * (n - 1) / n / t / 1e9
    print("| size | gloo time | gloo busbw | gomegatron time | gomegatron busbw | busbw ratio (Go/gloo) "
          "| gloo CPU/op | gomegatron CPU/op | CPU ratio (gloo/Go) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in SIZES:
        tg, cg = best["gloo"][b]
        row = [fmt_size(b), f"{tg * 1e6:.0f} µs", f"{bus(b, tg):.3f} GB/s"]
        if b in best["go"]:
            tm, cm = best["go"][b]
            row += [f"{tm * 1e6:.0f} µs", f"{bus(b, tm):.3f} GB/s", f"{tg / tm:.2f}",
                    f"{cg * 1e3:.2f} ms", f"{cm * 1e3:.2f} ms", f"{cg / cm:.2f}"]
        else:
            row += ["", "", "", f"{cg * 1e3:.2f} ms", "", ""]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
