// Package store is gomegatron's rendezvous store: a TCP key-value server hosted by the node-0
// launcher, and a client used by launchers and workers for rendezvous, barriers, restart
// coordination and the NCCL unique id.
//
// It mirrors the semantics of c10d's TCPStore (torch/csrc/distributed/c10d/TCPStoreBackend.hpp)
// without its wire format: set, get (= wait then get), wait with a timeout, add on an int64
// counter kept as a decimal string, check, and compare_set. Every connection starts with a
// handshake carrying the job token, so a process from another job (a stale worker, a second
// job on the same port) is rejected with an error on both sides instead of joining silently.
//
// Wire format: every message is a frame
//
//	uint32 length | op/status byte | uint64 request id | uint32 nargs | nargs × (uint32 len | bytes)
//
// in big-endian. Requests carry an op, responses a status and the id of the request they
// answer, so one connection multiplexes concurrent calls (including blocking waits) from many
// goroutines.
package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Request ops.
const (
	opHello      byte = iota + 1 // args: magic, token
	opSet                        // args: key, value
	opGet                        // args: key (must exist; the client waits first)
	opAdd                        // args: key, int64 delta (8 bytes)
	opCheck                      // args: keys…
	opWait                       // args: timeout ms (8 bytes, 0 = none), keys…
	opCompareSet                 // args: key, expected, desired
	opCancel                     // args: id of the wait to cancel (8 bytes)
)

// Response statuses.
const (
	stOK      byte = 0
	stErr     byte = 1 // args: message
	stTimeout byte = 2 // args: missing keys…
)

// magic opens the handshake; it is c10d's VALIDATE magic so a stray TCPStore client is
// recognisable in a packet dump, not for compatibility.
const magic = "\x3c\x85\xf7\xce"

// maxFrame bounds one message so a bad peer cannot make us allocate without limit.
const maxFrame = 256 << 20

type frame struct {
	op   byte
	id   uint64
	args [][]byte
}

func writeFrame(w *bufio.Writer, f frame) error {
	n := 1 + 8 + 4
	for _, a := range f.args {
		n += 4 + len(a)
	}
	if n > maxFrame {
		return fmt.Errorf("store: message of %d bytes exceeds the %d byte limit", n, maxFrame)
	}
	var hdr [17]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(n))
	hdr[4] = f.op
	binary.BigEndian.PutUint64(hdr[5:], f.id)
	binary.BigEndian.PutUint32(hdr[13:], uint32(len(f.args)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for _, a := range f.args {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(a)))
		if _, err := w.Write(l[:]); err != nil {
			return err
		}
		if _, err := w.Write(a); err != nil {
			return err
		}
	}
	return w.Flush()
}

var errBadFrame = errors.New("store: malformed message")

func readFrame(r *bufio.Reader) (frame, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n < 13 || n > maxFrame {
		return frame{}, fmt.Errorf("%w: length %d", errBadFrame, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return frame{}, err
	}
	f := frame{op: buf[0], id: binary.BigEndian.Uint64(buf[1:])}
	nargs := binary.BigEndian.Uint32(buf[9:])
	rest := buf[13:]
	if uint64(nargs)*4 > uint64(len(rest)) {
		return frame{}, fmt.Errorf("%w: %d arguments in %d bytes", errBadFrame, nargs, len(rest))
	}
	f.args = make([][]byte, 0, nargs)
	for i := uint32(0); i < nargs; i++ {
		if len(rest) < 4 {
			return frame{}, errBadFrame
		}
		al := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(al) > uint64(len(rest)) {
			return frame{}, errBadFrame
		}
		f.args = append(f.args, rest[:al:al])
		rest = rest[al:]
	}
	if len(rest) != 0 {
		return frame{}, fmt.Errorf("%w: %d trailing bytes", errBadFrame, len(rest))
	}
	return f, nil
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func getU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: want an 8-byte integer, got %d bytes", errBadFrame, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
