package torchpickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"
)

// Pickle opcodes (Python's Lib/pickle.py names).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opLong           = 'L'
	opBinInt2        = 'M'
	opNone           = 'N'
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opGet            = 'g'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opPut            = 'p'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opLong4          = 0x8b
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opAddItems       = 0x90
	opFrozenSet      = 0x91
	opNewObjEx       = 0x92
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	opByteArray8     = 0x96
)

// pyList is a list while unpickling: APPEND mutates it in place, so the stack and the
// memo must share it. finalize turns every pyList into a []any.
type pyList struct{ items []any }

// pySet is a set under construction (EMPTY_SET + ADDITEMS).
type pySet struct{ items []any }

// unpickler is a pickle machine. Constructors for globals live in globals.go.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[int64]any
	// persistentLoad resolves BINPERSID ids (torch storages).
	persistentLoad func(pid any) (any, error)
	// probe skips tensor rebuilding (legacy format: storage sizes are learnt first).
	probe bool
}

// unpickle runs the pickle program in data and returns the value it builds.
func unpickle(data []byte, persistentLoad func(any) (any, error)) (any, error) {
	u := &unpickler{data: data, memo: map[int64]any{}, persistentLoad: persistentLoad}
	v, err := u.run()
	if err != nil {
		return nil, err
	}
	return finalize(v, map[any]any{}), nil
}

func (u *unpickler) errf(format string, args ...any) error {
	return fmt.Errorf("pickle byte %d: "+format, append([]any{u.pos}, args...)...)
}

func (u *unpickler) need(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, u.errf("truncated: need %d bytes, %d left", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) line() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", u.errf("truncated: unterminated text argument")
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && n <= u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	v := u.stack[n-1]
	u.stack = u.stack[:n-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && n <= u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	return u.stack[n-1], nil
}

// popMark returns the items pushed since the last MARK and drops the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoPut(i int64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[i] = v
	return nil
}

func (u *unpickler) memoGet(i int64) error {
	v, ok := u.memo[i]
	if !ok {
		return u.errf("memo key %d not found", i)
	}
	u.push(v)
	return nil
}

func (u *unpickler) run() (any, error) {
	for {
		b, err := u.need(1)
		if err != nil {
			return nil, err
		}
		op := b[0]
		if op == opStop {
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		}
		if err := u.step(op); err != nil {
			return nil, err
		}
	}
}

func (u *unpickler) uint(n int) (uint64, error) {
	b, err := u.need(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.LittleEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	}
	return binary.LittleEndian.Uint64(b), nil
}

// sized reads a length of n bytes, then that many bytes.
func (u *unpickler) sized(n int) ([]byte, error) {
	l, err := u.uint(n)
	if err != nil {
		return nil, err
	}
	if l > uint64(len(u.data)-u.pos) {
		return nil, u.errf("truncated: length %d exceeds the %d bytes left", l, len(u.data)-u.pos)
	}
	return u.need(int(l))
}

