package safetensors

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gomegatron/gomegatron/tensor"
)

// FuzzParse: any bytes given as a safetensors file give its tensors or an error naming
// the problem, never a panic; every tensor of an accepted file can be read.
func FuzzParse(f *testing.F) {
	p := filepath.Join(f.TempDir(), "seed.safetensors")
	err := Write(p, []Named{{Name: "w", T: tensor.FromF32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)},
		{Name: "b", T: tensor.FromF32([]float32{1}, 1)}}, map[string]string{"format": "pt"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{p, "testdata/gpt2/inputs.safetensors"} {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sf := &File{path: "fuzz", data: data}
		if err := sf.parse(); err != nil {
			return
		}
		for _, n := range sf.Names() {
			if x, err := sf.Tensor(n); err == nil {
				_ = x.ToF32()
			}
		}
	})
}
