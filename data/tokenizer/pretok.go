package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written scanners equivalent to the pre-tokenizer regexes of the byte-level
// tokenizers, as Oniguruma (HF tokenizers) runs them: alternatives are tried in order at
// each position and the first that matches wins (leftmost-first, with backtracking).
// They replace a regex engine because Go's regexp has no lookahead and a scanner is
// several times faster than a backtracking engine.
//
// Character classes: \p{L} is unicode.IsLetter, \p{N} is unicode.IsNumber, and \s is the
// Unicode White_Space property (Oniguruma's \s: it includes U+0085, U+00A0, U+2000–U+200A,
// U+2028/9, U+3000 and excludes U+200B, U+FEFF, U+180E). Go's unicode tables are of a
// newer Unicode version than some peers; only characters assigned since differ.

// Llama3Pattern is the pre-tokenizer regex of Llama-3 and cl100k_base (tiktoken "v2").
const Llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// QwenPattern is Llama3Pattern with single digits (Qwen2/Qwen3).
const QwenPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// GPT2Pattern is GPT-2's regex (HF ByteLevel use_regex=true, tiktoken "r50k"/"gpt2").
const GPT2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// charClass bits.
const (
	clsL  = 1 << iota // \p{L}
	clsN              // \p{N}
	clsWS             // \s
	clsNL             // \r or \n
)

// bmpClass holds the class bits of every rune of the Basic Multilingual Plane, built
// once at init (read-only after) so the scanners classify CJK text by one load.
var bmpClass [0x10000]uint8

func init() {
	for r := rune(0); r < 0x10000; r++ {
		bmpClass[r] = runeClass(r)
	}
}

func runeClass(r rune) uint8 {
	var k uint8
	if unicode.IsLetter(r) {
		k |= clsL
	}
	if unicode.IsNumber(r) {
		k |= clsN
	}
	if unicode.Is(unicode.White_Space, r) {
		k |= clsWS
	}
	if r == '\r' || r == '\n' {
		k |= clsNL
	}
	return k
}

// classAt decodes the rune at s[i:] and returns its class bits and width. Invalid UTF-8
// reads as U+FFFD (a symbol), one byte wide.
func classAt(s string, i int) (uint8, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return bmpClass[c], 1
	}
	if c >= 0xE0 && c < 0xF0 && i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80 {
		r := rune(c&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F)
		if r >= 0x800 && (r < 0xD800 || r > 0xDFFF) {
			return bmpClass[r], 3
		}
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	if r < 0x10000 {
		return bmpClass[r], w
	}
	return runeClass(r), w
}

