package gpt

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gomegatron/gomegatron/data/npy"
)

// CacheDescription is Megatron's unique_identifiers of a GPTDataset
// (megatron_dataset.py): its JSON text (json.dumps(..., indent=4)) is description.txt, and
// its md5 prefixes the cache file names. Reproducing it exactly means a Megatron cache directory
// and ours are interchangeable.
type CacheDescription struct {
	Class          string // "GPTDataset"
	DatasetPath    string // the data prefix exactly as given (--data-path)
	NumSamples     int    // negative = None
	IndexSplit     Split
	RandomSeed     int64
	SequenceLength int
	Split          string // the --split string as given
	SplitMatrix    [3]*Bookend
	// Tokenizer is the tokenizer's unique_identifiers (an ordered dict whose first key is
	// "class"); nil prints as null.
	Tokenizer OrderedMap
}

// Map returns the description as the ordered dict Megatron builds.
func (c CacheDescription) Map() OrderedMap {
	var ns any
	if c.NumSamples >= 0 {
		ns = c.NumSamples
	}
	matrix := make([]any, 3)
	for i, b := range c.SplitMatrix {
		if b == nil {
			continue
		}
		var lo any = b.Lo
		if b.LoIsInt && b.Lo == 0 {
			lo = 0
		}
		matrix[i] = []any{lo, b.Hi}
	}
	var tok any
	if c.Tokenizer != nil {
		tok = c.Tokenizer
	}
	return OrderedMap{
		{"class", c.Class}, {"dataset_path", c.DatasetPath}, {"num_samples", ns},
		{"index_split", c.IndexSplit.String()}, {"random_seed", c.RandomSeed},
		{"sequence_length", c.SequenceLength}, {"split", c.Split}, {"split_matrix", matrix},
		{"tokenizer", tok},
	}
}

// Text is the exact content of Megatron's description.txt (no trailing newline).
func (c CacheDescription) Text() string {
	s, err := PyJSONDumps(c.Map())
	if err != nil {
		// Map only holds renderable values; a failure is a programming error.
		panic(err)
	}
	return s
}

// Hash is md5(Text()) in hex, Megatron's unique_description_hash.
func (c CacheDescription) Hash() string {
	h := md5.Sum([]byte(c.Text()))
	return hex.EncodeToString(h[:])
}

// Path is the cache file {dir}/{hash}-{class}-{split}-{suffix}, suffix being
// "description.txt", "document_index.npy", "sample_index.npy" or "shuffle_index.npy".
func (c CacheDescription) Path(dir, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%s-%s-%s", c.Hash(), c.Class, c.IndexSplit, suffix))
}

// DefaultCacheDir is Megatron's default path_to_cache: {prefix}/cache/{class}_indices.
func DefaultCacheDir(prefix, class string) string {
	return filepath.Join(prefix, "cache", class+"_indices")
}

// IndexKinds are the three index files, in Megatron's order.
var IndexKinds = [3]string{"document_index", "sample_index", "shuffle_index"}

// Marshal returns the three .npy images Megatron would cache for ix, keyed by kind.
func (ix *Indices) Marshal() (map[string][]byte, error) {
	out := map[string][]byte{}
	var err error
	if out["document_index"], err = npy.Marshal(ix.DocumentIndex); err != nil {
		return nil, err
	}
	rows := len(ix.SampleIndex) / 2
	if ix.SampleIndexInt64 {
		out["sample_index"], err = npy.Marshal(ix.SampleIndex, rows, 2)
	} else {
		s32 := make([]int32, len(ix.SampleIndex))
		for i, v := range ix.SampleIndex {
			s32[i] = int32(v)
		}
		out["sample_index"], err = npy.Marshal(s32, rows, 2)
	}
	if err != nil {
		return nil, err
	}
	if ix.ShuffleIndexInt64 {
		out["shuffle_index"], err = npy.Marshal(ix.ShuffleIndex)
	} else {
		u32 := make([]uint32, len(ix.ShuffleIndex))
		for i, v := range ix.ShuffleIndex {
			u32[i] = uint32(v)
		}
		out["shuffle_index"], err = npy.Marshal(u32)
	}
	return out, err
}

// WriteIndices writes ix as {dir}/document_index.npy, sample_index.npy, shuffle_index.npy
// (each atomically), creating dir.
func WriteIndices(dir string, ix *Indices) error {
	return writeIndexFiles(ix, func(kind string) string { return filepath.Join(dir, kind+".npy") }, dir)
}

func writeIndexFiles(ix *Indices, path func(kind string) string, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gpt: create cache dir: %w", err)
	}
	files, err := ix.Marshal()
	if err != nil {
		return err
	}
	for _, kind := range IndexKinds {
		if err := writeAtomic(path(kind), files[kind]); err != nil {
			return err
		}
	}
	return nil
}

