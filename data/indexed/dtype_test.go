package indexed

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dtypeTokens are values representable in every dtype, with extremes per dtype added below.
var dtypeExtremes = map[DTypeCode][]int64{
	Uint8: {0, 255}, Int8: {-128, 127}, Int16: {-32768, 32767}, Uint16: {0, 65535},
	Int32: {-1 << 31, 1<<31 - 1}, Int64: {-1 << 62, 1<<62 + 12345}, Float32: {-7, 1 << 20}, Float64: {-7, 1 << 40},
}

// dtypeSeqs are the sequences written in every dtype: small values, an empty sequence, the
// dtype's extremes.
func dtypeSeqs(c DTypeCode) [][]int64 {
	return [][]int64{{1, 2, 3}, {}, append([]int64{0}, dtypeExtremes[c]...), {7}}
}

// TestAllDTypes writes a small dataset in every dtype code 1..8, checks the header code, the
// byte pointers and document indices, reads every sequence back, and compares each .bin with
// the bytes numpy produces for numpy.array(tokens, dtype).tobytes() (Megatron's add_item).
func TestAllDTypes(t *testing.T) {
	dir := t.TempDir()
	for c := Uint8; c <= Uint16; c++ {
		t.Run(c.String(), func(t *testing.T) {
			prefix := filepath.Join(dir, c.String())
			b, err := NewBuilder(BinPath(prefix), c)
			require.NoError(t, err)
			for i, s := range dtypeSeqs(c) {
				require.NoError(t, b.AddItemInt64(s))
				if i%2 == 1 {
					b.EndDocument()
				}
			}
			require.NoError(t, b.Finalize(IdxPath(prefix)))

			idx, err := os.ReadFile(IdxPath(prefix))
			require.NoError(t, err)
			assert.Equal(t, byte(c), idx[17])
			d, err := Open(prefix)
			require.NoError(t, err)
			defer d.Close()
			assert.Equal(t, c, d.DType())
			assert.Equal(t, []int64{0, 3 * int64(c.Size()), 3 * int64(c.Size()), 6 * int64(c.Size())}, d.SequencePointers())
			assert.Equal(t, []int64{0, 2, 4}, d.DocumentIndices())
			for i, s := range dtypeSeqs(c) {
				got, err := d.Sequence(i)
				require.NoError(t, err)
				assert.Equal(t, s, nonNil64(got))
			}
		})
	}

	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("python3 with numpy not found: .bin bytes not compared with numpy")
	}
	// One python run prints, per dtype, the hex of numpy.array(seq, dtype).tobytes() of all
	// sequences.
	var script strings.Builder
	script.WriteString("import numpy\n")
	for c := Uint8; c <= Uint16; c++ {
		var lists []string
		for _, s := range dtypeSeqs(c) {
			lists = append(lists, "["+strings.Trim(strings.Join(strings.Fields(fmt.Sprint(s)), ","), "[]")+"]")
		}
		fmt.Fprintf(&script, "print(b''.join(numpy.array(s, dtype=numpy.%s).tobytes(order='C') for s in [%s]).hex())\n", c, strings.Join(lists, ","))
	}
	out, err := exec.Command(py, "-c", script.String()).Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 8)
	for c := Uint8; c <= Uint16; c++ {
		got, err := os.ReadFile(BinPath(filepath.Join(dir, c.String())))
		require.NoError(t, err)
		assert.Equal(t, lines[c-1], hex.EncodeToString(got), "%s .bin bytes differ from numpy", c)
	}
}

func TestParseDType(t *testing.T) {
	for c := Uint8; c <= Uint16; c++ {
		got, err := ParseDType(c.String())
		require.NoError(t, err)
		assert.Equal(t, c, got)
	}
	_, err := ParseDType("bfloat16")
	assert.ErrorContains(t, err, "bfloat16")
	assert.Equal(t, "dtype(0)", DTypeCode(0).String())
	assert.Zero(t, DTypeCode(9).Size())
}

// TestMultimodal writes sequence_modes and reads them back; a non-multimodal index opened with
// Multimodal set is an error naming sequence_modes.
func TestMultimodal(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "mm")
	b, err := NewBuilderWithOptions(BinPath(prefix), Int32, Options{Multimodal: true})
	require.NoError(t, err)
	require.NoError(t, b.AddItemMode([]int32{1, 2}, 0))
	require.NoError(t, b.AddItemMode([]int32{3}, 1))
	b.EndDocument()
	require.NoError(t, b.AddDocument([]int32{4, 5, 6}, []int{1, 2}, 1, 0))
	require.NoError(t, b.Finalize(IdxPath(prefix)))

	idx, err := os.ReadFile(IdxPath(prefix))
	require.NoError(t, err)
	assert.Len(t, idx, HeaderSize+12*4+8*3+4)
	assert.Equal(t, []byte{0, 1, 1, 0}, idx[len(idx)-4:])
	d, err := OpenWithOptions(prefix, Options{Multimodal: true})
	require.NoError(t, err)
	assert.Equal(t, []int8{0, 1, 1, 0}, d.SequenceModes())
	require.NoError(t, d.Close())

	_, err = OpenWithOptions("testdata/a_uint16", Options{Multimodal: true})
	assert.ErrorContains(t, err, "sequence_modes")

	// Merging the multimodal dataset keeps its modes.
	out := filepath.Join(t.TempDir(), "merged")
	m, err := NewBuilderWithOptions(BinPath(out), Int32, Options{Multimodal: true})
	require.NoError(t, err)
	require.NoError(t, m.AddIndex(prefix))
	require.NoError(t, m.AddIndex(prefix))
	require.NoError(t, m.Finalize(IdxPath(out)))
	d, err = OpenWithOptions(out, Options{Multimodal: true})
	require.NoError(t, err)
	defer d.Close()
	assert.Equal(t, []int8{0, 1, 1, 0, 0, 1, 1, 0}, d.SequenceModes())
	assert.Equal(t, []int64{0, 2, 4, 6, 8}, d.DocumentIndices())
}
