package torchpickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/big"
)

// legacyMagic is torch's MAGIC_NUMBER, the first pickle of a pre-1.6 torch.save file.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

// decodeLegacy reads torch's pre-1.6 (non-zip) format: five things back to back —
// pickles of the magic number, the protocol version (1001) and sys_info, the main
// pickle (storages as persistent ids ('storage', type, key, location, numel,
// view_metadata)), a pickle of the sorted storage keys, then per key an int64 element
// count followed by the raw little-endian bytes.
func decodeLegacy(data []byte) (any, error) {
	pos := 0
	next := func(what string) (any, error) {
		end, err := skipPickle(data, pos)
		if err != nil {
			return nil, fmt.Errorf("legacy format %s: %w", what, err)
		}
		v, err := unpickle(data[pos:end], nil)
		if err != nil {
			return nil, fmt.Errorf("legacy format %s: %w", what, err)
		}
		pos = end
		return v, nil
	}
	magic, err := next("magic number")
	if err != nil {
		return nil, err
	}
	if m, ok := magic.(*big.Int); !ok || m.Cmp(legacyMagic) != 0 {
		return nil, fmt.Errorf("not a torch.save file: no zip header and no legacy magic number")
	}
	if proto, err := next("protocol version"); err != nil {
		return nil, err
	} else if proto != int64(1001) {
		return nil, fmt.Errorf("legacy format protocol version %v, want 1001", proto)
	}
	info, err := next("sys_info")
	if err != nil {
		return nil, err
	}
	if d, ok := info.(*Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le != true {
			return nil, fmt.Errorf("legacy file was written on a big-endian machine")
		}
	}
	mainStart := pos
	mainEnd, err := skipPickle(data, pos)
	if err != nil {
		return nil, fmt.Errorf("legacy format main pickle: %w", err)
	}
	pos = mainEnd
	keysV, err := next("storage keys")
	if err != nil {
		return nil, err
	}
	keys, ok := keysV.([]any)
	if !ok {
		return nil, fmt.Errorf("legacy format storage keys are %s, not a list", typeName(keysV))
	}
	// Storage sizes come from the persistent ids, so first collect them: the element
	// size of each key is needed to step over its bytes.
	raw := map[string][]byte{}
	sections := make([]string, len(keys))
	for i, k := range keys {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("legacy format storage key %d is %s", i, typeName(k))
		}
		sections[i] = s
	}
	elemSize := map[string]int{}
	probe := func(pid any) (any, error) {
		t, ok := pid.(Tuple)
		if !ok || len(t) != 6 {
			return nil, fmt.Errorf("legacy persistent id %v", pid)
		}
		cls, _ := t[1].(Global)
		key, _ := t[2].(string)
		dt, ok := storageDTypes[cls.Name]
		if !ok {
			return nil, fmt.Errorf("storage class %s is not supported", cls)
		}
		elemSize[key] = dt.Size()
		return &storage{dt: dt, key: key}, nil
	}
	if _, err := unpickleProbe(data[mainStart:mainEnd], probe); err != nil {
		return nil, fmt.Errorf("legacy format main pickle: %w", err)
	}
	for _, key := range sections {
		if pos+8 > len(data) {
			return nil, fmt.Errorf("legacy format: storage %q truncated", key)
		}
		n := binary.LittleEndian.Uint64(data[pos:])
		pos += 8
		es, ok := elemSize[key]
		if !ok {
			return nil, fmt.Errorf("legacy format: storage %q is not referenced by the pickle", key)
		}
		if n > uint64(len(data)-pos)/uint64(es) {
			return nil, fmt.Errorf("legacy format: storage %q of %d elements runs past the end", key, n)
		}
		nb := int(n) * es
		raw[key] = data[pos : pos+nb : pos+nb]
		pos += nb
	}
	storages := map[string]*storage{}
	load := func(pid any) (any, error) {
		t, ok := pid.(Tuple)
		if !ok || len(t) != 6 {
			return nil, fmt.Errorf("legacy persistent id %v", pid)
		}
		if t[5] != nil {
			return nil, fmt.Errorf("legacy storage views (view_metadata %v) are not supported", t[5])
		}
		return loadStorage(t[:5], storages, func(key string) ([]byte, error) {
			b, ok := raw[key]
			if !ok {
				return nil, fmt.Errorf("storage %q has no data section", key)
			}
			return b, nil
		})
	}
	return unpickle(data[mainStart:mainEnd], load)
}

// unpickleProbe runs a pickle whose tensors are not needed: rebuilt tensors on
// data-less storages come back as nil.
func unpickleProbe(data []byte, load func(any) (any, error)) (any, error) {
	u := &unpickler{data: data, memo: map[int64]any{}, persistentLoad: load, probe: true}
	return u.run()
}

// skipPickle returns the offset just past the STOP of the pickle starting at pos,
// stepping over opcode arguments without executing anything.
func skipPickle(data []byte, pos int) (int, error) {
	for pos < len(data) {
		op := data[pos]
		pos++
		n := 0
		switch op {
		case opStop:
			return pos, nil
		case opProto, opBinInt1, opBinGet, opBinPut:
			n = 1
		case opBinInt2:
			n = 2
		case opBinInt, opLongBinGet, opLongBinPut:
			n = 4
		case opBinFloat, opFrame:
			n = 8
		case opShortBinUni, opShortBinString, opShortBinBytes, opLong1:
			if pos >= len(data) {
				return 0, fmt.Errorf("truncated pickle")
			}
			n = 1 + int(data[pos])
		case opBinUnicode, opBinString, opBinBytes, opLong4:
			if pos+4 > len(data) {
				return 0, fmt.Errorf("truncated pickle")
			}
			n = 4 + int(binary.LittleEndian.Uint32(data[pos:]))
		case opBinUnicode8, opBinBytes8, opByteArray8:
			if pos+8 > len(data) {
				return 0, fmt.Errorf("truncated pickle")
			}
			l := binary.LittleEndian.Uint64(data[pos:])
			if l > uint64(len(data)) {
				return 0, fmt.Errorf("truncated pickle")
			}
			n = 8 + int(l)
		case opInt, opLong, opFloat, opString, opUnicode, opPut, opGet, opPersID, opGlobal:
			lines := 1
			if op == opGlobal {
				lines = 2
			}
			for ; lines > 0; lines-- {
				i := bytes.IndexByte(data[pos:], '\n')
				if i < 0 {
					return 0, fmt.Errorf("truncated pickle")
				}
				pos += i + 1
			}
		case opMark, opPop, opPopMark, opDup, opNone, opNewTrue, opNewFalse, opReduce, opBuild,
			opAppend, opAppends, opDict, opEmptyDict, opEmptyList, opEmptyTuple, opList, opSetItem,
			opSetItems, opTuple, opTuple1, opTuple2, opTuple3, opNewObj, opNewObjEx, opStackGlobal,
			opMemoize, opEmptySet, opAddItems, opFrozenSet, opBinPersID:
		default:
			return 0, fmt.Errorf("unsupported opcode 0x%02x at byte %d", op, pos-1)
		}
		if n > len(data)-pos {
			return 0, fmt.Errorf("truncated pickle")
		}
		pos += n
	}
	return 0, fmt.Errorf("pickle has no STOP")
}
