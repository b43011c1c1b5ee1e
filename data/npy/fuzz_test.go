package npy

import "testing"

// FuzzParse: any bytes given as a .npy file give an array or an error, never a panic.
func FuzzParse(f *testing.F) {
	for _, b := range [][]byte{must(Marshal([]float32{1, 2, 3, 4, 5, 6}, 2, 3)), must(Marshal([]int64{7}, 1)), must(Marshal([]uint16{}, 0))} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(data, "fuzz")
		if err != nil {
			return
		}
		_, _ = As[float32](a)
		_, _ = As[int64](a)
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
