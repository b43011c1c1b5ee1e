"""Reference for comm.ReduceSerial computed with torch: the rank-order left fold in float32
for float16/bfloat16/float32 (rounded once to the dtype), wrapping integer sums, NaN-propagating
max/min (torch.maximum/minimum), avg = fold / n.

argv: n numel dir. For every dir/in_<dtype>.bin (n tensors back to back) it writes
dir/out_<dtype>_<op>.bin for op in sum, max, min and, for floats, avg.
"""
import os
import sys

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8}
n, m, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for name, dt in DTYPES.items():
    path = os.path.join(d, f"in_{name}.bin")
    if not os.path.exists(path):
        continue
    x = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=dt).reshape(n, m)
    wide = x.float() if dt.is_floating_point else x
    for op in ("sum", "max", "min", "avg") if dt.is_floating_point else ("sum", "max", "min"):
        acc = wide[0].clone()
        for r in range(1, n):
            if op in ("sum", "avg"):
                acc = acc + wide[r]
            elif op == "max":
                acc = torch.maximum(acc, wide[r])
            else:
                acc = torch.minimum(acc, wide[r])
        if op == "avg":
            acc = acc / n
        out = acc.to(dt)
        if dt in (torch.bfloat16, torch.float16):  # numpy has no bfloat16: write the raw bits
            out = out.view(torch.int16)
        open(os.path.join(d, f"out_{name}_{op}.bin"), "wb").write(out.numpy().tobytes())
