# Peer for BenchmarkEncodeLlama2SP: Debian's python3-sentencepiece (the C++ library) encoding
# each corpus string as one input, single thread, repeated to about 5 MB of UTF-8.
# usage: /usr/bin/python3 tokenize_peer_sp.py corpus.jsonl tokenizer.model [runs]
# Prints MB per wall second and MB per CPU second (process_time) for each run.
import json
import sys
import time

import sentencepiece as spm

corpus = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
one = sum(len(t.encode("utf-8")) for t in corpus)
reps = -(-5 * 1024 * 1024 // one)
total = one * reps
sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
for t in corpus:
    sp.encode(t)
for r in range(runs):
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(reps):
        for t in corpus:
            n += len(sp.encode(t))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"python3-sentencepiece {spm.__version__} {sys.argv[2].rsplit('/', 1)[-1]} per-string run {r}: {total/1e6/wall:.2f} MB/s wall, "
          f"{total/1e6/cpu:.2f} MB/cpu-s, {n} tokens, {total} bytes")
