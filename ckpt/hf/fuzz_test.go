package hf

import (
	"os"
	"testing"
)

// FuzzConfig: any config.json gives a model description (whose mapping rules can be
// listed) or an error naming the key, never a panic.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{"../../testdata/hf/llama-gqa/config.json", "../../testdata/hf/gpt2/config.json", "../../testdata/hf/bloom/config.json"} {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseConfig("fuzz", data)
		if err != nil {
			return
		}
		_, _ = m.Rules()
	})
}
