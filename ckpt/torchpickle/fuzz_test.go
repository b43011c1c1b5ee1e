package torchpickle

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gomegatron/gomegatron/tensor"
)

// FuzzDecode: any bytes given as a torch.save file give a value or an error, never a
// panic or a hang. Seeds: small zip archives written by Save, and plain pickles.
func FuzzDecode(f *testing.F) {
	dir := f.TempDir()
	for i, v := range []any{
		map[string]any{"a": int64(1), "t": tensor.FromF32([]float32{1, 2, 3, 4}, 2, 2)},
		[]any{"x", 2.5, true, nil, tensor.FromF32([]float32{7}, 1)},
	} {
		p := filepath.Join(dir, "seed.pt")
		if err := Save(p, v); err != nil {
			f.Fatal(i, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s."))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Decode(data)
	})
}

// FuzzUnpickle: the restricted pickle machine rejects what it cannot run with an error.
func FuzzUnpickle(f *testing.F) {
	for _, s := range []string{
		"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.",         // {'a': 1}
		"\x80\x02]q\x00(K\x01G?\xf8\x00\x00\x00\x00\x00\x00e.", // [1, 1.5]
		"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x03abc\x94\x85\x94.",
		"(lp0\nI1\naI2\na.",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Unpickle(data)
	})
}
