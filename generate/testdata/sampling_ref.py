# Reference for generate/sampling_test.go: reads JSON rows from stdin and prints the
# logits after Megatron-LM's top-k and top-p filters (megatron/text_generation/sampling.py,
# applied after dividing by the temperature as sample() does), Pai-Megatron-Patch's
# repetition penalty (gather, divide, scatter) and Hugging Face's
# RepetitionPenaltyLogitsProcessor, transcribed in torch. -inf is written as null.
import json
import sys

import torch


def modify_logits_for_top_k_filtering(logits, top_k):
    filter_ = logits < torch.topk(logits, top_k)[0][..., -1, None]
    logits.masked_fill_(filter_, float('-Inf'))


def modify_logits_for_top_p_filtering(logits, top_p):
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    filter_ = cumulative_probs > top_p
    filter_[:, 1:] = filter_[:, :-1].clone()
    filter_[..., 0] = 0
    filter_ = filter_.scatter(1, sorted_indices, filter_)
    logits.masked_fill_(filter_, float('-Inf'))


def pai_penalty(logits, used, penalty):
    return logits.scatter(1, used, logits.gather(1, used) / penalty)


def hf_penalty(scores, input_ids, penalty):
    score = torch.gather(scores, 1, input_ids)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return scores.scatter(1, input_ids, score)


def out(t):
    return [None if v == float('-inf') else v for v in t.reshape(-1).tolist()]


rows = json.load(sys.stdin)
res = {"top_k": [], "top_p": [], "pai": [], "hf": []}
for r in rows:
    logits = torch.tensor([r["logits"]], dtype=torch.float32)
    used = torch.tensor([r["used"]], dtype=torch.int64)
    k = logits.clone() / r["temperature"]
    modify_logits_for_top_k_filtering(k, r["top_k"])
    p = logits.clone() / r["temperature"]
    modify_logits_for_top_p_filtering(p, r["top_p"])
    res["top_k"].append(out(k))
    res["top_p"].append(out(p))
    res["pai"].append(out(pai_penalty(logits, used, r["penalty"])))
    res["hf"].append(out(hf_penalty(logits, used, r["penalty"])))
print(json.dumps(res))
