"""Writes Megatron-Core's OptimizerParamScheduler learning rates and weight decays over a
grid of sample counts, for gomegatron's LRSchedule test. Run in the harness of
scripts/megatron-ref (Megatron-LM's June 2025 tree on PYTHONPATH):

    python3 megatron_schedules.py > megatron_schedules.json
"""
import json

from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler


class Optimizer:  # what the scheduler touches: param_groups
    def __init__(self):
        self.param_groups = [{"params": []}]


CONFIGS = [
    dict(name="linear", lr_decay_style="linear", init_lr=1e-5, max_lr=1e-3, min_lr=1e-5, lr_warmup_steps=100, lr_decay_steps=1000),
    dict(name="cosine", lr_decay_style="cosine", init_lr=0.0, max_lr=3e-4, min_lr=3e-5, lr_warmup_steps=128, lr_decay_steps=1024),
    dict(name="cosine-nowarmup", lr_decay_style="cosine", init_lr=0.0, max_lr=3e-4, min_lr=0.0, lr_warmup_steps=0, lr_decay_steps=900),
    dict(name="inverse-square-root", lr_decay_style="inverse-square-root", init_lr=0.0, max_lr=1e-3, min_lr=1e-6, lr_warmup_steps=100, lr_decay_steps=1000),
    dict(name="constant", lr_decay_style="constant", init_lr=1e-6, max_lr=2e-4, min_lr=0.0, lr_warmup_steps=64, lr_decay_steps=1000),
] + [
    dict(name="WSD-" + s, lr_decay_style="WSD", lr_wsd_decay_style=s, wsd_decay_steps=300, init_lr=0.0,
         max_lr=1e-3, min_lr=1e-5, lr_warmup_steps=50, lr_decay_steps=1000)
    for s in ("linear", "cosine", "exponential", "minus_sqrt")
]
WD = [
    dict(name="wd-linear", start_wd=0.01, end_wd=0.1, wd_incr_steps=800, wd_incr_style="linear"),
    dict(name="wd-cosine", start_wd=0.0, end_wd=0.05, wd_incr_steps=640, wd_incr_style="cosine"),
    dict(name="wd-constant", start_wd=0.1, end_wd=0.1, wd_incr_steps=640, wd_incr_style="constant"),
]
STEPS = sorted(set(list(range(0, 1201, 7)) + [50, 64, 100, 128, 699, 700, 701, 800, 900, 999, 1000, 1001, 1024, 1025]))

out = []
for lr in CONFIGS:
    for wd in WD:
        kw = {k: v for k, v in lr.items() if k != "name"}
        kw.update({k: v for k, v in wd.items() if k != "name"})
        sched = OptimizerParamScheduler(Optimizer(), **kw)
        rows = []
        for n in STEPS:
            sched.num_steps = n
            rows.append([n, sched.get_lr({}), sched.get_wd()])
        out.append({"lr": lr, "wd": wd, "rows": rows})
print(json.dumps(out))
