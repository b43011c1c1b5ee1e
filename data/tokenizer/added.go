package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's "added_tokens": matched in the text before
// normalization (normalized=false) or in each normalized segment (normalized=true).
type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// addedMatcher finds added tokens with HF's leftmost-longest rule (Aho-Corasick
// MatchKind::LeftmostLongest): the match starting first wins, the longest among those.
type addedMatcher struct {
	tokens []addedToken
	first  [256]bool      // bytes that start some token
	byLead map[byte][]int // first byte → token indices, longest first
	lead   byte           // the first byte of every token when they all share one
}

func newAddedMatcher(tokens []addedToken) *addedMatcher {
	m := &addedMatcher{tokens: tokens, byLead: map[byte][]int{}}
	for i, t := range tokens {
		if t.Content == "" {
			continue
		}
		b := t.Content[0]
		m.first[b] = true
		m.lead = b
		m.byLead[b] = append(m.byLead[b], i)
	}
	for b, idx := range m.byLead {
		l := idx
		for i := 1; i < len(l); i++ { // insertion sort, longest first, stable
			for j := i; j > 0 && len(tokens[l[j]].Content) > len(tokens[l[j-1]].Content); j-- {
				l[j], l[j-1] = l[j-1], l[j]
			}
		}
		m.byLead[b] = l
	}
	return m
}

// segment is a piece of the input: either text (tok < 0) or an added token.
type segment struct {
	text string
	tok  int // index into addedMatcher.tokens, -1 for text
}

// split cuts s into text segments and added-token segments, applying lstrip/rstrip
// (the token swallows the whitespace on that side) and single_word (only matches not
// touching a word character count).
func (m *addedMatcher) split(s string, dst []segment) []segment {
	if m == nil || len(m.tokens) == 0 {
		return append(dst, segment{s, -1})
	}
	textStart := 0
	for i := 0; i < len(s); {
		if len(m.byLead) == 1 {
			k := strings.IndexByte(s[i:], m.lead)
			if k < 0 {
				break
			}
			i += k
		} else if !m.first[s[i]] {
			i++
			continue
		}
		ti := -1
		for _, k := range m.byLead[s[i]] {
			c := m.tokens[k].Content
			if len(c) <= len(s)-i && s[i:i+len(c)] == c && m.wordOK(s, i, i+len(c), k) {
				ti = k
				break
			}
		}
		if ti < 0 {
			i++
			continue
		}
		t := m.tokens[ti]
		start, end := i, i+len(t.Content)
		if t.LStrip {
			for start > textStart {
				r, w := utf8.DecodeLastRuneInString(s[textStart:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= w
			}
		}
		if t.RStrip {
			for end < len(s) {
				r, w := utf8.DecodeRuneInString(s[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += w
			}
		}
		if start > textStart {
			dst = append(dst, segment{s[textStart:start], -1})
		}
		dst = append(dst, segment{s[start:end], ti})
		i, textStart = end, end
	}
	if textStart < len(s) {
		dst = append(dst, segment{s[textStart:], -1})
	}
	return dst
}

func (m *addedMatcher) wordOK(s string, start, end, k int) bool {
	if !m.tokens[k].SingleWord {
		return true
	}
	isWord := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) || r == '_' }
	if start > 0 {
		if r, _ := utf8.DecodeLastRuneInString(s[:start]); isWord(r) {
			return false
		}
	}
	if end < len(s) {
		if r, _ := utf8.DecodeRuneInString(s[end:]); isWord(r) {
			return false
		}
	}
	return true
}
