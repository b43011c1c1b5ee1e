package sft

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
)

// record is one example with its fields rendered as Python's str() would.
type record struct {
	instruction string
	input       string
	hasInput    bool // example.get('input', '') != ''
	target      string
	truthy      bool // the target value is truthy in Python (non-empty string, …)
}

// readRecords reads a JSON list (Pai's json.load) or JSON lines of objects. The target key
// is "output" when the first record has it, else "content", as LLamaRawDataset picks it.
func readRecords(path string) ([]record, string, error) {
	objs, err := readObjects(path)
	if err != nil {
		return nil, "", err
	}
	if len(objs) == 0 {
		return nil, "", fmt.Errorf("sft: %s has no records", path)
	}
	key := ""
	if _, ok := objs[0]["output"]; ok {
		key = "output"
	} else if _, ok := objs[0]["content"]; ok {
		key = "content"
	} else {
		return nil, "", fmt.Errorf(`sft: %s: record 0 has neither "output" nor "content"`, path)
	}
	recs := make([]record, len(objs))
	for i, o := range objs {
		r := &recs[i]
		field := func(name string) (string, error) {
			raw, ok := o[name]
			if !ok {
				return "", fmt.Errorf("sft: %s: record %d has no %q", path, i, name)
			}
			s, err := pyStr(raw)
			if err != nil {
				return "", fmt.Errorf("sft: %s: record %d field %q: %w", path, i, name, err)
			}
			return s, nil
		}
		if r.instruction, err = field("instruction"); err != nil {
			return nil, "", err
		}
		if raw, ok := o["input"]; ok && !(len(raw) > 0 && raw[0] == '"' && string(raw) == `""`) {
			r.hasInput = true
			if r.input, err = field("input"); err != nil {
				return nil, "", err
			}
		}
		if r.target, err = field(key); err != nil {
			return nil, "", err
		}
		r.truthy = pyTruthy(o[key])
	}
	return recs, key, nil
}

// readObjects decodes a JSON list of objects, or one object per line.
func readObjects(path string) ([]map[string]json.RawMessage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	first := byte(0)
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("sft: %s is empty", path)
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != 0xEF && c != 0xBB && c != 0xBF {
			first = c
			br.UnreadByte()
			break
		}
	}
	if first == '[' {
		var objs []map[string]json.RawMessage
		if err := json.NewDecoder(br).Decode(&objs); err != nil {
			return nil, fmt.Errorf("sft: %s: want a JSON list of objects: %w", path, err)
		}
		return objs, nil
	}
	var objs []map[string]json.RawMessage
	line := 0
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			line++
			if t := bytes.TrimSpace(b); len(t) > 0 {
				var o map[string]json.RawMessage
				if jerr := json.Unmarshal(t, &o); jerr != nil || o == nil {
					if jerr == nil {
						jerr = fmt.Errorf("not an object")
					}
					return nil, fmt.Errorf("sft: %s: line %d: %w", path, line, jerr)
				}
				objs = append(objs, o)
			}
		}
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("sft: %s: %w", path, err)
		}
	}
}

// pyStr renders a JSON value as Python's str() of its json.load value, for the value types
// prompts hold: strings, integers, booleans and null.
func pyStr(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return "", fmt.Errorf("empty value")
	case raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case string(raw) == "null":
		return "None", nil
	case string(raw) == "true":
		return "True", nil
	case string(raw) == "false":
		return "False", nil
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return strconv.FormatInt(n, 10), nil
	}
	return "", fmt.Errorf("value %s is not a string, an integer, a boolean or null", truncate(raw))
}

// pyTruthy is Python's bool() of a json.load value.
func pyTruthy(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch raw[0] {
	case '"':
		return string(raw) != `""`
	case 'n', 'f':
		return false
	case 't':
		return true
	case '[':
		var v []json.RawMessage
		return json.Unmarshal(raw, &v) == nil && len(v) > 0
	case '{':
		var v map[string]json.RawMessage
		return json.Unmarshal(raw, &v) == nil && len(v) > 0
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return err != nil || f != 0
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
