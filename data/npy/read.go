package npy

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadFile reads and decodes a .npy file.
func ReadFile(path string) (*Array, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	return Parse(b, path)
}

// Parse decodes a .npy image (versions 1.0, 2.0 and 3.0); name is used in errors. Data aliases b.
func Parse(b []byte, name string) (*Array, error) {
	if len(b) < 10 || string(b[:6]) != magic {
		return nil, fmt.Errorf("npy: %s: not a .npy file (magic %q)", name, b[:min(6, len(b))])
	}
	var hlen, start int
	switch b[6] {
	case 1:
		hlen, start = int(binary.LittleEndian.Uint16(b[8:])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, fmt.Errorf("npy: %s: truncated header", name)
		}
		hlen, start = int(binary.LittleEndian.Uint32(b[8:])), 12
	default:
		return nil, fmt.Errorf("npy: %s: unsupported format version %d.%d", name, b[6], b[7])
	}
	if hlen > len(b)-start {
		return nil, fmt.Errorf("npy: %s: header length %d exceeds the file (%d bytes)", name, hlen, len(b))
	}
	a, err := parseHeader(string(b[start : start+hlen]))
	if err != nil {
		return nil, fmt.Errorf("npy: %s: %w", name, err)
	}
	size, err := descrSize(a.Descr)
	if err != nil {
		return nil, fmt.Errorf("npy: %s: %w", name, err)
	}
	data := b[start+hlen:]
	n, limit := 1, len(data)/size
	for _, d := range a.Shape {
		if d == 0 {
			n = 0
			break
		}
	}
	for _, d := range a.Shape {
		if n == 0 {
			break
		}
		if n > limit/d {
			n = limit + 1 // more elements than the data can hold
			break
		}
		n *= d
	}
	if n > limit || n*size != len(data) {
		return nil, fmt.Errorf("npy: %s: shape %v of %s needs %s data bytes, file has %d", name, a.Shape, a.Descr, need(a.Shape, size), len(data))
	}
	a.Data = data
	return a, nil
}

// descrSize returns the item size of a little-endian or byte-order-free numeric descriptor.
func descrSize(d string) (int, error) {
	if len(d) < 3 || (d[0] != '<' && d[0] != '|') || !strings.ContainsRune("iufb", rune(d[1])) {
		return 0, fmt.Errorf("descr %q is not a little-endian numeric dtype", d)
	}
	n, err := strconv.Atoi(d[2:])
	if err != nil || n <= 0 || n > 16 {
		return 0, fmt.Errorf("descr %q has an invalid item size", d)
	}
	return n, nil
}

// parseHeader reads numpy's header dict literal: 'descr', 'fortran_order' and 'shape'.
func parseHeader(h string) (*Array, error) {
	h = strings.TrimSpace(h)
	if !strings.HasPrefix(h, "{") || !strings.HasSuffix(h, "}") {
		return nil, fmt.Errorf("header %q is not a dict literal", h)
	}
	a := &Array{}
	var seen [3]bool
	body := h[1 : len(h)-1]
	for body = strings.TrimSpace(body); body != ""; body = strings.TrimSpace(body) {
		if body[0] != '\'' && body[0] != '"' {
			return nil, fmt.Errorf("header %q: expected a quoted key at %q", h, body)
		}
		end := strings.IndexByte(body[1:], body[0])
		if end < 0 {
			return nil, fmt.Errorf("header %q: unterminated key", h)
		}
		key := body[1 : 1+end]
		body = strings.TrimSpace(body[end+2:])
		if !strings.HasPrefix(body, ":") {
			return nil, fmt.Errorf("header %q: expected ':' after key %q", h, key)
		}
		body = strings.TrimSpace(body[1:])
		var val string
		switch {
		case strings.HasPrefix(body, "("):
			e := strings.IndexByte(body, ')')
			if e < 0 {
				return nil, fmt.Errorf("header %q: unterminated tuple", h)
			}
			val, body = body[:e+1], body[e+1:]
		case body != "" && (body[0] == '\'' || body[0] == '"'):
			e := strings.IndexByte(body[1:], body[0])
			if e < 0 {
				return nil, fmt.Errorf("header %q: unterminated string", h)
			}
			val, body = body[:e+2], body[e+2:]
		default:
			e := strings.IndexByte(body, ',')
			if e < 0 {
				e = len(body)
			}
			val, body = strings.TrimSpace(body[:e]), body[e:]
		}
		body = strings.TrimSpace(body)
		body = strings.TrimPrefix(body, ",")
		switch key {
		case "descr":
			if len(val) < 2 || (val[0] != '\'' && val[0] != '"') {
				return nil, fmt.Errorf("header 'descr' %s is not a simple dtype string (structured dtypes are not supported)", val)
			}
			a.Descr, seen[0] = val[1:len(val)-1], true
		case "fortran_order":
			switch val {
			case "True":
				a.FortranOrder = true
			case "False":
			default:
				return nil, fmt.Errorf("header 'fortran_order' is %q, want True or False", val)
			}
			seen[1] = true
		case "shape":
			s, err := parseShape(val)
			if err != nil {
				return nil, err
			}
			a.Shape, seen[2] = s, true
		default:
			return nil, fmt.Errorf("header has unexpected key %q", key)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return nil, fmt.Errorf("header %q lacks one of 'descr', 'fortran_order', 'shape'", h)
	}
	return a, nil
}

func parseShape(v string) ([]int, error) {
	if !strings.HasPrefix(v, "(") || !strings.HasSuffix(v, ")") {
		return nil, fmt.Errorf("header 'shape' %q is not a tuple", v)
	}
	shape := []int{}
	for _, f := range strings.Split(v[1:len(v)-1], ",") {
		f = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "L"))
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("header 'shape' %q has an invalid dimension %q", v, f)
		}
		shape = append(shape, d)
	}
	return shape, nil
}

// As decodes a's data as []T; the descriptor must be T's exactly (no silent conversion).
func As[T Elem](a *Array) ([]T, error) {
	if want := Descr[T](); a.Descr != want {
		return nil, fmt.Errorf("npy: array has dtype %s, want %s", a.Descr, want)
	}
	out := make([]T, a.Len())
	if _, err := binary.Decode(a.Data, binary.LittleEndian, out); err != nil {
		return nil, fmt.Errorf("npy: decode %s: %w", a.Descr, err)
	}
	return out, nil
}

// Read reads a .npy file of element type T and returns its data and shape.
func Read[T Elem](path string) ([]T, []int, error) {
	a, err := ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if a.FortranOrder && len(a.Shape) > 1 {
		return nil, nil, fmt.Errorf("npy: %s: Fortran-order arrays are not supported", path)
	}
	v, err := As[T](a)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: %s: %w", path, err)
	}
	return v, a.Shape, nil
}

// need formats the byte count a shape needs, saying "more than 2**63" when it overflows.
func need(shape []int, size int) string {
	n := uint64(size)
	for _, d := range shape {
		if d != 0 && n > (1<<63)/uint64(d) {
			return "more than 2**63"
		}
		n *= uint64(d)
	}
	return strconv.FormatUint(n, 10)
}