func (u *unpickler) step(op byte) error {
	switch op {
	case opProto:
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		if v > 5 {
			return u.errf("unsupported pickle protocol %d", v)
		}
	case opFrame:
		_, err := u.uint(8)
		return err
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		if len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1] {
			_, err := u.popMark()
			return err
		}
		_, err := u.pop()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opDup:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.push(v)
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		v, err := u.uint(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(uint32(v))))
	case opBinInt1:
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opBinInt2:
		v, err := u.uint(2)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opLong1, opLong4:
		n := 1
		if op == opLong4 {
			n = 4
		}
		b, err := u.sized(n)
		if err != nil {
			return err
		}
		u.push(decodeLong(b))
	case opInt:
		s, err := u.line()
		if err != nil {
			return err
		}
		switch s {
		case "01":
			u.push(true)
		case "00":
			u.push(false)
		default:
			v, err := parseIntText(s)
			if err != nil {
				return u.errf("INT %q: %v", s, err)
			}
			u.push(v)
		}
	case opLong:
		s, err := u.line()
		if err != nil {
			return err
		}
		if len(s) > 0 && s[len(s)-1] == 'L' {
			s = s[:len(s)-1]
		}
		v, err := parseIntText(s)
		if err != nil {
			return u.errf("LONG %q: %v", s, err)
		}
		u.push(v)
	case opFloat:
		s, err := u.line()
		if err != nil {
			return err
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return u.errf("FLOAT %q: %v", s, err)
		}
		u.push(f)
	case opBinFloat:
		b, err := u.need(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opBinUnicode, opShortBinUni, opBinUnicode8:
		n := map[byte]int{opBinUnicode: 4, opShortBinUni: 1, opBinUnicode8: 8}[op]
		b, err := u.sized(n)
		if err != nil {
			return err
		}
		if !utf8.Valid(b) {
			return u.errf("string is not valid UTF-8")
		}
		u.push(string(b))
	case opBinString, opShortBinString:
		// Python 2 str; torch.load decodes it with encoding="utf-8" by default.
		n := 4
		if op == opShortBinString {
			n = 1
		}
		b, err := u.sized(n)
		if err != nil {
			return err
		}
		u.push(string(b))
	case opString:
		s, err := u.line()
		if err != nil {
			return err
		}
		v, err := unquotePy(s)
		if err != nil {
			return u.errf("STRING %q: %v", s, err)
		}
		u.push(v)
	case opUnicode:
		s, err := u.line()
		if err != nil {
			return err
		}
		v, err := rawUnicodeEscape(s)
		if err != nil {
			return u.errf("UNICODE %q: %v", s, err)
		}
		u.push(v)
	case opBinBytes, opShortBinBytes, opBinBytes8, opByteArray8:
		n := map[byte]int{opBinBytes: 4, opShortBinBytes: 1, opBinBytes8: 8, opByteArray8: 8}[op]
		b, err := u.sized(n)
		if err != nil {
			return err
		}
		u.push(append([]byte(nil), b...))
	case opEmptyList:
		u.push(&pyList{})
	case opList:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return err
		}
		return u.appendTo([]any{v})
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.appendTo(items)
	case opEmptyTuple:
		u.push(Tuple{})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(Tuple(items))
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if len(u.stack) < n || (len(u.marks) > 0 && len(u.stack)-n < u.marks[len(u.marks)-1]) {
			return u.errf("stack underflow")
		}
		t := append(Tuple(nil), u.stack[len(u.stack)-n:]...)
		u.stack = u.stack[:len(u.stack)-n]
		u.push(t)
	case opEmptyDict:
		u.push(NewDict(false))
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := NewDict(false)
		if err := u.setItems(d, items); err != nil {
			return err
		}
		u.push(d)
	case opSetItem:
		v, err := u.pop()
		if err != nil {
			return err
		}
		k, err := u.pop()
		if err != nil {
			return err
		}
		return u.setItemsOnTop([]any{k, v})
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.setItemsOnTop(items)
	case opEmptySet:
		u.push(&pySet{})
	case opAddItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		s, err := u.top()
		if err != nil {
			return err
		}
		ps, ok := s.(*pySet)
		if !ok {
			return u.errf("ADDITEMS on %s", typeName(s))
		}
		ps.items = append(ps.items, items...)
	case opFrozenSet:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(Set(items))
	case opPut:
		s, err := u.line()
		if err != nil {
			return err
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return u.errf("PUT %q: %v", s, err)
		}
		return u.memoPut(i)
	case opBinPut, opLongBinPut:
		n := 1
		if op == opLongBinPut {
			n = 4
		}
		i, err := u.uint(n)
		if err != nil {
			return err
		}
		return u.memoPut(int64(i))
	case opMemoize:
		return u.memoPut(int64(len(u.memo)))
	case opGet:
		s, err := u.line()
		if err != nil {
			return err
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return u.errf("GET %q: %v", s, err)
		}
		return u.memoGet(i)
	case opBinGet, opLongBinGet:
		n := 1
		if op == opLongBinGet {
			n = 4
		}
		i, err := u.uint(n)
		if err != nil {
			return err
		}
		return u.memoGet(int64(i))
	case opGlobal:
		mod, err := u.line()
		if err != nil {
			return err
		}
		name, err := u.line()
		if err != nil {
			return err
		}
		g, err := findGlobal(mod, name)
		if err != nil {
			return u.errf("%v", err)
		}
		u.push(g)
	case opStackGlobal:
		name, err := u.pop()
		if err != nil {
			return err
		}
		mod, err := u.pop()
		if err != nil {
			return err
		}
		ms, ok1 := mod.(string)
		ns, ok2 := name.(string)
		if !ok1 || !ok2 {
			return u.errf("STACK_GLOBAL needs two strings, got %s and %s", typeName(mod), typeName(name))
		}
		g, err := findGlobal(ms, ns)
		if err != nil {
			return u.errf("%v", err)
		}
		u.push(g)
	case opReduce:
		args, err := u.pop()
		if err != nil {
			return err
		}
		fn, err := u.pop()
		if err != nil {
			return err
		}
		at, ok := args.(Tuple)
		if !ok {
			return u.errf("REDUCE arguments are %s, not a tuple", typeName(args))
		}
		v, err := u.call(fn, at)
		if err != nil {
			return u.errf("%v", err)
		}
		u.push(v)
	case opNewObj, opNewObjEx:
		var kw any
		if op == opNewObjEx {
			var err error
			if kw, err = u.pop(); err != nil {
				return err
			}
		}
		args, err := u.pop()
		if err != nil {
			return err
		}
		cls, err := u.pop()
		if err != nil {
			return err
		}
		at, ok := args.(Tuple)
		if !ok {
			return u.errf("NEWOBJ arguments are %s, not a tuple", typeName(args))
		}
		if d, ok := kw.(*Dict); ok && d.Len() > 0 {
			return u.errf("NEWOBJ_EX with keyword arguments is not supported")
		}
		v, err := newObject(cls, at)
		if err != nil {
			return u.errf("%v", err)
		}
		u.push(v)
	case opBuild:
		state, err := u.pop()
		if err != nil {
			return err
		}
		obj, err := u.top()
		if err != nil {
			return err
		}
		nv, err := build(obj, state)
		if err != nil {
			return u.errf("%v", err)
		}
		u.stack[len(u.stack)-1] = nv
	case opBinPersID, opPersID:
		var pid any
		if op == opPersID {
			s, err := u.line()
			if err != nil {
				return err
			}
			pid = s
		} else {
			var err error
			if pid, err = u.pop(); err != nil {
				return err
			}
		}
		if u.persistentLoad == nil {
			return u.errf("persistent id %v without a loader", pid)
		}
		v, err := u.persistentLoad(pid)
		if err != nil {
			return u.errf("%v", err)
		}
		u.push(v)
	default:
		return u.errf("unsupported opcode 0x%02x (%q)", op, rune(op))
	}
	return nil
}

