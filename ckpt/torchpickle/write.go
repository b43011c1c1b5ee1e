package torchpickle

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"hash/crc32"
	"io"
	"path/filepath"
	"sort"
	"strings"
)

// alignment is torch's kFieldAlignment: every entry's payload starts at a multiple
// of 64 bytes in the file, so readers can map storages in place.
const alignment = 64

const u32max = 0xFFFFFFFF

// Save writes v as torch.save (torch ≥ 1.6 zip format, pickle protocol 2) would,
// atomically. The archive's top-level folder is the file name without extension, as
// in torch 1.13; entries are <name>/data.pkl, <name>/byteorder ("little"),
// <name>/data/<key> for each storage (stored, 64-byte aligned) and <name>/version
// ("3"). See the package comment for which Go values map to which Python values.
func Save(path string, v any) error {
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if name == "" {
		name = "archive"
	}
	err := atomicfile.Write(path, func(w *bufio.Writer) error { return Encode(w, name, v) })
	if err != nil {
		return fmt.Errorf("torchpickle: writing %s: %w", path, err)
	}
	return nil
}

// Encode writes v as a torch.save archive with top-level folder name to w. Values with
// *LazyTensor need SaveStream: their CRCs are patched into the file after streaming.
func Encode(w io.Writer, name string, v any) error {
	recs, lazies, err := archive(name, v)
	if err != nil {
		return err
	}
	for i, l := range lazies {
		if l != nil {
			return fmt.Errorf("%s: lazy tensors can only be written to a file (SaveStream)", l.label(recs[i].name))
		}
	}
	return writeZip(w, recs)
}

// archive pickles v and lists the archive's entries in torch's order; lazies[i] is set
// when entry i's bytes come from a LazyTensor (recs[i].data is then nil).
func archive(name string, v any) (recs []record, lazies []*LazyTensor, err error) {
	p := newPickler()
	p.op(opProto, 2)
	if err := p.save(v); err != nil {
		return nil, nil, err
	}
	p.op(opStop)
	recs = []record{
		{name + "/data.pkl", p.b.Bytes()},
		{name + "/byteorder", []byte("little")},
	}
	sts := append([]*outStorage(nil), p.storages...)
	sort.Slice(sts, func(i, j int) bool { return sts[i].key < sts[j].key }) // torch writes keys string-sorted
	for _, s := range sts {
		recs = append(recs, record{name + "/data/" + s.key, s.data})
	}
	recs = append(recs, record{name + "/version", []byte("3\n")})
	lazies = make([]*LazyTensor, len(recs))
	for i, s := range sts {
		lazies[2+i] = s.lazy
	}
	return recs, lazies, nil
}

type record struct {
	name string
	data []byte
}

// countingWriter tracks the offset of the next byte.
type countingWriter struct {
	w   io.Writer
	off uint64
	err error
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(b)
	c.off += uint64(n)
	c.err = err
	return n, err
}

func (c *countingWriter) le(vs ...any) {
	for _, v := range vs {
		if c.err == nil {
			c.err = binary.Write(c, binary.LittleEndian, v)
		}
	}
}

type centralEntry struct {
	name      string
	crc       uint32
	size, off uint64
}

// writeZip writes an uncompressed zip as torch's PyTorchStreamWriter does: each local
// header carries an extra field "FB" of 'Z' padding that puts the payload on a
// 64-byte boundary; sizes or offsets past 4 GiB use ZIP64 fields; the archive ends
// with a ZIP64 end-of-central-directory record, locator and the classic record.
func writeZip(w io.Writer, recs []record) error {
	_, err := writeZipLazy(w, recs, nil)
	return err
}

