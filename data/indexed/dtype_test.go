package indexed

import (
	"bytes"
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

// TestAllDTypes writes a small dataset in every dtype code 1..8, checks the .bin against the
// bytes numpy produces for numpy.array(tokens, dtype).tobytes() (Megatron's add_item), checks
// the header code and byte pointers, and reads every sequence back.
func TestAllDTypes(t *testing.T) {
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			py = p
			break
		}
	}
	haveNumpy := py != ""
	for c := Uint8; c <= Uint16; c++ {
		t.Run(c.String(), func(t *testing.T) {
			seqs := [][]int64{{1, 2, 3}, {}, append([]int64{0}, dtypeExtremes[c]...), {7}}
			prefix := filepath.Join(t.TempDir(), c.String())
			b, err := NewBuilder(BinPath(prefix), c)
			require.NoError(t, err)
			for i, s := range seqs {
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
			for i, s := range seqs {
				got, err := d.Sequence(i)
				require.NoError(t, err)
				assert.Equal(t, s, nonNil64(got))
			}

			if !haveNumpy {
				t.Skip("python3 with numpy not found: .bin bytes not compared with numpy")
			}
			var lists []string
			for _, s := range seqs {
				lists = append(lists, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(s)), ","), "[]"))
			}
			script := fmt.Sprintf("import numpy,sys\nfor s in [%s]:\n    sys.stdout.buffer.write(numpy.array(s, dtype=numpy.%s).tobytes(order='C'))\n",
				"["+strings.Join(lists, "],[")+"]", c.String())
			want, err := exec.Command(py, "-c", script).Output()
			require.NoError(t, err)
			got, err := os.ReadFile(BinPath(prefix))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, got), "bin bytes differ from numpy:\n%x\n%x", want, got)
		})
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
