// Package atomicfile writes files so that readers see the old file or the complete new one,
// never a torn write: through a temporary file in the same directory, fsynced, renamed into
// place, and the directory fsynced. Checkpoints, datasets and error files all use it.
package atomicfile

import (
	"bufio"
	"os"
	"path/filepath"
)

// Write creates path (mode 0644) from what fill writes.
func Write(path string, fill func(w *bufio.Writer) error) error {
	return WritePatched(path, fill, nil)
}

// WritePatched is Write with a last step before the file is fsynced and renamed: patch,
// when non-nil, may write into the flushed temporary file (a zip's CRCs known only at
// the end). On any error no file is left and an existing one is untouched.
func WritePatched(path string, fill func(w *bufio.Writer) error, patch func(f *os.File) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err = fill(w); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if patch != nil {
		if err = patch(tmp); err != nil {
			return err
		}
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	SyncDir(dir)
	return nil
}

// WriteFile creates path with data.
func WriteFile(path string, data []byte) error {
	return Write(path, func(w *bufio.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// SyncDir fsyncs a directory so a rename in it is durable (best effort: some file systems
// refuse fsync on directories).
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
