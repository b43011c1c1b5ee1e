package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// HF tokenizers' splitting pre-tokenizers (Split, Digits, Punctuation) share one rule: a
// pattern cuts the text into segments, each a match or the gap between two, and the
// delimiter behavior decides which segments become words:
//
//   - Isolated: every segment is a word.
//   - Removed: the matches are dropped.
//   - MergedWithPrevious / MergedWithNext: a match joins the word before / after it.
//   - Contiguous: runs of adjacent matches become one word.
//
// With invert, matches and gaps change roles. A character predicate (Digits,
// Punctuation) matches each character alone, so under Contiguous a run of digits is one
// word and under Isolated every digit is.

type splitBehavior uint8

const (
	splitIsolated splitBehavior = iota
	splitRemoved
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

// parseSplitBehavior reads tokenizer.json's SplitDelimiterBehavior; empty is def.
func parseSplitBehavior(s string, def splitBehavior) (splitBehavior, error) {
	switch s {
	case "":
		return def, nil
	case "Isolated":
		return splitIsolated, nil
	case "Removed":
		return splitRemoved, nil
	case "MergedWithPrevious":
		return splitMergedWithPrevious, nil
	case "MergedWithNext":
		return splitMergedWithNext, nil
	case "Contiguous":
		return splitContiguous, nil
	}
	return 0, fmt.Errorf("behavior %q: want Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous", s)
}

// span is a byte span of the text and whether the pattern matched it.
type span struct {
	start, end int
	match      bool
}

// splitSegments yields the words behavior makes of segs, which cover s in order.
func splitSegments(s string, segs []span, b splitBehavior, invert bool, yield func(string)) {
	if invert {
		for i := range segs {
			segs[i].match = !segs[i].match
		}
	}
	emit := func(a, z int) {
		if z > a {
			yield(s[a:z])
		}
	}
	switch b {
	case splitIsolated:
		for _, g := range segs {
			emit(g.start, g.end)
		}
	case splitRemoved:
		for _, g := range segs {
			if !g.match {
				emit(g.start, g.end)
			}
		}
	case splitMergedWithPrevious:
		// A match that does not follow a match joins the word before it.
		var words []span
		prev := false
		for _, g := range segs {
			if g.match && !prev && len(words) > 0 {
				words[len(words)-1].end = g.end
			} else {
				words = append(words, g)
			}
			prev = g.match
		}
		for _, w := range words {
			emit(w.start, w.end)
		}
	case splitMergedWithNext:
		// A match that does not precede a match joins the word after it (HF folds from
		// the end).
		var words []span
		next := false
		for i := len(segs) - 1; i >= 0; i-- {
			g := segs[i]
			if g.match && !next && len(words) > 0 {
				words[len(words)-1].start = g.start
			} else {
				words = append(words, g)
			}
			next = g.match
		}
		for i := len(words) - 1; i >= 0; i-- {
			emit(words[i].start, words[i].end)
		}
	case splitContiguous:
		// Adjacent segments of the same kind are one word.
		for i := 0; i < len(segs); {
			j := i + 1
			for j < len(segs) && segs[j].match == segs[i].match {
				j++
			}
			emit(segs[i].start, segs[j-1].end)
			i = j
		}
	}
}

// runeSegments cuts s into one match per rune satisfying is and the maximal gaps
// between them (HF's Pattern for a char predicate). With mapped, s stands for its
// byte-level spelling: each byte is one rune, byteToRune of it.
func runeSegments(s string, is func(rune) bool, mapped bool, segs []span) []span {
	gap := 0
	for i := 0; i < len(s); {
		var r rune
		w := 1
		if mapped {
			r = byteToRune[s[i]]
		} else {
			r, w = utf8.DecodeRuneInString(s[i:]) // invalid UTF-8: U+FFFD, one byte
		}
		if is(r) {
			if gap < i {
				segs = append(segs, span{gap, i, false})
			}
			segs = append(segs, span{i, i + w, true})
			gap = i + w
		}
		i += w
	}
	if gap < len(s) {
		segs = append(segs, span{gap, len(s), false})
	}
	return segs
}

// runePretok is a pre-tokenizer splitting on the runes is accepts with behavior b (on the
// byte-level spelling when mapped).
func runePretok(is func(rune) bool, b splitBehavior, mapped bool) pretokenizer {
	return func(s string, yield func(string)) {
		var buf [32]span
		splitSegments(s, runeSegments(s, is, mapped, buf[:0]), b, false, yield)
	}
}

// isNumeric is Rust's char::is_numeric (general category Nd, Nl or No), which HF's
// Digits pre-tokenizer splits on.
func isNumeric(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isPunctuation is HF's is_punc, which its Punctuation pre-tokenizer splits on: ASCII
// punctuation (symbols such as $ + < = > ^ ` | ~ included) or a Unicode punctuation
// category (Pc, Pd, Pe, Pf, Pi, Po, Ps).
func isPunctuation(r rune) bool {
	if r < utf8.RuneSelf {
		return r > ' ' && r < 0x7f && !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}
	return unicode.IsPunct(r)
}

// digitTriplesPattern is Falcon's Split after its Digits: numbers in groups of three.
const digitTriplesPattern = "[0-9][0-9][0-9]"

// splitDigitTriples yields the gaps and matches of digitTriplesPattern, leftmost first.
func splitDigitTriples(s string, yield func(string)) {
	isDigit := func(i int) bool { return '0' <= s[i] && s[i] <= '9' }
	gap := 0
	for i := 0; i+3 <= len(s); {
		if !isDigit(i + 2) { // no match can cover i+2 from i, i+1 or i+2
			i += 3
			continue
		}
		if !isDigit(i) || !isDigit(i+1) {
			i++
			continue
		}
		if gap < i {
			yield(s[gap:i])
		}
		yield(s[i : i+3])
		i += 3
		gap = i
	}
	if gap < len(s) {
		yield(s[gap:])
	}
}

// asciiOnlyScanner reports a scanner whose matches are ASCII characters only: it cuts a
// text and its byte-level spelling at the same places, so it runs on either.
func asciiOnlyScanner(pattern string) bool { return pattern == digitTriplesPattern }

// inByteLevelDomain runs p on the byte-level spelling of s (each byte as its
// bytes_to_unicode rune), as HF runs the pre-tokenizers that follow a ByteLevel one in a
// Sequence, and yields the words as raw bytes again. Falcon's Digits after ByteLevel so
// sees '½' (byte 0xBD) as a digit, also inside a multi-byte character.
func inByteLevelDomain(p hfPretok) hfPretok {
	return func(s string, first bool, yield func(string)) {
		var b strings.Builder
		b.Grow(2 * len(s))
		for i := 0; i < len(s); i++ {
			b.WriteRune(byteToRune[s[i]])
		}
		p(b.String(), first, func(w string) {
			raw, ok := byteLevelDecode(w)
			if !ok { // cannot happen: a split of mapped text is mapped text
				raw = []byte(w)
			}
			yield(string(raw))
		})
	}
}

// onigClassesForRegexp2 rewrites the nested character classes of an Oniguruma pattern
// (HF tokenizers' engine) for regexp2: in Oniguruma "[^(\s|[.,!?])]" is one class whose
// members include those of the inner "[.,!?]" (BLOOM's pre-tokenizer), while regexp2
// reads an inner '[' as a literal. An inner class is a union, so its brackets are dropped;
// a negated inner class or an intersection (&&) has no such spelling and is an error.
func onigClassesForRegexp2(expr string) (string, error) {
	var out strings.Builder
	depth := 0
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '\\' && i+1 < len(expr):
			out.WriteString(expr[i : i+2])
			i++
			continue
		case depth == 0 && c == '[':
			depth = 1
			out.WriteByte(c)
			if strings.HasPrefix(expr[i+1:], "^") {
				out.WriteByte('^')
				i++
			}
			if strings.HasPrefix(expr[i+1:], "]") { // a leading ']' is a member
				out.WriteByte(']')
				i++
			}
			continue
		case depth == 0:
		case c == '[' && strings.HasPrefix(expr[i:], "[:"):
			end := strings.Index(expr[i:], ":]")
			if end < 0 {
				return "", fmt.Errorf("unterminated POSIX bracket at offset %d", i)
			}
			out.WriteString(expr[i : i+end+2])
			i += end + 1
			continue
		case c == '[':
			if strings.HasPrefix(expr[i+1:], "^") {
				return "", fmt.Errorf("a negated class inside a class (offset %d) is not supported", i)
			}
			depth++
			continue
		case c == '&' && strings.HasPrefix(expr[i:], "&&"):
			return "", fmt.Errorf("class intersection && (offset %d) is not supported", i)
		case c == ']':
			depth--
			if depth > 0 {
				continue
			}
		}
		out.WriteByte(c)
	}
	if depth != 0 {
		return "", fmt.Errorf("unterminated character class")
	}
	return out.String(), nil
}
