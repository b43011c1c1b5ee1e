package safetensors

import (
	"path/filepath"
	"testing"
)

// BenchmarkOpenAll measures Open plus a view of every tensor of the GPT-2 fixture.
func BenchmarkOpenAll(b *testing.B) {
	path := filepath.Join("testdata", "gpt2", "model.safetensors")
	for i := 0; i < b.N; i++ {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range f.Names() {
			if _, err := f.Tensor(n); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}
