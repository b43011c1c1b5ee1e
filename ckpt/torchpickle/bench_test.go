package torchpickle

import (
	"path/filepath"
	"testing"
)

// BenchmarkLoadMcore measures Load of the mcore fixture (452 KB, 27 tensors).
func BenchmarkLoadMcore(b *testing.B) {
	path := filepath.Join("testdata", "checkpoints", "mcore_tp1", "iter_0000010", "mp_rank_00", "model_optim_rng.pt")
	b.SetBytes(452229)
	for i := 0; i < b.N; i++ {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveMcore measures Save of the loaded mcore fixture.
func BenchmarkSaveMcore(b *testing.B) {
	v, err := Load(filepath.Join("testdata", "checkpoints", "mcore_tp1", "iter_0000010", "mp_rank_00", "model_optim_rng.pt"))
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out.pt")
	b.SetBytes(452229)
	for i := 0; i < b.N; i++ {
		if err := Save(out, v); err != nil {
			b.Fatal(err)
		}
	}
}
