package npy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func numpyPython() string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import numpy").Run() == nil {
			return py
		}
	}
	return ""
}

// numpyCase is one array numpy saves; values are 0..n-1 shifted by off so signs show up.
type numpyCase struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Off   int64  `json:"off"`
}

var numpyCases = []numpyCase{
	{"i4_150", "int32", []int{150}, -3},
	{"i4_1431x2", "int32", []int{1431, 2}, 0},
	{"i8_scalar", "int64", []int{}, 7},
	{"u4_empty", "uint32", []int{0}, 0},
	{"u4_1430", "uint32", []int{1430}, 0},
	{"i2_1000", "int16", []int{1000}, -500},
	{"i8_1000", "int64", []int{1000}, -1 << 40},
	{"f8_3x4x5", "float64", []int{3, 4, 5}, -30},
	{"u1_7", "uint8", []int{7}, 0},
	{"i8_bigaxis", "int64", []int{123456789012, 0}, 0},
	{"i4_long_shape", "int32", []int{1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1}, 0},
}

// TestByteIdenticalToNumpy has numpy 1.24 save each case and requires Marshal to produce the
// same bytes, and Read to give back the values numpy wrote.
func TestByteIdenticalToNumpy(t *testing.T) {
	py := numpyPython()
	if py == "" {
		t.Skip("no python3 with numpy found (tried /usr/bin/python3 and python3 on PATH)")
	}
	dir := t.TempDir()
	spec, _ := json.Marshal(numpyCases)
	script := `
import numpy, json, sys, os
for c in json.loads(sys.argv[1]):
    n = int(numpy.prod(c['shape'])) if c['shape'] else 1
    a = (numpy.arange(n, dtype=numpy.int64) + c['off']).astype(c['dtype']).reshape(c['shape'])
    numpy.save(os.path.join(sys.argv[2], c['name'] + '.npy'), a)
`
	out, err := exec.Command(py, "-c", script, string(spec), dir).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, c := range numpyCases {
		t.Run(c.Name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, c.Name+".npy"))
			require.NoError(t, err)
			n := 1
			for _, d := range c.Shape {
				n *= d
			}
			var got []byte
			switch c.DType {
			case "int32":
				got = marshalRange[int32](t, n, c.Off, c.Shape, filepath.Join(dir, c.Name+".npy"))
			case "int64":
				got = marshalRange[int64](t, n, c.Off, c.Shape, filepath.Join(dir, c.Name+".npy"))
			case "uint32":
				got = marshalRange[uint32](t, n, c.Off, c.Shape, filepath.Join(dir, c.Name+".npy"))
			case "int16":
				got = marshalRange[int16](t, n, c.Off, c.Shape, filepath.Join(dir, c.Name+".npy"))
			case "float64":
				got = marshalRange[float64](t, n, c.Off, c.Shape, filepath.Join(dir, c.Name+".npy"))
			case "uint8":
				got = marshalRange[uint8](t, n, c.Off, c.Shape, filepath.Join(dir, c.Name+".npy"))
			}
			assert.True(t, bytes.Equal(want, got), "numpy:\n%q\ngo:\n%q", want[:min(len(want), 200)], got[:min(len(got), 200)])
		})
	}
}

// marshalRange builds arange(n)+off as T, marshals it, and checks Read of numpy's file.
func marshalRange[T Elem](t *testing.T, n int, off int64, shape []int, numpyFile string) []byte {
	data := make([]T, n)
	for i := range data {
		data[i] = T(int64(i) + off)
	}
	b, err := Marshal(data, shape...)
	require.NoError(t, err)
	got, gotShape, err := Read[T](numpyFile)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Equal(t, shape, gotShape)
	return b
}

func TestWriteReadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.npy")
	require.NoError(t, WriteFile(path, []int32{3, 1, 2}))
	got, shape, err := Read[int32](path)
	require.NoError(t, err)
	assert.Equal(t, []int32{3, 1, 2}, got)
	assert.Equal(t, []int{3}, shape)
	_, _, err = Read[int64](path)
	assert.ErrorContains(t, err, "dtype <i4, want <i8")
	entries, _ := os.ReadDir(filepath.Dir(path))
	assert.Len(t, entries, 1)
}

func TestErrors(t *testing.T) {
	_, err := Marshal([]int32{1, 2}, 3)
	assert.ErrorContains(t, err, "holds 3 elements")
	good, err := Marshal([]int32{1, 2, 3})
	require.NoError(t, err)
	hdr := len(good) - 12
	cases := map[string]struct {
		b   []byte
		err string
	}{
		"magic":     {append([]byte("XNUMPY"), good[6:]...), "not a .npy"},
		"short":     {good[:5], "not a .npy"},
		"version":   {append(append([]byte{}, good[:6]...), append([]byte{9, 0}, good[8:]...)...), "version 9.0"},
		"truncated": {good[:len(good)-1], "needs 12 data bytes, file has 11"},
		"long hlen": {append(append([]byte{}, good[:8]...), append([]byte{0xff, 0xff}, good[10:]...)...), "exceeds the file"},
		"descr":     {bytes.Replace(good, []byte("'<i4'"), []byte("'>i4'"), 1), "not a little-endian"},
		"shape":     {bytes.Replace(good, []byte("(3,)"), []byte("(x,)"), 1), "invalid dimension"},
		"huge":      {append(Header("<i4", []int{1 << 40, 1 << 40}, false), good[128:]...), "needs"},
		"key":       {bytes.Replace(good, []byte("'descr'"), []byte("'dtype'"), 1), "unexpected key"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(c.b, "f.npy")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "f.npy")
			assert.Contains(t, err.Error(), c.err)
		})
	}
	assert.Equal(t, 128, hdr+0) // numpy pads these headers to 128 bytes
}
