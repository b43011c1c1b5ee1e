package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gomegatron/gomegatron/data/indexed"
)

// datasetPrefix is Megatron's output name: {output_prefix}_{key}_{level} with level
// "document" (sentence-level output needs --split-sentences, which is not supported).
func datasetPrefix(outputPrefix, key string) string {
	return fmt.Sprintf("%s_%s_document", outputPrefix, key)
}

// output writes the .bin/.idx of every key. With --partitions P > 1 and no
// --keep-sequential-samples, Megatron deals input lines round-robin to P partition files,
// builds {prefix}_{p}_{key}_document from each, and merges them in partition order with
// add_index, so the final document order is records 0, P, 2P, …, then 1, P+1, …. output
// does the same with the records that encode (skipped ones take no turn), writing the
// partition datasets under Megatron's names, merging them with indexed.Builder.AddIndex and
// then removing them. With --keep-sequential-samples Megatron's partitions are contiguous
// slices of the input, so the merged order is the input order and output writes the final
// files directly.
type output struct {
	prefix   string
	keys     []string
	dtype    indexed.DTypeCode
	builders [][]*indexed.Builder // [partition][key]
	n        int64                // documents written
	jsonl    *jsonlFile
}

func newOutput(prefix string, keys []string, dtype indexed.DTypeCode, parts int, jsonlPath string) (*output, error) {
	o := &output{prefix: prefix, keys: keys, dtype: dtype}
	if prefix != "" {
		if dir := filepath.Dir(prefix); dir != "" {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("--output-prefix %s: folder %s does not exist", prefix, dir)
			}
		}
		for p := 0; p < parts; p++ {
			var row []*indexed.Builder
			for _, key := range keys {
				b, err := indexed.NewBuilder(indexed.BinPath(o.partPrefix(p, parts, key)), dtype)
				if err != nil {
					o.abort()
					return nil, err
				}
				row = append(row, b)
			}
			o.builders = append(o.builders, row)
		}
	}
	if jsonlPath != "" {
		j, err := createJSONL(jsonlPath)
		if err != nil {
			o.abort()
			return nil, err
		}
		o.jsonl = j
	}
	return o, nil
}

// partPrefix is the dataset a partition writes: the final one when there is one partition,
// else Megatron's {output_prefix}_{p}_{key}_document.
func (o *output) partPrefix(p, parts int, key string) string {
	if parts == 1 {
		return datasetPrefix(o.prefix, key)
	}
	return datasetPrefix(fmt.Sprintf("%s_%d", o.prefix, p), key)
}

// addLine writes a cleaned jsonl line of a record that has no document.
func (o *output) addLine(line []byte) error {
	if o.jsonl == nil {
		return nil
	}
	return o.jsonl.write(line)
}

// add writes one document to its partition (and its cleaned line to the jsonl).
func (o *output) add(d *doc) error {
	if o.jsonl != nil {
		if err := o.jsonl.write(d.line); err != nil {
			return err
		}
	}
	if len(o.builders) > 0 {
		row := o.builders[o.n%int64(len(o.builders))]
		for k, b := range row {
			if err := b.AddDocument(d.keys[k].tokens, d.keys[k].lens); err != nil {
				return err
			}
		}
	}
	o.n++
	return nil
}

// finish finalizes every dataset, merges partitions, and returns the final prefixes.
func (o *output) finish() ([]string, error) {
	parts := len(o.builders)
	var done []string
	if o.jsonl != nil {
		if err := o.jsonl.commit(); err != nil {
			o.abort()
			return nil, err
		}
		o.jsonl = nil
	}
	for p, row := range o.builders {
		for k, b := range row {
			pp := o.partPrefix(p, parts, o.keys[k])
			if err := b.Finalize(indexed.IdxPath(pp)); err != nil {
				o.abort()
				return nil, err
			}
		}
	}
	if parts == 0 { // only the WuDao jsonl
		return nil, nil
	}
	if parts == 1 {
		for _, key := range o.keys {
			done = append(done, datasetPrefix(o.prefix, key))
		}
		return done, nil
	}
	for _, key := range o.keys {
		final := datasetPrefix(o.prefix, key)
		b, err := indexed.NewBuilder(indexed.BinPath(final), o.dtype)
		if err != nil {
			return nil, err
		}
		for p := 0; p < parts; p++ {
			if err := b.AddIndex(o.partPrefix(p, parts, key)); err != nil {
				b.Abort()
				return nil, err
			}
		}
		if err := b.Finalize(indexed.IdxPath(final)); err != nil {
			return nil, err
		}
		for p := 0; p < parts; p++ {
			pp := o.partPrefix(p, parts, key)
			os.Remove(indexed.BinPath(pp))
			os.Remove(indexed.IdxPath(pp))
		}
		done = append(done, final)
	}
	return done, nil
}

// abort discards everything not yet finalized.
func (o *output) abort() {
	for _, row := range o.builders {
		for _, b := range row {
			if b != nil {
				b.Abort()
			}
		}
	}
	if o.jsonl != nil {
		o.jsonl.abort()
	}
}

// jsonlFile is written through a temporary file that is fsynced and renamed into place.
type jsonlFile struct {
	path string
	f    *os.File
	w    *bufio.Writer
}

func createJSONL(path string) (*jsonlFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("--wudao-jsonl %s: %w", path, err)
	}
	return &jsonlFile{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (j *jsonlFile) write(line []byte) error {
	if _, err := j.w.Write(line); err != nil {
		return fmt.Errorf("write %s: %w", j.path, err)
	}
	return nil
}

func (j *jsonlFile) commit() error {
	tmp := j.f.Name()
	err := j.w.Flush()
	if err == nil {
		err = j.f.Sync()
	}
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", j.path, err)
	}
	return nil
}

func (j *jsonlFile) abort() {
	j.f.Close()
	os.Remove(j.f.Name())
}
