#!/usr/bin/env python3
"""The Python peer of the preprocess benchmark: Megatron's tools/preprocess_data.py work for
--tokenizer-type Llama2Tokenizer, done with Debian's python3-sentencepiece and numpy only.

usage: preprocess_peer.py INPUT_JSONL TOKENIZER_MODEL OUTPUT_PREFIX WORKERS

As Megatron: multiprocessing.Pool(WORKERS).imap(encode, lines, 32); per line json.loads, then
Llama2Tokenizer.tokenize = [bos] + sp.encode(text), --append-eod adds eos; the builder writes
the tokens to {prefix}_text_document.bin as uint16 (vocab 32000 < 65500) and the .idx at the
end in the MMIDIDX v1 layout. The output must be byte-identical to tools/preprocess's.
"""
import json
import multiprocessing
import struct
import sys
import time

import numpy as np
import sentencepiece as spm

sp = None


def init(model):
    global sp
    sp = spm.SentencePieceProcessor(model_file=model)


def encode(line):
    text = json.loads(line)['text']
    ids = [sp.bos_id()] + sp.encode(text)
    ids.append(sp.eos_id())
    return ids, len(line)


def main():
    inp, model, prefix, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    start = time.time()
    lengths = []
    nbytes = 0
    with open(inp, encoding='utf-8') as fin, open(prefix + '_text_document.bin', 'wb') as fbin, \
            multiprocessing.Pool(workers, initializer=init, initargs=(model,)) as pool:
        for ids, n in pool.imap(encode, fin, 32):
            fbin.write(np.array(ids, dtype=np.uint16).tobytes(order='C'))
            lengths.append(len(ids))
            nbytes += n
    lengths = np.array(lengths, dtype=np.int32)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        np.cumsum(lengths[:-1].astype(np.int64) * 2, out=pointers[1:])
    doc_idx = np.arange(len(lengths) + 1, dtype=np.int64)
    with open(prefix + '_text_document.idx', 'wb') as f:
        f.write(b'MMIDIDX\x00\x00')
        f.write(struct.pack('<Q', 1))
        f.write(struct.pack('<B', 8))
        f.write(struct.pack('<Q', len(lengths)))
        f.write(struct.pack('<Q', len(doc_idx)))
        f.write(lengths.tobytes(order='C'))
        f.write(pointers.tobytes(order='C'))
        f.write(doc_idx.tobytes(order='C'))
    el = time.time() - start
    print(f'{len(lengths)} documents, {int(lengths.sum())} tokens, {el:.2f} s, {nbytes / el / 1e6:.2f} MB/s', file=sys.stderr)


if __name__ == '__main__':
    main()
