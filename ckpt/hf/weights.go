package hf

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
)

// weights index a folder's tensors by Hugging Face name without reading them: its
// safetensors set (each tensor later read with pread, so nothing stays mapped), or its
// pytorch_model*.bin files (torch.save'd state dicts, as older checkpoints ship; mapped,
// and each tensor's pages released once read). Reading a model one tensor at a time thus
// keeps the resident set near one tensor, for a 70B conversion as for a TP rank's load.
type weights struct {
	at    map[string]*stored
	names []string // in file order
	bins  []*megatron.MappedFile
}

// stored locates one tensor: in a safetensors file at an absolute offset, or a view of a
// mapped .bin.
type stored struct {
	path  string
	off   int64
	info  safetensors.Info
	bin   *megatron.MappedFile
	binT  *tensor.Tensor
	shape []int
	dtype tensor.DType
}

// openWeights indexes dir's *.safetensors (sharded or not), else its pytorch_model*.bin.
func openWeights(dir string) (*weights, error) {
	w := &weights{at: map[string]*stored{}}
	var err error
	if st, _ := filepath.Glob(filepath.Join(dir, "*.safetensors")); len(st) > 0 {
		err = w.indexSafetensors(dir)
	} else if bins, _ := filepath.Glob(filepath.Join(dir, "pytorch_model*.bin")); len(bins) > 0 {
		sort.Strings(bins)
		err = w.indexBins(bins)
	} else {
		err = fmt.Errorf("%s has neither *.safetensors nor pytorch_model*.bin files", dir)
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func (w *weights) add(name string, s *stored) error {
	if prev, dup := w.at[name]; dup {
		return fmt.Errorf("%s: tensor %s is also in %s", s.path, name, prev.path)
	}
	w.at[name] = s
	w.names = append(w.names, name)
	return nil
}

// indexSafetensors records where every tensor of the folder's safetensors set lives (the
// set checks headers, the index and duplicates).
func (w *weights) indexSafetensors(dir string) error {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return err
	}
	defer set.Close()
	for _, f := range set.Files() {
		base, err := dataStart(f.Path())
		if err != nil {
			return err
		}
		for _, in := range f.Infos() {
			if err := w.add(in.Name, &stored{path: f.Path(), off: base + in.Begin, info: in, shape: in.Shape, dtype: in.DType}); err != nil {
				return err
			}
		}
	}
	return nil
}

// dataStart is the byte offset of a safetensors file's data section: 8 + header length.
func dataStart(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0, fmt.Errorf("%s: reading the header length: %w", path, err)
	}
	return 8 + int64(binary.LittleEndian.Uint64(b[:])), nil
}

// indexBins maps every pytorch_model*.bin (a pickled OrderedDict of tensors).
func (w *weights) indexBins(paths []string) error {
	for _, p := range paths {
		mf, err := megatron.MapTorchFile(p)
		if err != nil {
			return err
		}
		w.bins = append(w.bins, mf)
		d, ok := mf.Value.(*torchpickle.Dict)
		if !ok {
			return fmt.Errorf("%s holds a %T, not a state dict", p, mf.Value)
		}
		for _, nt := range torchpickle.Flatten(d) {
			if err := w.add(nt.Name, &stored{path: p, bin: mf, binT: nt.T, shape: nt.T.Shape(), dtype: nt.T.DType()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// read returns the tensor's values: a fresh buffer (safetensors), or a view of the mapped
// .bin; release drops its pages once the caller is done with it.
func (s *stored) read() (t *tensor.Tensor, release func(), err error) {
	if s.binT != nil {
		return s.binT, func() { s.bin.Release(s.binT) }, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b := make([]byte, s.info.End-s.info.Begin)
	if _, err := f.ReadAt(b, s.off); err != nil {
		return nil, nil, fmt.Errorf("%s: reading tensor %s: %w", s.path, s.info.Name, err)
	}
	if t, err = tensor.FromBytes(s.info.DType, s.info.Shape, b); err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %s: %w", s.path, s.info.Name, err)
	}
	return t, func() {}, nil
}

// Close unmaps the .bin files.
func (w *weights) Close() error {
	var first error
	for _, b := range w.bins {
		if err := b.Close(); err != nil && first == nil {
			first = err
		}
	}
	w.bins = nil
	return first
}
