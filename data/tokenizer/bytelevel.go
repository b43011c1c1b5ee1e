package tokenizer

import "unicode/utf8"

// GPT-2's byte↔unicode map (bytes_to_unicode in openai/gpt-2 encoder.py): the printable
// bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' map to the rune of the same value; the other 68
// bytes map, in increasing byte order, to U+0100, U+0101, …. Byte-level BPE vocabularies
// (GPT-2, Llama-3, Qwen, cl100k as HF json) spell their tokens with these runes.
var byteToRune [256]rune

// runeToByte inverts byteToRune; runes outside it map to -1.
var runeToByte = map[rune]int{}

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = b
	}
}

// byteLevelDecode turns a byte-level token spelling back into its raw bytes. ok is false
// when some rune is not in the map (HF's ByteLevel decoder then keeps the token's UTF-8).
func byteLevelDecode(tok string) (raw []byte, ok bool) {
	raw = make([]byte, 0, len(tok))
	for _, r := range tok {
		b, found := runeToByte[r]
		if !found {
			return nil, false
		}
		raw = append(raw, byte(b))
	}
	return raw, true
}

// byteLevelDecodeString is byteLevelDecode falling back to the token's own UTF-8, as
// HF's ByteLevel decoder does token by token.
func byteLevelDecodeString(tok string) string {
	if raw, ok := byteLevelDecode(tok); ok {
		return string(raw)
	}
	return tok
}

// lossyUTF8 converts bytes to a string the way Rust's String::from_utf8_lossy does, which
// HF tokenizers' decoders use: each maximal ill-formed subpart (a truncated but otherwise
// valid prefix of a sequence, or one stray byte) becomes one U+FFFD. Go's
// strings.ToValidUTF8 differs (it folds whole runs into one U+FFFD).
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			out = append(out, b[i])
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size == 3 {
			out = append(out, b[i:i+size]...)
			i += size
			continue
		}
		out = append(out, "\uFFFD"...)
		i += maximalSubpart(b[i:])
	}
	return string(out)
}

// maximalSubpart is the length of the ill-formed sequence at the start of b, per Unicode
// §3.9 "maximal subpart": the longest prefix that is a valid start of a UTF-8 sequence,
// or 1 when the first byte cannot start one.
func maximalSubpart(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		x := b[n]
		if x < lo || x > hi {
			break
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}
