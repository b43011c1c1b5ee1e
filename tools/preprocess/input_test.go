package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestArraySplitter feeds JSON arrays to the splitter in random-sized pieces and checks the
// elements against encoding/json's, byte for byte after compaction, and that broken arrays
// are refused.
func TestArraySplitter(t *testing.T) {
	valid := []string{
		`[]`, ` [ ] `, `[1]`, `[ -1.5e3 , true,false, null ,"s"]`,
		`[{"a": "}]\"\\", "b": [1, [2, {"c": "]"}]]}, "x\u00e9\\\"", {"text": "中文，]["}]`,
		"[\n  {\"content\": \"line\\nbreak\", \"title\": \"t\"},\n  {\"content\": \"\"}\n]\n",
		`[[[]], {}, [{}], "", 0]`,
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, v := range valid {
		var want []json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(v), &want), v)
		for trial := 0; trial < 20; trial++ {
			var got []json.RawMessage
			var sp arraySplitter
			in := []byte(v)
			in = in[bytes.IndexByte(in, '[')+1:]
			for len(in) > 0 {
				n := 1 + rng.IntN(len(in))
				require.NoError(t, sp.feed(in[:n], func(e []byte) bool {
					got = append(got, append(json.RawMessage(nil), e...))
					return true
				}), v)
				in = in[n:]
			}
			require.True(t, sp.done, v)
			require.Len(t, got, len(want), v)
			for i := range want {
				var a, b bytes.Buffer
				require.NoError(t, json.Compact(&a, want[i]))
				require.NoError(t, json.Compact(&b, got[i]), "element %d of %s: %q", i, v, got[i])
				assert.Equal(t, a.String(), b.String(), v)
			}
		}
	}
	broken := []struct{ in, err string }{
		{`[1,]`, "trailing ','"},
		{`[,1]`, "unexpected ','"},
		{`[{"a":1} {"b":2}]`, "want ',' or ']'"},
		{`[1] 2`, "after the JSON array"},
	}
	for _, b := range broken {
		var sp arraySplitter
		err := sp.feed([]byte(b.in[1:]), func([]byte) bool { return true })
		require.Error(t, err, b.in)
		assert.Contains(t, err.Error(), b.err, b.in)
	}
	var sp arraySplitter
	require.NoError(t, sp.feed([]byte(`{"a": "unterminated]`), func([]byte) bool { return true }))
	assert.False(t, sp.done, "an unterminated array is not done")
}