// foldS reports whether s[i:] starts with a letter matching want case-insensitively
// (Unicode simple case folding, so U+017F ſ matches 's' and U+212A K matches 'k').
func foldAt(s string, i int, want byte) (int, bool) {
	if i >= len(s) {
		return 0, false
	}
	c := s[i]
	if c < utf8.RuneSelf {
		return 1, c|0x20 == want
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return w, (r == 0x17F && want == 's') || (r == 0x212A && want == 'k')
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) (or the case-sensitive form) at s[i]
// == '\” and returns the match length, 0 if none.
func contraction(s string, i int, fold bool) int {
	j := i + 1
	if j >= len(s) {
		return 0
	}
	one := func(k int, want byte) (int, bool) {
		if fold {
			return foldAt(s, k, want)
		}
		if k < len(s) && s[k] == want {
			return 1, true
		}
		return 0, false
	}
	for _, c := range []byte{'s', 't'} {
		if w, ok := one(j, c); ok {
			return 1 + w
		}
	}
	for _, p := range [][2]byte{{'r', 'e'}, {'v', 'e'}} {
		if w1, ok := one(j, p[0]); ok {
			if w2, ok := one(j+w1, p[1]); ok {
				return 1 + w1 + w2
			}
		}
	}
	if w, ok := one(j, 'm'); ok {
		return 1 + w
	}
	if w1, ok := one(j, 'l'); ok {
		if w2, ok := one(j+w1, 'l'); ok {
			return 1 + w1 + w2
		}
	}
	if w, ok := one(j, 'd'); ok {
		return 1 + w
	}
	return 0
}

// runOf returns the end of the run of runes starting at i whose class satisfies keep.
func runOf(s string, i int, keep func(uint8) bool) int {
	for i < len(s) {
		k, w := classAt(s, i)
		if !keep(k) {
			break
		}
		i += w
	}
	return i
}

func isL(k uint8) bool     { return k&clsL != 0 }
func isN(k uint8) bool     { return k&clsN != 0 }
func isWS(k uint8) bool    { return k&clsWS != 0 }
func isOther(k uint8) bool { return k&(clsL|clsN|clsWS) == 0 }
func isNL(k uint8) bool    { return k&clsNL != 0 }

// wsMatch handles the whitespace alternatives at i (s[i] is whitespace):
// `\s*[\r\n]+` (only when withNL), then `\s+(?!\S)`, then `\s+`.
func wsMatch(s string, i int, withNL bool) int {
	end := i
	lastNL := -1
	runes := 0
	for end < len(s) {
		k, w := classAt(s, end)
		if !isWS(k) {
			break
		}
		if withNL && isNL(k) {
			lastNL = end + w
		}
		end += w
		runes++
	}
	if lastNL > 0 {
		return lastNL
	}
	if end == len(s) || runes < 2 {
		return end
	}
	_, w := utf8.DecodeLastRuneInString(s[:end])
	return end - w
}

// MegatronTikTokenV1Pattern is Megatron's PATTERN_TIKTOKEN (--tiktoken-pattern v1).
// Its possessive quantifiers change nothing here, and `\s*[\r\n]` matches what
// `\s*[\r\n]+` does, so it is QwenPattern without the contractions.
const MegatronTikTokenV1Pattern = `[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`

// MegatronTikTokenV2Pattern is Megatron's PATTERN_TIKTOKEN_V2 (--tiktoken-pattern v2);
// it has no hand-written scanner and runs on regexp2.
const MegatronTikTokenV2Pattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// scannerFor returns the hand-written scanner equivalent to a pre-tokenizer regex whose
// matches are kept as words, if there is one.
func scannerFor(pattern string) (pretokenizer, bool) {
	switch pattern {
	case Llama3Pattern:
		return func(s string, y func(string)) { splitLlama3(s, 3, true, y) }, true
	case QwenPattern:
		return func(s string, y func(string)) { splitLlama3(s, 1, true, y) }, true
	case MegatronTikTokenV1Pattern:
		return func(s string, y func(string)) { splitLlama3(s, 1, false, y) }, true
	case GPT2Pattern:
		return splitGPT2, true
	case digitTriplesPattern:
		return splitDigitTriples, true
	}
	return nil, false
}

// splitLlama3 yields the matches of Llama3Pattern (maxDigits 3) or QwenPattern
// (maxDigits 1) over s, in order; together they cover s. Without contractions it is
// MegatronTikTokenV1Pattern.
func splitLlama3(s string, maxDigits int, contractions bool, yield func(string)) {
	for i := 0; i < len(s); {
		end := llama3Match(s, i, maxDigits, contractions)
		if end <= i { // cannot happen (every alternative consumes a rune); never loop
			_, w := utf8.DecodeRuneInString(s[i:])
			end = i + w
		}
		yield(s[i:end])
		i = end
	}
}

func llama3Match(s string, i int, maxDigits int, contractions bool) int {
	if contractions && s[i] == '\'' {
		if n := contraction(s, i, true); n > 0 {
			return i + n
		}
	}
	k, w := classAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isL(k) {
		return runOf(s, i+w, isL)
	}
	if !isN(k) && !isNL(k) && i+w < len(s) {
		if k2, _ := classAt(s, i+w); isL(k2) {
			return runOf(s, i+w, isL)
		}
	}
	// \p{N}{1,maxDigits}
	if isN(k) {
		end := i + w
		for n := 1; n < maxDigits && end < len(s); n++ {
			k2, w2 := classAt(s, end)
			if !isN(k2) {
				break
			}
			end += w2
		}
		return end
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	j := i
	if s[i] == ' ' && i+1 < len(s) {
		if k2, _ := classAt(s, i+1); isOther(k2) {
			j = i + 1
		}
	}
	if kj, _ := classAt(s, j); isOther(kj) {
		end := runOf(s, j, isOther)
		for end < len(s) && (s[end] == '\r' || s[end] == '\n') {
			end++
		}
		return end
	}
	return wsMatch(s, i, true)
}

// splitGPT2 yields the matches of GPT2Pattern over s.
func splitGPT2(s string, yield func(string)) {
	for i := 0; i < len(s); {
		end := gpt2Match(s, i)
		if end <= i { // cannot happen (every alternative consumes a rune); never loop
			_, w := utf8.DecodeRuneInString(s[i:])
			end = i + w
		}
		yield(s[i:end])
		i = end
	}
}

func gpt2Match(s string, i int) int {
	if s[i] == '\'' {
		if n := contraction(s, i, false); n > 0 {
			return i + n
		}
	}
	j := i
	if s[i] == ' ' && i+1 < len(s) {
		j = i + 1
	}
	kj, _ := classAt(s, j)
	switch {
	case isL(kj):
		return runOf(s, j, isL)
	case isN(kj):
		return runOf(s, j, isN)
	case isOther(kj):
		return runOf(s, j, isOther)
	}
	// j == i+1 and s[j] is whitespace: the optional space cannot start a word.
	return wsMatch(s, i, false)
}
