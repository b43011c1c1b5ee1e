"""Writes Megatron-Core's DynamicGradScaler (the --fp16 loss scaler) over a seeded sequence of
overflow flags, for gomegatron's test. Run in the harness of scripts/megatron-ref:
    python3 megatron_scaler.py > megatron_scaler.json
"""
import json
import random

import torch

_tensor = torch.tensor  # the scaler keeps its scale on device="cuda"; keep it on the CPU
torch.tensor = lambda *a, **k: _tensor(*a, **{**k, "device": "cpu"} if "device" in k else k)
from megatron.core.optimizer.grad_scaler import DynamicGradScaler  # noqa: E402

rng = random.Random(5)
flags = []
while len(flags) < 400:  # clean runs and bursts of overflows
    flags += [False] * rng.randint(0, 9) + [True] * rng.choice([0, 0, 1, 1, 2, 3, 5])
out = []
for cfg in ({"initial_scale": 2.0**10, "min_scale": 1.0, "growth_factor": 2.0, "backoff_factor": 0.5,
             "growth_interval": 5, "hysteresis": 3},
            {"initial_scale": 2.0**4, "min_scale": 2.0, "growth_factor": 2.0, "backoff_factor": 0.5,
             "growth_interval": 7, "hysteresis": 1}):
    s = DynamicGradScaler(**cfg)
    rows = []
    for f in flags[:400]:
        s.update(f)
        rows.append([f, float(s.scale.item()), s._growth_tracker, s._hysteresis_tracker])
    out.append({"config": cfg, "rows": rows})
print(json.dumps(out))
