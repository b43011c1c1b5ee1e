package main

import (
	"bufio"

	"bytes"
	"encoding/json"
	"fmt"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writeAtomic writes path atomically (internal/atomicfile) from what fill writes.
func writeAtomic(path string, fill func(io.Writer) error) error {
	err := atomicfile.Write(path, func(w *bufio.Writer) error { return fill(w) })
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// copyFileAtomic copies src to dst byte for byte, reporting each chunk to progress.
func copyFileAtomic(dst, src string, progress func(int)) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomic(dst, func(w io.Writer) error {
		buf := make([]byte, 4<<20)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				progress(n)
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", src, err)
			}
		}
	})
}

// setTopLevelInt returns the JSON object b with the value of its top-level key replaced
// by n, every other byte unchanged (key order, spacing and number spellings of
// config.json stay as Hugging Face wrote them).
func setTopLevelInt(b []byte, key string, n int) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		afterKey := int(dec.InputOffset())
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if k, _ := kt.(string); k != key {
			continue
		}
		end := int(dec.InputOffset())
		seg := b[afterKey:end]
		colon := bytes.IndexByte(seg, ':')
		if colon < 0 {
			return nil, fmt.Errorf("key %q: no colon", key)
		}
		start := afterKey + colon + 1
		for start < end && strings.ContainsRune(" \t\r\n", rune(b[start])) {
			start++
		}
		if _, err := strconv.Atoi(string(b[start:end])); err != nil {
			return nil, fmt.Errorf("%q is %s, want an integer", key, b[start:end])
		}
		out := append([]byte(nil), b[:start]...)
		out = strconv.AppendInt(out, int64(n), 10)
		return append(out, b[end:]...), nil
	}
	return nil, fmt.Errorf("no top-level %q", key)
}

// checkAddedIDs refuses tokenizer files that give ids at or above the SentencePiece
// vocabulary size (added tokens such as a [PAD] at 32000): the appended pieces take
// those ids, so the two would collide.
func checkAddedIDs(dir string, nPieces int) error {
	bad := func(file string, id int, tok string) error {
		return fmt.Errorf("%s: added token %q has id %d ≥ the %d pieces of tokenizer.model; the appended pieces would take that id (remove the added token or extend a model without it)",
			filepath.Join(dir, file), tok, id, nPieces)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil {
		var tc struct {
			Decoder map[string]struct {
				Content string `json:"content"`
			} `json:"added_tokens_decoder"`
		}
		if err := json.Unmarshal(b, &tc); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer_config.json"), err)
		}
		for k, v := range tc.Decoder {
			if id, err := strconv.Atoi(k); err == nil && id >= nPieces {
				return bad("tokenizer_config.json", id, v.Content)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "added_tokens.json")); err == nil {
		var at map[string]int
		if err := json.Unmarshal(b, &at); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, "added_tokens.json"), err)
		}
		for tok, id := range at {
			if id >= nPieces {
				return bad("added_tokens.json", id, tok)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tokenizer.json")); err == nil {
		var tj struct {
			Added []struct {
				ID      int    `json:"id"`
				Content string `json:"content"`
			} `json:"added_tokens"`
		}
		if err := json.Unmarshal(b, &tj); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer.json"), err)
		}
		for _, a := range tj.Added {
			if a.ID >= nPieces {
				return bad("tokenizer.json", a.ID, a.Content)
			}
		}
	}
	return nil
}

// skippedFile says why a file of --model-dir is not copied, "" when it is copied as is.
// Weight files in other formats would be stale next to the resized safetensors.
func skippedFile(name string) string {
	switch {
	case name == "tokenizer.json":
		return "dropped: its BPE merges cannot produce the appended pieces; tokenizer.model is the tokenizer (Hugging Face rebuilds the fast tokenizer from it)"
	case strings.HasPrefix(name, "."):
		return "hidden"
	case strings.HasPrefix(name, "pytorch_model") || strings.HasSuffix(name, ".bin") ||
		strings.HasSuffix(name, ".pt") || strings.HasSuffix(name, ".pth") ||
		strings.HasSuffix(name, ".ckpt") || strings.HasSuffix(name, ".gguf") ||
		strings.HasSuffix(name, ".h5") || strings.HasSuffix(name, ".msgpack"):
		return "weights in another format would not match the resized vocabulary"
	}
	return ""
}