// WriteCache writes Megatron's four cache files into dir: the three indices, then
// description.txt last, so a reader that sees the description sees complete indices.
func WriteCache(dir string, c CacheDescription, ix *Indices) error {
	if err := writeIndexFiles(ix, func(kind string) string { return c.Path(dir, kind+".npy") }, dir); err != nil {
		return err
	}
	return writeAtomic(c.Path(dir, "description.txt"), []byte(c.Text()))
}

// LoadCache loads the indices Megatron (or WriteCache) cached in dir for c. ok is false, with
// no error, when any of the four files is missing (Megatron's cache miss).
func LoadCache(dir string, c CacheDescription) (ix *Indices, ok bool, err error) {
	for _, suffix := range []string{"description.txt", "document_index.npy", "sample_index.npy", "shuffle_index.npy"} {
		if _, err := os.Stat(c.Path(dir, suffix)); errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		} else if err != nil {
			return nil, false, fmt.Errorf("gpt: cache: %w", err)
		}
	}
	ix, err = LoadIndices(c.Path(dir, "document_index.npy"), c.Path(dir, "sample_index.npy"), c.Path(dir, "shuffle_index.npy"))
	return ix, err == nil, err
}

// LoadIndices reads the three index files: document_index int32 [m], sample_index int32 or
// int64 [n+1, 2], shuffle_index uint32 or int64 [n].
func LoadIndices(documentIndex, sampleIndex, shuffleIndex string) (*Indices, error) {
	ix := &Indices{}
	var err error
	var shape []int
	if ix.DocumentIndex, shape, err = npy.Read[int32](documentIndex); err != nil {
		return nil, fmt.Errorf("gpt: document_index: %w", err)
	}
	if len(shape) != 1 {
		return nil, fmt.Errorf("gpt: document_index: %s has shape %v, want 1-D", documentIndex, shape)
	}
	a, err := npy.ReadFile(sampleIndex)
	if err != nil {
		return nil, fmt.Errorf("gpt: sample_index: %w", err)
	}
	if len(a.Shape) != 2 || a.Shape[1] != 2 || a.Shape[0] < 1 || a.FortranOrder {
		return nil, fmt.Errorf("gpt: sample_index: %s has shape %v, want [n+1, 2] in C order", sampleIndex, a.Shape)
	}
	switch a.Descr {
	case "<i4":
		v, err := npy.As[int32](a)
		if err != nil {
			return nil, err
		}
		ix.SampleIndex = make([]int64, len(v))
		for i, x := range v {
			ix.SampleIndex[i] = int64(x)
		}
	case "<i8":
		ix.SampleIndexInt64 = true
		if ix.SampleIndex, err = npy.As[int64](a); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("gpt: sample_index: %s has dtype %s, want <i4 or <i8", sampleIndex, a.Descr)
	}
	a, err = npy.ReadFile(shuffleIndex)
	if err != nil {
		return nil, fmt.Errorf("gpt: shuffle_index: %w", err)
	}
	if len(a.Shape) != 1 {
		return nil, fmt.Errorf("gpt: shuffle_index: %s has shape %v, want 1-D", shuffleIndex, a.Shape)
	}
	switch a.Descr {
	case "<u4":
		v, err := npy.As[uint32](a)
		if err != nil {
			return nil, err
		}
		ix.ShuffleIndex = make([]int64, len(v))
		for i, x := range v {
			ix.ShuffleIndex[i] = int64(x)
		}
	case "<i8":
		ix.ShuffleIndexInt64 = true
		if ix.ShuffleIndex, err = npy.As[int64](a); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("gpt: shuffle_index: %s has dtype %s, want <u4 or <i8", shuffleIndex, a.Descr)
	}
	if err := ix.check(); err != nil {
		return nil, fmt.Errorf("gpt: indices %s, %s, %s: %w", documentIndex, sampleIndex, shuffleIndex, err)
	}
	return ix, nil
}

// check validates loaded indices so that sample retrieval cannot index out of range.
func (ix *Indices) check() error {
	n := ix.Len()
	if len(ix.ShuffleIndex) != n {
		return fmt.Errorf("shuffle_index has %d entries, sample_index has %d samples", len(ix.ShuffleIndex), n)
	}
	for i, k := range ix.ShuffleIndex {
		if k < 0 || k >= int64(n) {
			return fmt.Errorf("shuffle_index[%d] = %d is outside [0, %d)", i, k, n)
		}
	}
	for r := 0; r <= n; r++ {
		if p := ix.SampleIndex[2*r]; p < 0 || p >= int64(len(ix.DocumentIndex)) {
			return fmt.Errorf("sample_index[%d, 0] = %d is outside the document_index (%d entries)", r, p, len(ix.DocumentIndex))
		}
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("gpt: create temp for %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("gpt: write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
