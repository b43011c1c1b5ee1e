package gpt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
)

// KV is one key/value of an OrderedMap.
type KV struct {
	Key   string
	Value any
}

// OrderedMap is a JSON object that keeps its key order, like the Python OrderedDicts Megatron
// hashes. Values are nil, bool, int, int64, float64, string, json.Number, []any or OrderedMap.
type OrderedMap []KV

// UnmarshalJSON decodes an object keeping key order; numbers stay json.Number so that ints and
// floats print as they were written.
func (m *OrderedMap) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeOrdered(dec)
	if err != nil {
		return err
	}
	om, ok := v.(OrderedMap)
	if !ok {
		return fmt.Errorf("gpt: expected a JSON object, got %T", v)
	}
	*m = om
	return nil
}

func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			om := OrderedMap{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				om = append(om, KV{kt.(string), v})
			}
			_, err := dec.Token()
			return om, err
		}
		list := []any{}
		for dec.More() {
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err := dec.Token()
		return list, err
	}
	return tok, nil
}

// PyJSONDumps renders v like Python's json.dumps(v, indent=4): items on their own lines
// indented by four spaces per level, ", " never used between items, ": " after keys, ASCII-only
// strings, floats as Python's repr.
func PyJSONDumps(v any) (string, error) {
	var sb strings.Builder
	if err := pyDump(&sb, v, 0); err != nil {
		return "", err
	}
	return sb.String(), nil
}

func pyDump(sb *strings.Builder, v any, level int) error {
	indent := func(l int) { sb.WriteByte('\n'); sb.WriteString(strings.Repeat("    ", l)) }
	switch x := v.(type) {
	case nil:
		sb.WriteString("null")
	case bool:
		sb.WriteString(strconv.FormatBool(x))
	case int:
		sb.WriteString(strconv.Itoa(x))
	case int64:
		sb.WriteString(strconv.FormatInt(x, 10))
	case uint32:
		sb.WriteString(strconv.FormatUint(uint64(x), 10))
	case float64:
		sb.WriteString(PyFloatRepr(x))
	case json.Number:
		s := string(x)
		if strings.ContainsAny(s, ".eE") {
			f, err := x.Float64()
			if err != nil {
				return fmt.Errorf("gpt: number %q: %w", s, err)
			}
			s = PyFloatRepr(f)
		}
		sb.WriteString(s)
	case string:
		sb.WriteString(pyString(x))
	case []any:
		if len(x) == 0 {
			sb.WriteString("[]")
			return nil
		}
		sb.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				sb.WriteByte(',')
			}
			indent(level + 1)
			if err := pyDump(sb, e, level+1); err != nil {
				return err
			}
		}
		indent(level)
		sb.WriteByte(']')
	case OrderedMap:
		if len(x) == 0 {
			sb.WriteString("{}")
			return nil
		}
		sb.WriteByte('{')
		for i, kv := range x {
			if i > 0 {
				sb.WriteByte(',')
			}
			indent(level + 1)
			sb.WriteString(pyString(kv.Key))
			sb.WriteString(": ")
			if err := pyDump(sb, kv.Value, level+1); err != nil {
				return err
			}
		}
		indent(level)
		sb.WriteByte('}')
	default:
		return fmt.Errorf("gpt: cannot render %T as Python JSON", v)
	}
	return nil
}

// pyString is json.dumps of a str with ensure_ascii=True.
func pyString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == '\b':
			sb.WriteString(`\b`)
		case r == '\f':
			sb.WriteString(`\f`)
		case r < 0x20 || (r >= 0x7f && r <= 0xffff):
			fmt.Fprintf(&sb, `\u%04x`, r)
		case r > 0xffff:
			a, b := utf16.EncodeRune(r)
			fmt.Fprintf(&sb, `\u%04x\u%04x`, a, b)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// PyFloatRepr is Python's repr(float) (as json.dumps prints floats): the shortest round-trip
// digits, in fixed notation with at least one fractional digit when the decimal exponent is in
// (-4, 16], else in exponent notation with a sign and at least two exponent digits
// ("1e-05", "1.5e+16"). Non-finite values print as JSON's Infinity, -Infinity, NaN.
func PyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // "-d.dddde±XX"
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1 // value = 0.digits * 10**decpt
	if f == 0 {
		return sign + "0.0"
	}
	if decpt <= -4 || decpt > 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	}
	return sign + digits[:decpt] + "." + digits[decpt:]
}
