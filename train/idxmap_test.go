package train

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/gpt"
)

// paiIdxmapPy is Pai-Megatron-Patch's legacy idxmap pretraining data, transcribed:
// build_pretrain_dataset_from_idxmap (megatron_patch/data/__init__.py, 2023) over Megatron's
// legacy get_train_valid_test_split_, _build_index_mappings (doc, sample and shuffle index
// with numpy's RandomState), get_datasets_weights_and_num_samples and BlendableDataset
// (build_blending_indices), LLamaIdxMapDataset.__getitem__, and pretrain_megatron_llama.py's
// get_batch (tokens = input_ids[:-1], labels = input_ids[1:], no loss on pad inputs). The
// documents come as JSON lists of token ids, one list per dataset.
const paiIdxmapPy = `
import json, math, sys
import numpy as np
cfg = json.loads(sys.argv[1])
datasets, weights, split, sizes_, L, seed, pad = cfg["docs"], cfg["weights"], cfg["split"], cfg["sizes"], cfg["seq"], cfg["seed"], cfg["pad"]

def get_train_valid_test_split_(splits_string, size):
    splits = [float(s) for s in splits_string.split(',')]
    while len(splits) < 3:
        splits.append(0.)
    splits = splits[:3]
    s = sum(splits)
    splits = [x / s for x in splits]
    idx = [0]
    for i, x in enumerate(splits):
        idx.append(idx[i] + int(round(x * float(size))))
    diff = idx[-1] - size
    for i in range(1, len(idx)):
        idx[i] -= diff
    return idx

def num_epochs(tokens_per_epoch, seq_length, num_samples):
    n, total = 0, 0
    while True:
        n += 1
        total += tokens_per_epoch
        if ((total - 1) // seq_length) >= num_samples:
            return n

def build_doc_idx(documents, n, rng, separate_last_epoch):
    if not separate_last_epoch or n == 1:
        doc_idx = np.mgrid[0:n, 0:len(documents)][1]
        doc_idx[:] = documents
        doc_idx = doc_idx.reshape(-1).astype(np.int32)
        rng.shuffle(doc_idx)
        return doc_idx
    first = build_doc_idx(documents, n - 1, rng, False)
    last = build_doc_idx(documents, 1, rng, False)
    return np.concatenate((first, last))

def build_sample_idx(sizes, doc_idx, seq_length, n, tokens_per_epoch):
    num_samples = (n * tokens_per_epoch - 1) // seq_length
    sample_idx = np.zeros([num_samples + 1, 2], dtype=np.int32)
    si, di, off = 0, 0, 0
    sample_idx[si] = [di, off]
    si += 1
    while si <= num_samples:
        remaining = seq_length + 1
        while remaining != 0:
            doc_length = sizes[doc_idx[di]] - off
            remaining -= doc_length
            if remaining <= 0:
                off += (remaining + doc_length - 1)
                remaining = 0
            else:
                di += 1
                off = 0
        sample_idx[si] = [di, off]
        si += 1
    return sample_idx

def build_shuffle_idx(num_samples, total_size, rng):
    first = np.arange(0, num_samples, 1, dtype=np.uint32)
    rng.shuffle(first)
    if num_samples == total_size:
        return first
    last = np.arange(num_samples, total_size, 1, dtype=np.uint32)
    rng.shuffle(last)
    return np.concatenate((first, last))

class IdxMap:
    def __init__(self, docs, documents, num_samples):
        sizes = np.array([len(d) for d in docs], dtype=np.int32)
        tokens_per_epoch = int(np.sum(sizes[documents]))
        n = num_epochs(tokens_per_epoch, L, num_samples)
        rng = np.random.RandomState(seed=seed)
        sep = False
        if n > 1:
            from_minus_one = ((n - 1) * tokens_per_epoch - 1) // L
            last = num_samples - from_minus_one
            per_epoch = (tokens_per_epoch - 1) // L
            sep = last < int(0.80 * per_epoch)
        self.docs = docs
        self.doc_idx = build_doc_idx(documents, n, rng, sep)
        self.sample_idx = build_sample_idx(sizes, self.doc_idx, L, n, tokens_per_epoch)
        ns = from_minus_one if sep else self.sample_idx.shape[0] - 1
        self.shuffle_idx = build_shuffle_idx(ns, self.sample_idx.shape[0] - 1, rng)
    def __len__(self):
        return self.sample_idx.shape[0] - 1
    def __getitem__(self, idx):
        idx = self.shuffle_idx[idx]
        f, l = self.sample_idx[idx][0], self.sample_idx[idx + 1][0]
        of, ol = self.sample_idx[idx][1], self.sample_idx[idx + 1][1]
        if f == l:
            return self.docs[self.doc_idx[f]][of:ol + 1]
        out = list(self.docs[self.doc_idx[f]][of:])
        for i in range(f + 1, l):
            out += self.docs[self.doc_idx[i]]
        return out + self.docs[self.doc_idx[l]][:ol + 1]

def build(docs, num_samples):
    sp = get_train_valid_test_split_(split, len(docs))
    return [IdxMap(docs, np.arange(sp[i], sp[i + 1], dtype=np.int32), num_samples[i]) if sp[i + 1] > sp[i] else None for i in range(3)]

class Blend:
    def __init__(self, ds, w, size):
        w = np.array(w, dtype=np.float64)
        w /= np.sum(w)
        self.ds, self.size = ds, size
        self.index, self.sample, current = [], [], [0] * len(ds)
        for i in range(size):
            x = max(i, 1.0)
            best, err = 0, w[0] * x - current[0]
            for d in range(1, len(ds)):
                e = w[d] * x - current[d]
                if e > err:
                    best, err = d, e
            self.index.append(best)
            self.sample.append(current[best])
            current[best] += 1
    def __len__(self):
        return self.size
    def __getitem__(self, i):
        return self.ds[self.index[i]][self.sample[i]]

if len(datasets) == 1:
    splits = build(datasets[0], sizes_)
else:
    s = 0.0
    for w in weights:
        s += w
    weights = [w / s for w in weights]
    per = [[int(math.ceil(v * w * 1.005)) for v in sizes_] for w in weights]
    parts = [build(datasets[d], per[d]) for d in range(len(datasets))]
    totals = list(map(sum, zip(*per)))
    splits = [Blend([p[i] for p in parts], weights, totals[i]) if parts[0][i] is not None else None for i in range(3)]
out = []
for ds in splits:
    if ds is None:
        out.append(None)
        continue
    rows = []
    for i in range(len(ds)):
        x = [int(t) for t in ds[i]]
        tokens, labels = x[:-1], x[1:]
        rows.append([tokens, labels, [0 if t == pad else 1 for t in tokens]])
    out.append(rows)
print(json.dumps(out))
`