func (u *unpickler) appendTo(items []any) error {
	l, err := u.top()
	if err != nil {
		return err
	}
	switch x := l.(type) {
	case *pyList:
		x.items = append(x.items, items...)
		return nil
	}
	return u.errf("APPEND to %s", typeName(l))
}

func (u *unpickler) setItemsOnTop(items []any) error {
	d, err := u.top()
	if err != nil {
		return err
	}
	dd, ok := d.(*Dict)
	if !ok {
		return u.errf("SETITEM on %s", typeName(d))
	}
	return u.setItems(dd, items)
}

func (u *unpickler) setItems(d *Dict, items []any) error {
	if len(items)%2 != 0 {
		return u.errf("odd number of items for a dict")
	}
	for i := 0; i < len(items); i += 2 {
		k := items[i]
		if l, ok := k.(*pyList); ok {
			return u.errf("unhashable dict key (list of %d)", len(l.items))
		}
		d.Set(k, items[i+1])
	}
	return nil
}

// decodeLong decodes a little-endian two's-complement integer (LONG1/LONG4).
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if b[len(b)-1]&0x80 != 0 && len(b) < 8 {
			v |= ^uint64(0) << (8 * len(b)) // sign-extend
		}
		return int64(v)
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

func parseIntText(s string) (any, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, fmt.Errorf("not an integer")
	}
	return v, nil
}

// unquotePy decodes a protocol-0 STRING argument: a Python repr in single or double
// quotes with backslash escapes.
func unquotePy(s string) (string, error) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') || s[len(s)-1] != s[0] {
		return "", fmt.Errorf("not a quoted string")
	}
	s = s[1 : len(s)-1]
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'x':
			if i+3 > len(s) {
				return "", fmt.Errorf("short \\x escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", err
			}
			b = append(b, byte(v))
			i += 2
		default:
			b = append(b, s[i])
		}
	}
	return string(b), nil
}

// rawUnicodeEscape decodes Python's raw-unicode-escape (\uXXXX and \UXXXXXXXX).
func rawUnicodeEscape(s string) (string, error) {
	var b []rune
	for i := 0; i < len(s); {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n > len(s) {
				return "", fmt.Errorf("short \\u escape")
			}
			v, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
			if err != nil {
				return "", err
			}
			b = append(b, rune(v))
			i += 2 + n
			continue
		}
		b = append(b, rune(s[i])) // raw-unicode-escape bytes are Latin-1
		i++
	}
	return string(b), nil
}

// finalize replaces the unpickler's mutable list and set builders with []any and Set,
// recursively, keeping shared containers shared.
func finalize(v any, seen map[any]any) any {
	switch x := v.(type) {
	case *pyList:
		if r, ok := seen[x]; ok {
			return r
		}
		out := make([]any, len(x.items))
		seen[x] = out
		for i, it := range x.items {
			out[i] = finalize(it, seen)
		}
		return out
	case *pySet:
		if r, ok := seen[x]; ok {
			return r
		}
		out := make(Set, len(x.items))
		seen[x] = out
		for i, it := range x.items {
			out[i] = finalize(it, seen)
		}
		return out
	case Tuple:
		for i, it := range x {
			x[i] = finalize(it, seen)
		}
		return x
	case Set:
		for i, it := range x {
			x[i] = finalize(it, seen)
		}
		return x
	case *Dict:
		if _, ok := seen[x]; ok {
			return x
		}
		seen[x] = x
		for i := range x.Values {
			x.Values[i] = finalize(x.Values[i], seen)
			x.Keys[i] = finalize(x.Keys[i], seen)
		}
		if x.Attrs != nil {
			finalize(x.Attrs, seen)
		}
		return x
	case *Namespace:
		if _, ok := seen[x]; ok {
			return x
		}
		seen[x] = x
		finalize(x.Attrs, seen)
		return x
	case *Object:
		if _, ok := seen[x]; ok {
			return x
		}
		seen[x] = x
		for i := range x.Args {
			x.Args[i] = finalize(x.Args[i], seen)
		}
		x.State = finalize(x.State, seen)
		return x
	}
	return v
}
