#!/usr/bin/env python3
"""Writes a deterministic mixed Chinese/English JSON-lines corpus for the preprocess benchmark.

usage: preprocess_corpus.py CORPUS_JSONL OUT_JSONL SIZE_MB [WUDAO_DIR]

Documents are 5-60 strings drawn from the tokenizer test corpus (data/wudao/testdata/corpus.jsonl,
a copy of shared/fixtures/tokenizers/corpus.jsonl), Chinese and English prose weighted up, with
numbers, word swaps and case changes as variations, so the text is not one repeated block.
Each line is {"id": i, "text": ...}. With WUDAO_DIR the same documents are also written as a raw
WuDaoCorpora 2.0 folder: 10 files part-N.json, each a JSON array of
{"id", "uniqueKey", "titleUkey", "dataType", "title", "content"}. Same arguments, same bytes.
"""
import os
import json
import random
import sys

src, out, size_mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
weights = {'en_prose': 6, 'zh_modern': 6, 'zh_classical': 3, 'mixed': 3, 'code_go': 1, 'code_py': 1, 'long': 2}
pool = []
for line in open(src, encoding='utf-8'):
    rec = json.loads(line)
    pool += [rec['text']] * weights.get(rec['category'], 1)
rng = random.Random(20261126)
limit = int(size_mb * 1e6)
written = 0
with open(out, 'w', encoding='utf-8') as f:
    i = 0
    while written < limit:
        parts = []
        for _ in range(rng.randint(5, 60)):
            s = rng.choice(pool)
            r = rng.random()
            if r < 0.2:
                s = s.upper() if rng.random() < 0.5 else s.lower()
            elif r < 0.4:
                w = s.split(' ')
                rng.shuffle(w)
                s = ' '.join(w)
            elif r < 0.5:
                s = '%s %d' % (s, rng.randint(0, 10**6))
            parts.append(s)
        line = json.dumps({'id': i, 'text': '\n'.join(parts)}, ensure_ascii=False) + '\n'
        f.write(line)
        written += len(line.encode('utf-8'))
        i += 1
print(f'{i} documents, {written / 1e6:.1f} MB', file=sys.stderr)

if len(sys.argv) > 4:
    wdir = sys.argv[4]
    os.makedirs(wdir, exist_ok=True)
    docs = [json.loads(l)['text'] for l in open(out, encoding='utf-8')]
    per = (len(docs) + 9) // 10
    for k in range(10):
        recs = [{'id': j, 'uniqueKey': '%032x' % rng.getrandbits(128), 'titleUkey': '%032x' % rng.getrandbits(128),
                 'dataType': '博客', 'title': docs[j][:20], 'content': docs[j]} for j in range(k * per, min(len(docs), (k + 1) * per))]
        with open(os.path.join(wdir, 'part-%010d.json' % (2021009337 + k)), 'w', encoding='utf-8') as f:
            json.dump(recs, f, ensure_ascii=False, indent=1)