// TestPaiIdxmapMatchesPai: a "-Pretrain" --dataset over --train-data-path prefixes gives
// exactly Pai's samples, split by split, for one prefix and for a weighted blend.
func TestPaiIdxmapMatchesPai(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import numpy").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 with numpy not available (%v)", err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	c20 := filepath.Join(dir, "c")
	docsA, docsB, docsC := writeCorpus(t, a, 120, 1), writeCorpus(t, b, 70, 2), writeCorpus(t, c20, 20, 3)
	for _, c := range []struct {
		name    string
		paths   []string
		docs    [][][]int32
		weights []float64
		split   string
	}{
		{"one prefix, Megatron's default split", []string{a}, [][][]int32{docsA}, nil, "969, 30, 1"},
		{"one prefix, 90/8/2", []string{a}, [][][]int32{docsA}, nil, "90,8,2"},
		{"blend 0.3/0.7", []string{"0.3", a, "0.7", b}, [][][]int32{docsA, docsB}, []float64{0.3, 0.7}, "90,8,2"},
		// 6/7/7 documents here, 7/6/7 with Megatron-Core's rounding.
		{"20 documents split 1,1,1", []string{c20}, [][][]int32{docsC}, nil, "1,1,1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pad := int64(c.docs[0][0][2]) // a token that occurs, standing in for the pad id
			args := Args{Seed: 1234, Dataset: "LLama-Pretrain-Idxmap", MaxPaddingLength: 16, Split: c.split, TrainDataPath: c.paths, tokPad: pad}
			args.SeqLength = 16
			require.True(t, args.paiIdxmap())
			sizes := [3]int{150, 40, 8}
			got, err := args.buildSplits(sizes, gpt.DatasetConfig{EOD: -1})
			require.NoError(t, err)
			cfg, _ := json.Marshal(map[string]any{"docs": c.docs, "weights": c.weights, "split": c.split, "sizes": sizes, "seq": 16, "seed": 1234, "pad": pad})
			raw, err := exec.Command("/usr/bin/python3", "-c", paiIdxmapPy, string(cfg)).Output()
			require.NoError(t, err)
			var want [3][][3][]int64
			require.NoError(t, json.Unmarshal(raw, &want))
			masked := 0
			for s := range got {
				if want[s] == nil {
					require.Nil(t, got[s], "split %d", s)
					continue
				}
				require.NotNil(t, got[s], "split %d", s)
				require.Equal(t, len(want[s]), got[s].Len(), "split %d", s)
				for i, w := range want[s] {
					g, err := got[s].Get(i)
					require.NoError(t, err)
					require.Equal(t, w[0], g.Tokens, "split %d sample %d tokens", s, i)
					require.Equal(t, w[1], g.Labels, "split %d sample %d labels", s, i)
					for k, m := range w[2] {
						require.Equal(t, float32(m), g.LossMask[k], "split %d sample %d mask %d", s, i, k)
						masked += 1 - int(m)
					}
				}
			}
			require.Positive(t, masked, "pad inputs are masked")
		})
	}
}
