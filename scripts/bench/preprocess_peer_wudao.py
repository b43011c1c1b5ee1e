#!/usr/bin/env python3
"""The Python peer of the WuDao benchmark: Pai-Megatron-Patch's pipeline for a raw
WuDaoCorpora 2.0 folder with --patch-tokenizer-type LLamaTokenizer, done with CPython,
python3-sentencepiece and numpy only.

usage: preprocess_peer_wudao.py RAW_DIR TOKENIZER_MODEL OUTPUT_PREFIX WORKERS

Step 1 as preprocess_wudao2.py (a Pool over the *.json files, each json.load-ed and every
'content' cleaned with its three re.sub calls and strip), in sorted file order (the merge);
step 2 as preprocess_data.py: empty texts filtered out, Pool.imap(encode, texts, 25) with
tokenizer(text, add_special_tokens=False) = sp.encode(text) plus eos (--append-eod), the builder
writing {prefix}_text_document.bin/.idx (uint16, MMIDIDX v1). The cleaning patterns are the
ones quoted in spec/pai-megatron-patch.md §5. The output must be byte-identical to
`preprocess --wudao --patch-tokenizer-type LLamaTokenizer`.
"""
import glob
import json
import multiprocessing
import os
import re
import struct
import sys
import time

import numpy as np
import sentencepiece as spm

URL = re.compile(r'http[s]?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+')
SPACE = re.compile(r' +')
FIL = re.compile(u'[^0-9a-zA-Z\u4e00-\u9fa5.\uff0c ,\\-\u3002%\u300a*\u300b/\u2022\u3001&\uff06(\u2014)\uff08+\uff09\uff1a\uff1f!\uff01\u201c\u201d\u00b7]+')


def clean_file(path):
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except ValueError:
            data = []
    return [FIL.sub('', SPACE.sub(' ', URL.sub('', obj['content']))).strip() for obj in data]


sp = None


def init(model):
    global sp
    sp = spm.SentencePieceProcessor(model_file=model)


def encode(text):
    return sp.encode(text) + [sp.eos_id()]


def main():
    raw, model, prefix, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    start = time.time()
    files = sorted(glob.glob(os.path.join(raw, '*.json')))
    with multiprocessing.Pool(workers) as pool:
        texts = [t for ts in pool.imap(clean_file, files) for t in ts]
    texts = [t for t in texts if t]
    lengths = []
    with open(prefix + '_text_document.bin', 'wb') as fbin, \
            multiprocessing.Pool(workers, initializer=init, initargs=(model,)) as pool:
        for ids in pool.imap(encode, texts, 25):
            fbin.write(np.array(ids, dtype=np.uint16).tobytes(order='C'))
            lengths.append(len(ids))
    lengths = np.array(lengths, dtype=np.int32)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        np.cumsum(lengths[:-1].astype(np.int64) * 2, out=pointers[1:])
    doc_idx = np.arange(len(lengths) + 1, dtype=np.int64)
    with open(prefix + '_text_document.idx', 'wb') as f:
        f.write(b'MMIDIDX\x00\x00' + struct.pack('<QBQQ', 1, 8, len(lengths), len(doc_idx)))
        f.write(lengths.tobytes() + pointers.tobytes() + doc_idx.tobytes())
    print(f'{len(lengths)} documents, {time.time() - start:.2f} s', file=sys.stderr)


if __name__ == '__main__':
    main()
