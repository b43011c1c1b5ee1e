package atomicfile

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteReplacesWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	require.NoError(t, WriteFile(p, []byte("old")))
	boom := errors.New("boom")
	err := Write(p, func(w *bufio.Writer) error {
		w.WriteString("partial new content")
		return boom
	})
	require.ErrorIs(t, err, boom)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "old", string(b), "a failed write leaves the old file")
	ents, _ := os.ReadDir(dir)
	require.Len(t, ents, 1, "no temporary file is left behind")
	require.NoError(t, WriteFile(p, []byte("new")))
	b, _ = os.ReadFile(p)
	require.Equal(t, "new", string(b))
	st, _ := os.Stat(p)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
}
