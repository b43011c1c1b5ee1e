//go:build !unix

package megatron

import "os"

func mapFile(f *os.File, size int64) ([]byte, func() error, bool) { return nil, nil, false }

func dropPages(m, b []byte) {}
