package safetensors

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gomegatron/gomegatron/tensor"
)

// Hugging Face file names.
const (
	// SingleFile is the checkpoint file of an unsharded model.
	SingleFile = "model.safetensors"
	// IndexFile maps every tensor of a sharded model to its shard.
	IndexFile = "model.safetensors.index.json"
)

// Set is a checkpoint spread over one or more safetensors files, addressed by tensor
// name as if it were one file.
type Set struct {
	dir    string
	files  []*File
	owner  map[string]*File
	names  []string
	totalS int64 // index metadata total_size; -1 when there is no index
}

// indexJSON is model.safetensors.index.json.
type indexJSON struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// OpenDir opens the safetensors checkpoint in dir: the shards named by
// model.safetensors.index.json when it exists, else model.safetensors, else every
// *.safetensors file in the directory (a tensor name may then occur only once).
func OpenDir(dir string) (*Set, error) {
	idxPath := filepath.Join(dir, IndexFile)
	raw, err := os.ReadFile(idxPath)
	switch {
	case err == nil:
		return openIndexed(dir, idxPath, raw)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var paths []string
	if _, err := os.Stat(filepath.Join(dir, SingleFile)); err == nil {
		paths = []string{filepath.Join(dir, SingleFile)}
	} else {
		paths, err = filepath.Glob(filepath.Join(dir, "*.safetensors"))
		if err != nil {
			return nil, fmt.Errorf("safetensors: %w", err)
		}
		sort.Strings(paths)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("safetensors: %s has no %s, %s or *.safetensors file", dir, IndexFile, SingleFile)
	}
	s := &Set{dir: dir, owner: map[string]*File{}, totalS: -1}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		for _, name := range f.Names() {
			if prev, dup := s.owner[name]; dup {
				s.Close()
				return nil, fmt.Errorf("safetensors: tensor %q is in both %s and %s", name, prev.Path(), p)
			}
			s.owner[name] = f
			s.names = append(s.names, name)
		}
	}
	sort.Strings(s.names)
	return s, nil
}

func openIndexed(dir, idxPath string, raw []byte) (*Set, error) {
	var idx indexJSON
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", idxPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: empty or missing weight_map", idxPath)
	}
	s := &Set{dir: dir, owner: map[string]*File{}, totalS: -1}
	if ts, ok := idx.Metadata["total_size"].(float64); ok {
		s.totalS = int64(ts)
	}
	byShard := map[string]*File{}
	shards := make([]string, 0)
	for _, shard := range idx.WeightMap {
		if _, ok := byShard[shard]; !ok {
			byShard[shard] = nil
			shards = append(shards, shard)
		}
	}
	sort.Strings(shards)
	for _, shard := range shards {
		if shard == "" || filepath.IsAbs(shard) || strings.Contains(shard, "..") || strings.ContainsRune(shard, filepath.Separator) {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s: shard name %q must be a plain file name in the checkpoint directory", idxPath, shard)
		}
		f, err := Open(filepath.Join(dir, shard))
		if err != nil {
			s.Close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("safetensors: %s lists shard %s, which is missing: %w", idxPath, shard, err)
			}
			return nil, err
		}
		byShard[shard] = f
		s.files = append(s.files, f)
	}
	for name, shard := range idx.WeightMap {
		f := byShard[shard]
		if _, ok := f.Info(name); !ok {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s maps tensor %q to %s, which does not contain it", idxPath, name, shard)
		}
		s.owner[name] = f
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s, nil
}

// Names returns every tensor name of the set, sorted.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Tensor returns the named tensor, a zero-copy view valid until Close.
func (s *Set) Tensor(name string) (*tensor.Tensor, error) {
	f, ok := s.owner[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: checkpoint %s has no tensor %q", s.dir, name)
	}
	return f.Tensor(name)
}

// Info returns the header entry of the named tensor.
func (s *Set) Info(name string) (Info, bool) {
	f, ok := s.owner[name]
	if !ok {
		return Info{}, false
	}
	return f.Info(name)
}

// Files returns the open files of the set in shard-name order.
func (s *Set) Files() []*File { return append([]*File(nil), s.files...) }

// TotalSize returns the index's metadata.total_size, or -1 when the set has no index.
func (s *Set) TotalSize() int64 { return s.totalS }

// Close closes every file of the set.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// WriteSharded writes tensors into dir as Hugging Face's save_pretrained does: tensors
// are packed in the given order into shards of at most maxShardBytes (a tensor larger
// than the limit gets a shard of its own); a single shard is written as
// model.safetensors, several as model-0000k-of-0000N.safetensors plus
// model.safetensors.index.json ({"metadata": {"total_size": bytes}, "weight_map":
// {name: shard}}, written as json.dumps(indent=2, sort_keys=True)). Every shard carries
// metadata. Each file is written atomically; the index is written last.
func WriteSharded(dir string, tensors []Named, maxShardBytes int64, metadata map[string]string) error {
	if maxShardBytes <= 0 {
		return fmt.Errorf("safetensors: maxShardBytes must be positive, got %d", maxShardBytes)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var shards [][]Named
	var cur []Named
	var curSize, total int64
	for _, nt := range tensors {
		if nt.T == nil {
			return fmt.Errorf("safetensors: writing %s: tensor %q is nil", dir, nt.Name)
		}
		n := int64(nt.T.Bytes())
		total += n
		if n > maxShardBytes {
			shards = append(shards, []Named{nt})
			continue
		}
		if curSize+n > maxShardBytes && len(cur) > 0 {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, nt)
		curSize += n
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}
	if len(shards) == 1 {
		return Write(filepath.Join(dir, SingleFile), shards[0], metadata)
	}
	weightMap := map[string]string{}
	for k, sh := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(shards))
		if err := Write(filepath.Join(dir, name), sh, metadata); err != nil {
			return err
		}
		for _, nt := range sh {
			weightMap[nt.Name] = name
		}
	}
	idx := encodeIndex(total, weightMap)
	if err := atomicfile.Write(filepath.Join(dir, IndexFile), func(w *bufio.Writer) error {
		_, err := w.Write(idx)
		return err
	}); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", filepath.Join(dir, IndexFile), err)
	}
	return nil
}

// encodeIndex renders the index as Python's json.dumps(index, indent=2,
// sort_keys=True) + "\n", the exact bytes save_pretrained writes.
func encodeIndex(total int64, weightMap map[string]string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"metadata\": {\n    \"total_size\": %d\n  },\n  \"weight_map\": {", total)
	names := make([]string, 0, len(weightMap))
	for n := range weightMap {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		writePyJSONString(&b, n)
		b.WriteString(": ")
		writePyJSONString(&b, weightMap[n])
	}
	if len(names) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Bytes()
}

// writePyJSONString escapes s as Python's json module with ensure_ascii=True: '"',
// '\\' and \b \f \n \r \t by short forms, every other byte outside ' '..'~' as
// \uXXXX (lowercase hex, UTF-16 surrogate pairs above U+FFFF).
func writePyJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		if e, ok := shortEscape(r); ok {
			b.WriteString(e)
			continue
		}
		switch {
		case r >= ' ' && r <= '~':
			b.WriteRune(r)
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
}
