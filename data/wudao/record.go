package wudao

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Content returns the "content" string of one element of a raw WuDao array. Pai's script
// indexes obj['content'] and would stop with a KeyError or TypeError on anything else; here
// the caller gets an error naming what is wrong so it can report the record and go on.
func Content(element []byte) (string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(element, &obj); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := obj["content"]
	if !ok {
		return "", fmt.Errorf(`no "content" field`)
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf(`"content" is %s, want a string`, jsonKind(raw))
	}
	return s, nil
}

// jsonKind names the JSON type of a raw value for error messages.
func jsonKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// AppendCleanedLine appends the line preprocess_wudao2.py writes for a cleaned text, with its
// newline: json.dumps({'instruction': "", 'input': "", key: text}, ensure_ascii=False) + '\n'.
func AppendCleanedLine(dst []byte, key, text string) []byte {
	dst = append(dst, `{"instruction": "", "input": "", `...)
	dst = AppendPyJSONString(dst, key)
	dst = append(dst, ": "...)
	dst = AppendPyJSONString(dst, text)
	return append(dst, "}\n"...)
}

// AppendPyJSONString appends s as Python's json.dumps(s, ensure_ascii=False) writes it:
// '"' and '\\' escaped, \n \r \t \b \f by name, other control characters below 0x20 as
// \u00XX with lower-case hex, everything else (DEL and non-ASCII included) as is.
func AppendPyJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			if c < 0x20 {
				dst = append(dst, `\u00`...)
				if c < 0x10 {
					dst = append(dst, '0')
				}
				dst = strconv.AppendUint(dst, uint64(c), 16)
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}
