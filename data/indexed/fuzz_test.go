package indexed

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseIndex: any bytes given as a .idx file give an index whose arrays are
// consistent, or an error, never a panic or a huge allocation.
func FuzzParseIndex(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.idx")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, multimodal bool) {
		ix, err := ParseIndex(data, "fuzz", multimodal)
		if err != nil {
			return
		}
		if len(ix.SequenceLengths) != len(ix.SequencePointers) {
			t.Fatalf("%d lengths but %d pointers", len(ix.SequenceLengths), len(ix.SequencePointers))
		}
	})
}
