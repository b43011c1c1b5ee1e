package safetensors

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestJSONStringEscapes pins the two writers' escapes: serde_json's (safetensors headers:
// control characters only, UTF-8 kept) and Python json's ensure_ascii (the index file
// transformers writes), e.g. json.dumps("é😀") == '"\u00e9\ud83d\ude00"'.
func TestJSONStringEscapes(t *testing.T) {
	in := "a\"b\\c\n\t\b\f\r\x01\x1fé😀~"
	var serde, py bytes.Buffer
	writeJSONString(&serde, in)
	writePyJSONString(&py, in)
	require.Equal(t, `"a\"b\\c\n\t\b\f\r\u0001\u001fé😀~"`, serde.String())
	require.Equal(t, `"a\"b\\c\n\t\b\f\r\u0001\u001f\u00e9\ud83d\ude00~"`, py.String())
}
