package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/tensor"
)

// writeSafetensorsStreaming writes the planned tensors as save_pretrained does — packed
// in order into shards of at most maxShard bytes (a larger tensor alone), one shard as
// model.safetensors, several as model-0000k-of-0000N.safetensors plus
// model.safetensors.index.json written last — but produces each tensor only when its
// bytes are due: the header is computed from the planned shapes, so a shard never needs
// to be in memory. Each tensor is dt but where Hugging Face keeps it float32
// (hf.StoredDType). Each file is written atomically.
func writeSafetensorsStreaming(dir string, outs []hfOut, dt tensor.DType, maxShard int64, produce func(hfOut) (*tensor.Tensor, error)) error {
	var shards [][]hfOut
	var cur []hfOut
	var curSize, total int64
	for _, o := range outs {
		n := int64(tensor.ShapeNumel(o.shape) * hf.StoredDType(o.name, dt).Size())
		total += n
		if n > maxShard {
			shards = append(shards, []hfOut{o})
			continue
		}
		if curSize+n > maxShard && len(cur) > 0 {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, o)
		curSize += n
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}
	weightMap := map[string]string{}
	for k, sh := range shards {
		name := safetensors.SingleFile
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(shards))
		}
		if err := writeShard(filepath.Join(dir, name), sh, dt, produce); err != nil {
			return err
		}
		for _, o := range sh {
			weightMap[o.name] = name
		}
	}
	if len(shards) == 1 {
		return nil
	}
	idx := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, weightMap}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, safetensors.IndexFile), append(b, '\n'))
}

// writeShard streams one safetensors file: 8-byte header length, the JSON header
// (__metadata__ {"format": "pt"}, then each tensor's dtype, shape and data_offsets),
// space-padded to a multiple of 8, then the tensors' bytes in order.
func writeShard(path string, outs []hfOut, dt tensor.DType, produce func(hfOut) (*tensor.Tensor, error)) error {
	var h bytes.Buffer
	h.WriteString(`{"__metadata__":{"format":"pt"}`)
	var off int64
	for _, o := range outs {
		odt := hf.StoredDType(o.name, dt)
		n := int64(tensor.ShapeNumel(o.shape) * odt.Size())
		name, _ := json.Marshal(o.name)
		shape, _ := json.Marshal(o.shape)
		fmt.Fprintf(&h, `,%s:{"dtype":%s,"shape":%s,"data_offsets":[%s,%s]}`, name, strconv.Quote(odt.SafetensorsName()), shape,
			strconv.FormatInt(off, 10), strconv.FormatInt(off+n, 10))
		off += n
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	return writeAtomic(path, func(w *bufio.Writer) error {
		var l [8]byte
		binary.LittleEndian.PutUint64(l[:], uint64(h.Len()))
		w.Write(l[:])
		w.Write(h.Bytes())
		for _, o := range outs {
			t, err := produce(o)
			if err != nil {
				return err
			}
			if odt := hf.StoredDType(o.name, dt); t.DType() != odt || !tensor.SameShape(t.Shape(), o.shape) {
				return fmt.Errorf("internal: %s is %v, planned %v%v", o.name, t, odt, o.shape)
			}
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeFileAtomic writes data to path through a temp file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, func(w *bufio.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic creates path's folder and fills path atomically.
func writeAtomic(path string, fill func(*bufio.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(path, fill); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
