package safetensors

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"sort"

	"github.com/gomegatron/gomegatron/tensor"
)

// Named is a tensor with the name it is stored under.
type Named struct {
	Name string
	T    *tensor.Tensor
}

// layout sorts tensors as the Rust writer does (dtype alignment descending, then
// name byte-wise) and assigns contiguous data offsets. It rejects duplicate names,
// device tensors and tensors whose storage does not match their shape.
func layout(tensors []Named) ([]Info, []*tensor.Tensor, error) {
	idx := make([]int, len(tensors))
	seen := make(map[string]bool, len(tensors))
	for i, nt := range tensors {
		idx[i] = i
		if nt.Name == "__metadata__" {
			return nil, nil, fmt.Errorf("tensor name %q is reserved", nt.Name)
		}
		if seen[nt.Name] {
			return nil, nil, fmt.Errorf("tensor %q given twice", nt.Name)
		}
		seen[nt.Name] = true
		t := nt.T
		if t == nil {
			return nil, nil, fmt.Errorf("tensor %q is nil", nt.Name)
		}
		if t.Device.Type != tensor.CPU {
			return nil, nil, fmt.Errorf("tensor %q is on %v; copy it to the host first", nt.Name, t.Device)
		}
		if _, ok := alignRank[t.DType()]; !ok {
			return nil, nil, fmt.Errorf("tensor %q: dtype %v has no safetensors name", nt.Name, t.DType())
		}
		if len(t.Data) != t.Bytes() {
			return nil, nil, fmt.Errorf("tensor %q: %v has %d bytes of storage, want %d", nt.Name, t, len(t.Data), t.Bytes())
		}
	}
	sort.Slice(idx, func(a, b int) bool {
		ta, tb := tensors[idx[a]], tensors[idx[b]]
		ra, rb := alignRank[ta.T.DType()], alignRank[tb.T.DType()]
		if ra != rb {
			return ra > rb
		}
		return ta.Name < tb.Name
	})
	infos := make([]Info, len(idx))
	ts := make([]*tensor.Tensor, len(idx))
	var off int64
	for k, i := range idx {
		t := tensors[i].T
		n := int64(len(t.Data))
		infos[k] = Info{Name: tensors[i].Name, DType: t.DType(), Shape: t.Shape(), Begin: off, End: off + n}
		ts[k] = t
		off += n
	}
	return infos, ts, nil
}

// Write stores host tensors in a safetensors file at path, byte for byte as the
// reference Rust writer (and so Python's safetensors.torch.save_file) lays it out:
// tensors sorted by dtype alignment descending then name, header JSON compact with
// "__metadata__" first and space-padded to a multiple of 8. metadata nil omits
// "__metadata__"; Hugging Face checkpoints carry {"format": "pt"}. The write is atomic.
func Write(path string, tensors []Named, metadata map[string]string) error {
	infos, ts, err := layout(tensors)
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	hdr := encodeHeader(infos, metadata)
	err = atomicfile.Write(path, func(w *bufio.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		for _, t := range ts {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	return nil
}
