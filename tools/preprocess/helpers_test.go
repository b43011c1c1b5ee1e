package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/indexed"
)

// fakeTok maps each rune r to 3 + r mod (vocab-3): deterministic, empty for "", and able to
// produce ids above 65535 when vocab is large. BOS 1, EOS/EOD 2.
type fakeTok struct{ vocab int }

func (f fakeTok) Encode(text string) []int {
	var ids []int
	for _, r := range text {
		ids = append(ids, 3+int(r)%(f.vocab-3))
	}
	return ids
}
func (f fakeTok) Decode([]int) string { return "" }
func (f fakeTok) VocabSize() int      { return f.vocab }
func (f fakeTok) EOD() int            { return 2 }
func (f fakeTok) BOS() int            { return 1 }
func (f fakeTok) EOS() int            { return 2 }
func (f fakeTok) Pad() int            { return -1 }

// refDocs is the reference encoding, written from the spec (megatron-lm.md §1) and
// independent of encode.go: per document, the list of sequences.
func refDocs(tok fakeTok, values []any, appendEOD bool) [][][]int64 {
	var docs [][][]int64
	for _, v := range values {
		var sentences []string
		switch t := v.(type) {
		case string:
			sentences = []string{t}
		case []string:
			sentences = t
		}
		var seqs [][]int64
		for _, s := range sentences {
			var seq []int64
			for _, id := range tok.Encode(s) {
				seq = append(seq, int64(id))
			}
			if len(seq) > 0 {
				seqs = append(seqs, seq)
			}
		}
		if appendEOD && len(seqs) > 0 {
			seqs[len(seqs)-1] = append(seqs[len(seqs)-1], int64(tok.EOD()))
		}
		docs = append(docs, seqs)
	}
	return docs
}

// corpusText returns n deterministic texts mixing Chinese, English, empty strings and
// lists of sentences (with empty sentences inside).
func corpusText(n int, seed uint64) []any {
	words := []string{"the", "model", "训练", "数据", "Megatron", "并行", " ", "，", "。", "token", "😀", "\n", "é", "http://x.cn/a", "中文", "GPU"}
	rng := rand.New(rand.NewPCG(seed, 7))
	sentence := func() string {
		var b strings.Builder
		for k := rng.IntN(25); k > 0; k-- {
			b.WriteString(words[rng.IntN(len(words))])
		}
		return b.String()
	}
	var out []any
	for i := 0; i < n; i++ {
		switch rng.IntN(10) {
		case 0:
			out = append(out, "")
		case 1:
			ss := make([]string, rng.IntN(4))
			for k := range ss {
				ss[k] = sentence()
			}
			out = append(out, ss)
		default:
			out = append(out, sentence())
		}
	}
	return out
}

// writeJSONL writes one {"id": i, key: value, …} object per line.
func writeJSONL(t *testing.T, path string, keys []string, cols ...[]any) {
	var buf bytes.Buffer
	for i := range cols[0] {
		m := map[string]any{"id": i}
		for k, key := range keys {
			m[key] = cols[k][i]
		}
		b, err := json.Marshal(m)
		require.NoError(t, err)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// readDocs reads a dataset back with data/indexed as documents of sequences.
func readDocs(t *testing.T, prefix string) [][][]int64 {
	ds, err := indexed.Open(prefix)
	require.NoError(t, err)
	defer ds.Close()
	di := ds.DocumentIndices()
	docs := make([][][]int64, ds.NumDocuments())
	for d := range docs {
		for s := di[d]; s < di[d+1]; s++ {
			seq, err := ds.Sequence(int(s))
			require.NoError(t, err)
			docs[d] = append(docs[d], seq)
		}
	}
	return docs
}

// pyReader parses a .idx from the byte layout in spec/megatron-lm.md §1 with struct and
// reads the .bin with numpy, printing the documents as JSON lists of sequences.
const pyReader = `
import json, struct, sys
import numpy as np

def read(prefix):
    idx = open(prefix + '.idx', 'rb').read()
    assert idx[:9] == b'MMIDIDX\x00\x00', idx[:9]
    version, = struct.unpack('<Q', idx[9:17])
    assert version == 1
    code = idx[17]
    dt = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}[code]
    S, D = struct.unpack('<QQ', idx[18:34])
    off = 34
    lengths = np.frombuffer(idx, np.int32, S, off); off += 4 * S
    pointers = np.frombuffer(idx, np.int64, S, off); off += 8 * S
    doc_idx = np.frombuffer(idx, np.int64, D, off); off += 8 * D
    assert off == len(idx), (off, len(idx))
    binb = open(prefix + '.bin', 'rb').read()
    size = np.dtype(dt).itemsize
    if S:
        assert (pointers == np.concatenate([[0], np.cumsum(lengths.astype(np.int64) * size)[:-1]])).all()
        assert int(pointers[-1]) + int(lengths[-1]) * size == len(binb)
    assert doc_idx[0] == 0 and doc_idx[-1] == S
    seqs = [np.frombuffer(binb, dt, int(lengths[i]), int(pointers[i])).tolist() for i in range(S)]
    docs = [seqs[doc_idx[d]:doc_idx[d + 1]] for d in range(D - 1)]
    return {'dtype': np.dtype(dt).name, 'docs': docs}

print(json.dumps([read(p) for p in sys.argv[1:]]))
`

// pyDataset is a dataset as the Python reader sees it.
type pyDataset struct {
	DType string      `json:"dtype"`
	Docs  [][][]int64 `json:"docs"`
}

// pyDocs reads datasets with the Python reader; ok is false when python3/numpy is missing.
func pyDocs(t *testing.T, prefixes ...string) (res []pyDataset, ok bool) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		return nil, false
	}
	cmd := exec.Command(py, append([]string{"-c", pyReader}, prefixes...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && bytes.Contains(stderr.Bytes(), []byte("No module named 'numpy'")) {
		return nil, false
	}
	require.NoError(t, err, stderr.String())
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res, len(prefixes))
	return res, true
}

// normDocs makes empty documents and sequences compare equal whether nil or empty.
func normDocs(docs [][][]int64) [][][]int64 {
	out := make([][][]int64, len(docs))
	for i, d := range docs {
		for _, s := range d {
			if s == nil {
				s = []int64{}
			}
			out[i] = append(out[i], s)
		}
		if out[i] == nil {
			out[i] = [][]int64{}
		}
	}
	return out
}

// fileHash is the sha256 of a file.
func fileHash(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// datasetHash hashes a dataset's .bin and .idx.
func datasetHash(t *testing.T, prefix string) string {
	return fileHash(t, prefix+".bin") + "/" + fileHash(t, prefix+".idx")
}

// run is Run with quiet progress.
func run(t *testing.T, cfg Config, tok fakeTok) *Summary {
	t.Helper()
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.LogInterval == 0 {
		cfg.LogInterval = 1000
	}
	if len(cfg.JSONKeys) == 0 {
		cfg.JSONKeys = []string{"text"}
	}
	cfg.Progress = "none"
	sum, err := Run(context.Background(), cfg, tok, os.Stderr)
	require.NoError(t, err)
	return sum
}
