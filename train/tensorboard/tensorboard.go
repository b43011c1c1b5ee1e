// Package tensorboard writes TensorBoard event files: TFRecord framing (length, masked
// CRC-32C of the length, payload, masked CRC-32C of the payload) around Event protocol
// buffers, the first carrying file_version "brain.Event:2" and the rest scalar summaries.
package tensorboard

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// Writer appends events to one file.
type Writer struct {
	f    *os.File
	w    *bufio.Writer
	path string
}

// writers numbers this process's event files (TensorBoard's _global_uid).
var writers atomic.Int64

// NewWriter creates dir if needed and opens events.out.tfevents.<unix time>.<host>.<pid>.<n>
// in it, the name TensorBoard's own EventFileWriter gives (n counts the writers of this
// process), so runs started in the same second into one folder do not collide.
func NewWriter(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	path := filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%010d.%s.%d.%d", time.Now().Unix(), host, os.Getpid(), writers.Add(1)-1))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	w := &Writer{f: f, w: bufio.NewWriter(f), path: path}
	if err := w.record(event(float64(time.Now().UnixNano())/1e9, 0, func(b []byte) []byte {
		return appendBytes(b, 3, []byte("brain.Event:2"))
	})); err != nil {
		f.Close()
		return nil, err
	}
	return w, w.Flush()
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

// Scalar records tag = value at step.
func (w *Writer) Scalar(tag string, value float64, step int64) error {
	return w.record(event(float64(time.Now().UnixNano())/1e9, step, func(b []byte) []byte {
		var v []byte
		v = appendBytes(v, 1, []byte(tag))
		v = binary.AppendUvarint(v, 2<<3|5) // simple_value: fixed32 float
		v = binary.LittleEndian.AppendUint32(v, math.Float32bits(float32(value)))
		return appendBytes(b, 5, appendBytes(nil, 1, v)) // Event.summary{value{…}}
	}))
}

// Flush writes buffered events to the file.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("tensorboard: %s: %w", w.path, err)
	}
	return nil
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	if err := w.Flush(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}

func (w *Writer) record(payload []byte) error {
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(payload)))
	binary.LittleEndian.PutUint32(hdr[8:], maskedCRC(hdr[:8]))
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], maskedCRC(payload))
	for _, b := range [][]byte{hdr[:], payload, tail[:]} {
		if _, err := w.w.Write(b); err != nil {
			return fmt.Errorf("tensorboard: %s: %w", w.path, err)
		}
	}
	return nil
}

// event encodes Event{wall_time: 1 (double), step: 2 (int64), body}.
func event(wall float64, step int64, body func([]byte) []byte) []byte {
	b := binary.AppendUvarint(nil, 1<<3|1)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(wall))
	if step != 0 {
		b = binary.AppendUvarint(b, 2<<3|0)
		b = binary.AppendUvarint(b, uint64(step))
	}
	return body(b)
}

// appendBytes appends a length-delimited field.
func appendBytes(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