// writeZipLazy is writeZip where entry i with lazies[i] != nil is streamed from its Fill
// (lazies may be nil). A streamed entry's local header carries CRC 0; the returned patches
// say where the real CRCs go once the file is flushed.
func writeZipLazy(w io.Writer, recs []record, lazies []*LazyTensor) ([]crcPatch, error) {
	cw := &countingWriter{w: w}
	var cents []centralEntry
	var patches []crcPatch
	for i, r := range recs {
		var lazy *LazyTensor
		if lazies != nil {
			lazy = lazies[i]
		}
		size := uint64(len(r.data))
		var crc uint32
		if lazy != nil {
			size = uint64(lazy.bytes())
		} else {
			crc = crc32.ChecksumIEEE(r.data)
		}
		start := cw.off
		var zip64 []byte
		if size >= u32max {
			zip64 = binary.LittleEndian.AppendUint16(nil, 1)
			zip64 = binary.LittleEndian.AppendUint16(zip64, 16)
			zip64 = binary.LittleEndian.AppendUint64(zip64, size)
			zip64 = binary.LittleEndian.AppendUint64(zip64, size)
		}
		hdr := start + 30 + uint64(len(r.name)) + uint64(len(zip64)) + 4
		pad := (alignment - hdr%alignment) % alignment
		extra := append(zip64, 'F', 'B', byte(pad), byte(pad>>8))
		for i := uint64(0); i < pad; i++ {
			extra = append(extra, 'Z')
		}
		s32 := uint32(min(size, u32max))
		cw.le(uint32(0x04034b50), uint16(0), uint16(0x0800), uint16(0), uint16(0), uint16(0),
			crc, s32, s32, uint16(len(r.name)), uint16(len(extra)))
		io.WriteString(cw, r.name)
		cw.Write(extra)
		if lazy != nil {
			if cw.err != nil {
				return nil, cw.err
			}
			var err error
			if crc, err = lazy.stream(cw, r.name); err != nil {
				return nil, err
			}
			patches = append(patches, crcPatch{start + 14, crc})
		} else {
			cw.Write(r.data)
		}
		cents = append(cents, centralEntry{r.name, crc, size, start})
	}
	cdStart := cw.off
	for _, c := range cents {
		var zip64 []byte
		if c.size >= u32max {
			zip64 = binary.LittleEndian.AppendUint64(zip64, c.size)
			zip64 = binary.LittleEndian.AppendUint64(zip64, c.size)
		}
		if c.off >= u32max {
			zip64 = binary.LittleEndian.AppendUint64(zip64, c.off)
		}
		if len(zip64) > 0 {
			zip64 = append(binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, 1), uint16(len(zip64))), zip64...)
		}
		s32 := uint32(min(c.size, u32max))
		cw.le(uint32(0x02014b50), uint16(0), uint16(0), uint16(0x0800), uint16(0), uint16(0), uint16(0),
			c.crc, s32, s32, uint16(len(c.name)), uint16(len(zip64)), uint16(0), uint16(0), uint16(0),
			uint32(0), uint32(min(c.off, u32max)))
		io.WriteString(cw, c.name)
		cw.Write(zip64)
	}
	cdEnd := cw.off
	n := uint64(len(cents))
	cw.le(uint32(0x06064b50), uint64(44), uint16(0), uint16(0), uint32(0), uint32(0),
		n, n, cdEnd-cdStart, cdStart)
	cw.le(uint32(0x07064b50), uint32(0), cdEnd, uint32(1))
	cw.le(uint32(0x06054b50), uint16(0), uint16(0), uint16(min(n, 0xFFFF)), uint16(min(n, 0xFFFF)),
		uint32(min(cdEnd-cdStart, u32max)), uint32(min(cdStart, u32max)), uint16(0))
	return patches, cw.err
}

// Pickle writes v as a plain pickle (protocol 2) without tensors, as pickle.dumps would:
// e.g. PyTorch's distributed-checkpoint .metadata.
func Pickle(v any) ([]byte, error) {
	p := newPickler()
	p.op(opProto, 2)
	if err := p.save(v); err != nil {
		return nil, err
	}
	if len(p.storages) > 0 {
		return nil, fmt.Errorf("torchpickle: a plain pickle cannot hold tensors")
	}
	p.op(opStop)
	return p.b.Bytes(), nil
}
