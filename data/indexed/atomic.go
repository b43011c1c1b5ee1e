package indexed

import (
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path through a temporary file in the same directory, fsyncs
// it, renames it over path and fsyncs the directory, so a crash leaves either the old file or
// the complete new one.
func WriteFileAtomic(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data); err != nil {
		return fmt.Errorf("indexed: write %s: %w", path, err)
	}
	return nil
}

// commitTemp fsyncs, closes and renames the open temporary file f to path, removing it on
// failure.
func commitTemp(f *os.File, path string) error {
	tmp := f.Name()
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("indexed: fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("indexed: close %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("indexed: chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("indexed: rename to %s: %w", path, err)
	}
	atomicfile.SyncDir(filepath.Dir(path))
	return nil
}
