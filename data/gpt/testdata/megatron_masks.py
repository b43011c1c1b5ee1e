"""Writes Megatron-Core's _get_ltor_masks_and_position_ids (gpt_dataset.py) on random token
sequences with end-of-document tokens, for every flag combination, for gomegatron's test.
Run in the harness of scripts/megatron-ref:  python3 megatron_masks.py > megatron_masks.json
"""
import itertools
import json

import torch
from megatron.core.datasets.gpt_dataset import _get_ltor_masks_and_position_ids

EOD = 7
g = torch.Generator().manual_seed(11)
out = []
for case in range(6):
    s = 24
    tokens = torch.randint(0, 12, (s,), generator=g)
    if case == 0:
        tokens[0] = EOD  # a document ends at the first token
    if case == 1:
        tokens[-1] = EOD
    if case == 2:
        tokens[tokens == EOD] = 8  # no document boundary
    for flags in itertools.product([False, True], repeat=3):
        rp, ra, em = flags
        mask, loss_mask, pos = _get_ltor_masks_and_position_ids(tokens, EOD, rp, ra, em, True)
        out.append({"tokens": tokens.tolist(), "reset_position_ids": rp, "reset_attention_mask": ra,
                    "eod_mask_loss": em, "attention_mask": mask.reshape(s, s).int().tolist(),
                    "loss_mask": loss_mask.tolist(), "position_ids": pos.tolist()})
print(json.dumps(out))
