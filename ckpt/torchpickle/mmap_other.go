//go:build !unix

package torchpickle

import "os"

// mapFile is unavailable off Unix; Open falls back to reading the file.
func mapFile(f *os.File, size int64) ([]byte, func() error, bool) { return nil, nil, false }
