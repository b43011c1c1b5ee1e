package indexed

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixture is the JSON description Megatron's reader produced for each testdata/<name> pair.
type fixture struct {
	Prefix    string `json:"prefix"`
	DType     string `json:"dtype"`
	DTypeCode int    `json:"dtype_code"`
	DTypeSize int    `json:"dtype_size"`
	IdxHeader struct {
		MagicHex      string `json:"magic_hex"`
		Version       int    `json:"version"`
		DTypeCode     int    `json:"dtype_code"`
		SequenceCount int    `json:"sequence_count"`
		DocumentCount int    `json:"document_count"`
	} `json:"idx_header"`
	BinSize          int64     `json:"bin_size_bytes"`
	IdxSize          int64     `json:"idx_size_bytes"`
	BinSHA           string    `json:"bin_sha256"`
	IdxSHA           string    `json:"idx_sha256"`
	NumSequences     int       `json:"num_sequences"`
	NumDocuments     int       `json:"num_documents"`
	BuilderCalls     []string  `json:"builder_calls"`
	SequenceLengths  []int32   `json:"sequence_lengths"`
	SequencePointers []int64   `json:"sequence_pointers"`
	DocumentIndices  []int64   `json:"document_indices"`
	Sequences        [][]int64 `json:"sequences"`
	GetExamples      []struct {
		Idx    int     `json:"idx"`
		Offset int     `json:"offset"`
		Length *int    `json:"length"`
		Result []int64 `json:"result"`
	} `json:"get_examples"`
}

var fixtureNames = []string{"a_uint16", "b_int32", "c_edge_uint16", "e_empty_uint16"}

func loadFixture(t *testing.T, name string) *fixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	var f fixture
	require.NoError(t, json.Unmarshal(data, &f))
	return &f
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// TestOpenFixtures reads every Megatron-written pair and compares all arrays, sequences and
// get() examples with what Megatron's own IndexedDataset returned.
func TestOpenFixtures(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			fx := loadFixture(t, name)
			d, err := Open(filepath.Join("testdata", fx.Prefix))
			require.NoError(t, err)
			defer d.Close()
			magic, _ := hex.DecodeString(fx.IdxHeader.MagicHex)
			assert.Equal(t, string(magic), Magic)
			assert.Equal(t, fx.DTypeCode, int(d.DType()))
			assert.Equal(t, fx.DType, d.DType().String())
			assert.Equal(t, fx.DTypeSize, d.DType().Size())
			assert.Equal(t, fx.NumSequences, d.NumSequences())
			assert.Equal(t, fx.IdxHeader.SequenceCount, d.NumSequences())
			assert.Equal(t, fx.NumDocuments, d.NumDocuments())
			assert.Equal(t, fx.IdxHeader.DocumentCount, len(d.DocumentIndices()))
			assert.Equal(t, fx.SequenceLengths, nonNil32(d.SequenceLengths()))
			assert.Equal(t, fx.SequencePointers, nonNil64(d.SequencePointers()))
			assert.Equal(t, fx.DocumentIndices, d.DocumentIndices())
			var total int64
			for i, want := range fx.Sequences {
				got, err := d.Sequence(i)
				require.NoError(t, err)
				assert.Equal(t, want, nonNil64(got), "sequence %d", i)
				dst := make([]int32, len(want)+3)
				n, err := d.GetInto(dst, i, 0, -1)
				require.NoError(t, err)
				require.Equal(t, len(want), n)
				for k := range want {
					assert.Equal(t, want[k], int64(dst[k]))
				}
				total += int64(len(want))
			}
			assert.Equal(t, total, d.NumTokens())
			for _, ex := range fx.GetExamples {
				length := -1
				if ex.Length != nil {
					length = *ex.Length
				}
				got, err := d.Get(ex.Idx, ex.Offset, length)
				require.NoError(t, err)
				assert.Equal(t, ex.Result, got, "get(%d, %d, %v)", ex.Idx, ex.Offset, ex.Length)
			}
			for doc := 0; doc < d.NumDocuments(); doc++ {
				want := []int64{}
				for s := fx.DocumentIndices[doc]; s < fx.DocumentIndices[doc+1]; s++ {
					want = append(want, fx.Sequences[s]...)
				}
				got, err := d.Document(doc)
				require.NoError(t, err)
				assert.Equal(t, want, got, "document %d", doc)
			}
			_, err = d.Document(d.NumDocuments())
			assert.Error(t, err)
			_, err = d.Get(d.NumSequences(), 0, -1)
			assert.Error(t, err)
		})
	}
}

func nonNil32(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}

