package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/data/wudao"
)

// encoder turns one record into token sequences per --json-keys key, as Megatron's
// tools/preprocess_data.py Encoder.encode does:
//
//	text = data[key]; sentences = text if isinstance(text, list) else [text]
//	for each sentence: ids = tokenizer.tokenize(sentence); if ids: doc_ids += ids; lens.append(len(ids))
//	if doc_ids and --append-eod: doc_ids.append(tokenizer.eod); lens[-1] += 1
//
// Each kept sentence is one sequence; a plain string is one sequence, so without
// --split-sentences a document is one sequence. An empty document has no sequence and still
// ends a document. In WuDao mode the record is a raw WuDao object whose "content", cleaned as
// Pai's preprocess_wudao2.py cleans it, is the text of the (single) key.
//
// Pai mode (the tokenizer type is one of Pai's, tokenizer.IsPai) follows Pai-Megatron-Patch's
// toolkits/pretrain_data_preprocessing/preprocess_data.py instead: the text is read as
// lm_dataformat yields it (a list of strings joined with "\n\n"), empty texts are filtered
// out before encoding (filter(lambda x: x, …)), and it is encoded with
// tokenizer(text, add_special_tokens=False), so without BOS, then eos with --append-eod.
//
// An encoder is shared by all workers; the tokenizer must be safe for concurrent Encode.
type encoder struct {
	tok       tokenizer.Tokenizer // nil when only the cleaned WuDao jsonl is written
	keys      []string
	appendEOD bool
	eod       int32
	wudao     bool
	jsonl     bool // WuDao: also render the cleaned jsonl line
	pai       bool // Pai's preprocess_data.py semantics (see above)
}

// keyTokens is one key's part of a document: the concatenated sequences and their lengths
// (Megatron's add_document(tensor, lengths) arguments).
type keyTokens struct {
	tokens []int32
	lens   []int
}

// doc is one encoded record. A record with err set is skipped and reported.
type doc struct {
	file  int32
	pos   int64
	array bool // pos is an element index of a JSON array, not a line number
	err   error
	keys  []keyTokens
	line  []byte // WuDao: the cleaned jsonl line
	empty bool   // every key encoded to no tokens
	drop  bool   // Pai mode: the text is empty and Pai's reader filters it out
	bytes int    // the record's size in bytes (Megatron's len(json_line))
}

// encode fills d from one record. A panic inside the tokenizer (a bug, not bad input) is
// turned into a skipped record naming it, so one odd document cannot end a long run
// without a report of which record it was.
func (e *encoder) encode(data []byte, d *doc) {
	defer func() {
		if r := recover(); r != nil {
			d.keys, d.line = nil, nil
			d.err = fmt.Errorf("internal error while encoding (please report it with this record): %v", r)
		}
	}()
	d.bytes = len(data)
	if e.wudao {
		content, err := wudao.Content(data)
		if err != nil {
			d.err = err
			return
		}
		text := wudao.Clean(content)
		if e.jsonl {
			d.line = wudao.AppendCleanedLine(nil, e.keys[0], text)
		}
		d.empty = text == ""
		d.drop = e.pai && text == ""
		if e.tok != nil && !d.drop {
			d.keys = []keyTokens{e.tokenize([]string{text})}
		}
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		d.err = fmt.Errorf("invalid JSON: %w", err)
		if obj == nil {
			var v any
			if json.Unmarshal(data, &v) == nil {
				d.err = fmt.Errorf("the record is %s, want a JSON object", kindOf(data))
			}
		}
		return
	}
	d.keys = make([]keyTokens, len(e.keys))
	d.empty = true
	for k, key := range e.keys {
		raw, ok := obj[key]
		if !ok {
			d.err = fmt.Errorf("no key %q (--json-keys)", key)
			return
		}
		sentences, err := textOf(raw)
		if err != nil {
			d.err = fmt.Errorf("key %q: %w", key, err)
			return
		}
		if e.pai {
			text := strings.Join(sentences, "\n\n")
			if text == "" {
				d.drop, d.keys = true, nil
				return
			}
			sentences = []string{text}
		}
		d.keys[k] = e.tokenize(sentences)
		if len(d.keys[k].tokens) > 0 {
			d.empty = false
		}
	}
}

// tokenize encodes the sentences of one key: with Megatron's tokenizer.tokenize (Encode), or
// in Pai mode as Pai's preprocess_data.py does, tokenizer(text, add_special_tokens=False).
func (e *encoder) tokenize(sentences []string) keyTokens {
	var kt keyTokens
	for _, s := range sentences {
		var ids []int
		if e.pai {
			ids = tokenizer.EncodeNoSpecial(e.tok, s)
		} else {
			ids = e.tok.Encode(s)
		}
		if len(ids) == 0 {
			continue
		}
		for _, id := range ids {
			kt.tokens = append(kt.tokens, int32(id))
		}
		kt.lens = append(kt.lens, len(ids))
	}
	if len(kt.tokens) > 0 && e.appendEOD {
		kt.tokens = append(kt.tokens, e.eod)
		kt.lens[len(kt.lens)-1]++
	}
	return kt
}

// textOf decodes a key's value: a string, or a list of strings (sentences).
func textOf(raw json.RawMessage) ([]string, error) {
	if len(raw) > 0 {
		switch raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, err
			}
			return []string{s}, nil
		case '[':
			var ss []string
			if err := json.Unmarshal(raw, &ss); err != nil {
				return nil, errors.New("is a list that is not all strings, want a string or a list of strings")
			}
			return ss, nil
		}
	}
	return nil, fmt.Errorf("is %s, want a string or a list of strings", kindOf(raw))
}

// kindOf names the JSON type of a raw value.
func kindOf(raw []byte) string {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return "an object"
		case '[':
			return "a list"
		case '"':
			return "a string"
		case 'n':
			return "null"
		case 't', 'f':
			return "a boolean"
		}
		return "a number"
	}
	return "empty"
}
