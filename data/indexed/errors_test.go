package indexed

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCorruptIndex damages a copy of the c_edge_uint16 fixture in one field at a time and
// requires Open to fail with an error naming the file and the field.
func TestCorruptIndex(t *testing.T) {
	idx, err := os.ReadFile("testdata/c_edge_uint16.idx")
	require.NoError(t, err)
	bin, err := os.ReadFile("testdata/c_edge_uint16.bin")
	require.NoError(t, err)
	const q, docOff = 8, 130 // sequence_count and the byte offset of document_indices
	put64 := func(b []byte, off int, v uint64) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
	put32 := func(b []byte, off int, v uint32) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	cases := []struct {
		name   string
		idx    func([]byte) []byte
		bin    func([]byte) []byte
		errHas []string
	}{
		{"empty idx", func(b []byte) []byte { return b[:0] }, nil, []string{"truncated header"}},
		{"short header", func(b []byte) []byte { return b[:20] }, nil, []string{"truncated header"}},
		{"wrong magic", func(b []byte) []byte { b[0] = 'X'; return b }, nil, []string{"magic"}},
		{"legacy magic", func(b []byte) []byte { copy(b, "TNTIDX\x00\x00\x00"); return b }, nil, []string{"magic"}},
		{"wrong version", func(b []byte) []byte { return put64(b, 9, 2) }, nil, []string{"version is 2"}},
		{"dtype 0", func(b []byte) []byte { b[17] = 0; return b }, nil, []string{"dtype code is 0"}},
		{"dtype 9", func(b []byte) []byte { b[17] = 9; return b }, nil, []string{"dtype code is 9"}},
		{"truncated arrays", func(b []byte) []byte { return b[:len(b)-3] }, nil, []string{"document_count"}},
		{"huge sequence_count", func(b []byte) []byte { return put64(b, 18, 1<<62) }, nil, []string{"sequence_count"}},
		{"huge document_count", func(b []byte) []byte { return put64(b, 26, 1<<62) }, nil, []string{"document_count"}},
		{"trailing bytes", func(b []byte) []byte { return append(b, 1, 2, 3) }, nil, []string{"unexpected bytes"}},
		{"last document index", func(b []byte) []byte { return put64(b, docOff+7*8, 7) }, nil, []string{"document_indices[-1]", "sequence_count"}},
		{"first document index", func(b []byte) []byte { return put64(b, docOff, 1) }, nil, []string{"document_indices[0]"}},
		{"decreasing document indices", func(b []byte) []byte { return put64(b, docOff+8, 5) }, nil, []string{"document_indices[2]"}},
		{"negative length", func(b []byte) []byte { return put32(b, HeaderSize, 0xffffffff) }, nil, []string{"sequence_lengths[0]"}},
		{"pointer past bin", func(b []byte) []byte { return put64(b, HeaderSize+4*q+7*8, 40) }, nil, []string{"sequence 7", "end of the .bin"}},
		{"negative pointer", func(b []byte) []byte { return put64(b, HeaderSize+4*q, ^uint64(0)) }, nil, []string{"sequence_pointers[0]"}},
		{"short bin", nil, func(b []byte) []byte { return b[:len(b)-1] }, []string{"end of the .bin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "bad")
			i, b := append([]byte(nil), idx...), append([]byte(nil), bin...)
			if tc.idx != nil {
				i = tc.idx(i)
			}
			if tc.bin != nil {
				b = tc.bin(b)
			}
			require.NoError(t, os.WriteFile(IdxPath(prefix), i, 0o644))
			require.NoError(t, os.WriteFile(BinPath(prefix), b, 0o644))
			_, err := Open(prefix)
			require.Error(t, err)
			assert.Contains(t, err.Error(), IdxPath(prefix))
			for _, s := range tc.errHas {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestMissingFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(filepath.Join(dir, "nothing"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nothing.idx")
	data, err := os.ReadFile("testdata/a_uint16.idx")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nobin.idx"), data, 0o644))
	_, err = Open(filepath.Join(dir, "nobin"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nobin.bin")
}

func TestGetBounds(t *testing.T) {
	d, err := Open("testdata/c_edge_uint16")
	require.NoError(t, err)
	defer d.Close()
	for _, c := range [][3]int{{-1, 0, 1}, {8, 0, 0}, {0, 6, -1}, {0, 2, 4}, {0, -1, 1}, {0, 0, 6}} {
		_, err := d.Get(c[0], c[1], c[2])
		assert.Error(t, err, "get%v", c)
	}
	got, err := d.Get(0, 5, -1) // offset == length: empty, as numpy would give
	require.NoError(t, err)
	assert.Empty(t, got)
	n, err := d.GetInto(make([]int32, 2), 0, 0, -1)
	assert.Error(t, err, "destination too small")
	assert.Zero(t, n)
	require.NoError(t, d.Close())
	_, err = d.Get(0, 0, 1)
	assert.Error(t, err, "closed")
}

func TestBuilderErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := NewBuilder(filepath.Join(dir, "x.bin"), 9)
	assert.ErrorContains(t, err, "dtype code 9")

	b, err := NewBuilder(filepath.Join(dir, "u8.bin"), Uint8)
	require.NoError(t, err)
	assert.ErrorContains(t, b.AddItem([]int32{1, 256}), "does not fit uint8")
	assert.ErrorContains(t, b.AddDocument([]int32{1, 2}, []int{3}), "lengths sum to 3")
	require.NoError(t, b.AddItem([]int32{1}))
	assert.ErrorContains(t, b.Finalize(filepath.Join(dir, "u8.idx")), "after the last EndDocument")
	_, err = os.Stat(filepath.Join(dir, "u8.bin"))
	assert.True(t, os.IsNotExist(err), "a failed Finalize must not leave a .bin")

	b, err = NewBuilder(filepath.Join(dir, "u16.bin"), Uint16)
	require.NoError(t, err)
	assert.ErrorContains(t, b.AddItem([]int32{-1}), "does not fit uint16")
	assert.ErrorContains(t, b.AddIndex("testdata/b_int32"), "dtype int32")
	require.NoError(t, b.Abort())
	assert.Error(t, b.AddItem([]int32{1}))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "Abort must remove temporary files")
}

func TestOptimalDType(t *testing.T) {
	// Megatron's DType.optimal_dtype: uint16 if vocab_size < 65500 else int32.
	for _, c := range []struct {
		vocab int
		want  DTypeCode
	}{{0, Uint16}, {50257, Uint16}, {65499, Uint16}, {65500, Int32}, {65536, Int32}, {128256, Int32}} {
		assert.Equal(t, c.want, OptimalDType(c.vocab), "vocab %d", c.vocab)
	}
}
