// Package safetensors reads and writes Hugging Face safetensors files: an 8-byte
// little-endian header length n, n bytes of JSON describing each tensor (dtype, shape,
// data_offsets relative to the end of the header) plus an optional "__metadata__"
// string map, then the raw little-endian C-order tensor bytes.
//
// Reading maps the file into memory and hands out zero-copy tensor views; writing
// reproduces the byte layout of the reference Rust writer, so a file read and written
// back is byte-identical. Sharded checkpoints (model-0000k-of-0000N.safetensors with
// model.safetensors.index.json) are read as one Set and written as Hugging Face's
// save_pretrained does.
package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"unicode/utf8"

	"github.com/gomegatron/gomegatron/tensor"
)

// maxHeaderSize bounds the JSON header as the reference implementation does (100 MB),
// so a corrupt length cannot make us allocate or scan gigabytes.
const maxHeaderSize = 100_000_000

// Info describes one tensor of a file as its header declares it.
type Info struct {
	Name  string
	DType tensor.DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data section.
	Begin, End int64
}

// rawInfo is one header entry as JSON.
type rawInfo struct {
	DType       string    `json:"dtype"`
	Shape       []int64   `json:"shape"`
	DataOffsets [2]uint64 `json:"data_offsets"`
}

// unsupportedDTypes are valid safetensors dtypes the tensor package has no type for.
var unsupportedDTypes = map[string]bool{"U32": true, "U64": true, "F8_E8M0": true, "F4": true,
	"F6_E2M3": true, "F6_E3M2": true, "C64": true}

// parseDType maps a safetensors dtype string to tensor.DType, accepting only the
// safetensors spelling (F32, BF16, F8_E4M3, ...), not torch names.
func parseDType(s string) (tensor.DType, error) {
	d, err := tensor.ParseDType(s)
	if err == nil && d.SafetensorsName() == s {
		return d, nil
	}
	if unsupportedDTypes[s] {
		return tensor.Invalid, fmt.Errorf("safetensors dtype %s is valid but not supported by the tensor package", s)
	}
	return tensor.Invalid, fmt.Errorf("unknown dtype %q", s)
}

// parseHeader decodes and validates the JSON header. dataLen is the size of the data
// section that follows the header. It returns the tensors sorted by data offset and
// the metadata (nil when absent).
func parseHeader(hdr []byte, dataLen int64) ([]Info, map[string]string, error) {
	if !utf8.Valid(hdr) {
		return nil, nil, fmt.Errorf("header is not valid UTF-8")
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("header is not a JSON object: %w", err)
	}
	if raw == nil {
		return nil, nil, fmt.Errorf("header is JSON null, want an object")
	}
	// Only space padding may follow the object.
	rest := hdr[dec.InputOffset():]
	if len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
		return nil, nil, fmt.Errorf("header has trailing bytes after the JSON object")
	}
	var meta map[string]string
	infos := make([]Info, 0, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("__metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var ri rawInfo
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&ri); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: bad header entry: %w", name, err)
		}
		in, err := checkInfo(name, ri, dataLen)
		if err != nil {
			return nil, nil, err
		}
		infos = append(infos, in)
	}
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].Begin != infos[j].Begin {
			return infos[i].Begin < infos[j].Begin
		}
		return infos[i].End < infos[j].End
	})
	for i := 1; i < len(infos); i++ {
		a, b := infos[i-1], infos[i]
		if b.Begin < a.End {
			return nil, nil, fmt.Errorf("tensors %q [%d,%d) and %q [%d,%d) overlap",
				a.Name, a.Begin, a.End, b.Name, b.Begin, b.End)
		}
	}
	return infos, meta, nil
}

// checkInfo validates one entry: known dtype, non-negative shape without overflow,
// offsets inside the data section and a byte size equal to numel·sizeof(dtype).
func checkInfo(name string, ri rawInfo, dataLen int64) (Info, error) {
	if ri.DType == "" {
		return Info{}, fmt.Errorf("tensor %q: missing dtype", name)
	}
	dt, err := parseDType(ri.DType)
	if err != nil {
		return Info{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	if ri.Shape == nil {
		return Info{}, fmt.Errorf("tensor %q: missing shape", name)
	}
	shape := make([]int, len(ri.Shape))
	n := uint64(1)
	for i, s := range ri.Shape {
		if s < 0 {
			return Info{}, fmt.Errorf("tensor %q: negative dimension %d in shape %v", name, s, ri.Shape)
		}
		if s > 0 && n > math.MaxInt64/uint64(s) {
			return Info{}, fmt.Errorf("tensor %q: shape %v overflows", name, ri.Shape)
		}
		n *= uint64(s)
		shape[i] = int(s)
	}
	if n > math.MaxInt64/uint64(dt.Size()) {
		return Info{}, fmt.Errorf("tensor %q: shape %v overflows", name, ri.Shape)
	}
	b, e := ri.DataOffsets[0], ri.DataOffsets[1]
	if e < b || e > uint64(dataLen) {
		return Info{}, fmt.Errorf("tensor %q: data_offsets [%d,%d] out of range of the %d-byte data section",
			name, b, e, dataLen)
	}
	if want := n * uint64(dt.Size()); e-b != want {
		return Info{}, fmt.Errorf("tensor %q: data_offsets [%d,%d] hold %d bytes, %s%v needs %d",
			name, b, e, e-b, ri.DType, ri.Shape, want)
	}
	return Info{Name: name, DType: dt, Shape: shape, Begin: int64(b), End: int64(e)}, nil
}

// alignRank orders dtypes as the Rust safetensors Dtype enum does (increasing
// alignment, declaration order BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16,
// I32, U32, F32, F64, I64, U64). The writer sorts by this rank descending, then by
// name, so every tensor's data is aligned to its element size.
var alignRank = map[tensor.DType]int{
	tensor.Bool: 0, tensor.U8: 1, tensor.I8: 2, tensor.F8E5M2: 3, tensor.F8E4M3: 4,
	tensor.I16: 5, tensor.U16: 6, tensor.F16: 7, tensor.BF16: 8, tensor.I32: 9,
	tensor.F32: 11, tensor.F64: 12, tensor.I64: 13,
}

// encodeHeader writes the header JSON exactly as serde_json does for the Rust
// writer: compact, "__metadata__" first (keys sorted), then the tensors in data order
// with fields dtype, shape, data_offsets; then space padding to a multiple of 8.
func encodeHeader(infos []Info, meta map[string]string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if meta != nil {
		b.WriteString(`"__metadata__":{`)
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, meta[k])
		}
		b.WriteByte('}')
		first = false
	}
	for _, in := range infos {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, in.Name)
		fmt.Fprintf(&b, `:{"dtype":"%s","shape":[`, in.DType.SafetensorsName())
		for i, s := range in.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprint(&b, s)
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, in.Begin, in.End)
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes()
}

// writeJSONString escapes s as serde_json does: only '"', '\\' and control
// characters are escaped (short forms \b \f \n \r \t, else \u00xx in lowercase hex);
// non-ASCII text is written as UTF-8.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if e, ok := shortEscape(rune(c)); ok {
			b.WriteString(e)
		} else if c < 0x20 {
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// shortEscape is JSON's two-character escape of c, where it has one (serde_json and
// Python's json module use the same).
func shortEscape(c rune) (string, bool) {
	switch c {
	case '"':
		return `\"`, true
	case '\\':
		return `\\`, true
	case '\b':
		return `\b`, true
	case '\f':
		return `\f`, true
	case '\n':
		return `\n`, true
	case '\r':
		return `\r`, true
	case '\t':
		return `\t`, true
	}
	return "", false
}