func nonNil64(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

var callRE = regexp.MustCompile(`^add_item\(len=(\d+)\)$`)

// replay runs a fixture's builder_calls on b, taking each sequence's tokens from the fixture.
func replay(t *testing.T, b *Builder, fx *fixture) {
	t.Helper()
	seq := 0
	for _, call := range fx.BuilderCalls {
		if call == "end_document()" {
			b.EndDocument()
			continue
		}
		m := callRE.FindStringSubmatch(call)
		require.NotNil(t, m, "unknown builder call %q", call)
		n, _ := strconv.Atoi(m[1])
		toks := make([]int32, n)
		require.Len(t, fx.Sequences[seq], n)
		for k, v := range fx.Sequences[seq] {
			toks[k] = int32(v)
		}
		require.NoError(t, b.AddItem(toks))
		seq++
	}
}

// TestBuilderReproducesFixtures replays Megatron's builder calls and requires byte-identical
// .bin and .idx files (SHA-256 from the fixture, and the fixture files themselves).
func TestBuilderReproducesFixtures(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			fx := loadFixture(t, name)
			dir := t.TempDir()
			prefix := filepath.Join(dir, name)
			dt, err := ParseDType(fx.DType)
			require.NoError(t, err)
			b, err := NewBuilder(BinPath(prefix), dt)
			require.NoError(t, err)
			replay(t, b, fx)
			require.NoError(t, b.Finalize(IdxPath(prefix)))
			assert.Equal(t, fx.BinSHA, fileSHA(t, BinPath(prefix)))
			assert.Equal(t, fx.IdxSHA, fileSHA(t, IdxPath(prefix)))
			assert.Equal(t, fileSHA(t, filepath.Join("testdata", name+".idx")), fileSHA(t, IdxPath(prefix)))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, entries, 2, "no temporary files may remain")
		})
	}
}

// TestAddDocumentMatchesAddItem builds each fixture with AddDocument (one call per document)
// and requires the same bytes as Megatron's add_item/end_document sequence.
func TestAddDocumentMatchesAddItem(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			fx := loadFixture(t, name)
			prefix := filepath.Join(t.TempDir(), name)
			dt, _ := ParseDType(fx.DType)
			b, err := NewBuilder(BinPath(prefix), dt)
			require.NoError(t, err)
			for doc := 0; doc+1 < len(fx.DocumentIndices); doc++ {
				var toks []int32
				var lens []int
				for s := fx.DocumentIndices[doc]; s < fx.DocumentIndices[doc+1]; s++ {
					for _, v := range fx.Sequences[s] {
						toks = append(toks, int32(v))
					}
					lens = append(lens, len(fx.Sequences[s]))
				}
				require.NoError(t, b.AddDocument(toks, lens))
			}
			require.NoError(t, b.Finalize(IdxPath(prefix)))
			assert.Equal(t, fx.BinSHA, fileSHA(t, BinPath(prefix)))
			assert.Equal(t, fx.IdxSHA, fileSHA(t, IdxPath(prefix)))
		})
	}
}

// TestAddIndexMerge splits each fixture's documents into two datasets, merges them with
// AddIndex (Megatron's add_index: lengths appended, document_indices shifted, .bin copied) and
// requires the bytes of the unsplit fixture.
func TestAddIndexMerge(t *testing.T) {
	for _, name := range fixtureNames {
		fx := loadFixture(t, name)
		ndocs := len(fx.DocumentIndices) - 1
		for _, cut := range []int{0, ndocs / 2, ndocs} {
			t.Run(name+"/cut"+strconv.Itoa(cut), func(t *testing.T) {
				dir := t.TempDir()
				dt, _ := ParseDType(fx.DType)
				part := func(p string, d0, d1 int) {
					b, err := NewBuilder(BinPath(p), dt)
					require.NoError(t, err)
					for doc := d0; doc < d1; doc++ {
						for s := fx.DocumentIndices[doc]; s < fx.DocumentIndices[doc+1]; s++ {
							toks := make([]int32, len(fx.Sequences[s]))
							for k, v := range fx.Sequences[s] {
								toks[k] = int32(v)
							}
							require.NoError(t, b.AddItem(toks))
						}
						b.EndDocument()
					}
					require.NoError(t, b.Finalize(IdxPath(p)))
				}
				p1, p2, out := filepath.Join(dir, "p1"), filepath.Join(dir, "p2"), filepath.Join(dir, "merged")
				part(p1, 0, cut)
				part(p2, cut, ndocs)
				b, err := NewBuilder(BinPath(out), dt)
				require.NoError(t, err)
				require.NoError(t, b.AddIndex(p1))
				require.NoError(t, b.AddIndex(p2))
				require.NoError(t, b.Finalize(IdxPath(out)))
				assert.Equal(t, fx.BinSHA, fileSHA(t, BinPath(out)))
				assert.Equal(t, fx.IdxSHA, fileSHA(t, IdxPath(out)))
			})
		}
	}
}
