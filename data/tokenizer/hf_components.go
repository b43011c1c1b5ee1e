package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// The normalizer, pre-tokenizer, decoder and post-processor components of tokenizer.json
// that the supported models use. An unknown component type is an error naming it, never
// a silent difference.

type component struct {
	Type string `json:"type"`
	raw  json.RawMessage
}

func parseComponent(raw json.RawMessage) (*component, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	c := &component{raw: raw}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, err
	}
	return c, nil
}

func usesByteLevel(raw json.RawMessage) bool {
	return strings.Contains(string(raw), `"ByteLevel"`)
}

// hfPattern is tokenizer.json's {"String": s} or {"Regex": r}.
type hfPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func buildNormalizer(raw json.RawMessage) (func(string) string, error) {
	c, err := parseComponent(raw)
	if err != nil || c == nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var v struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, err
		}
		var fs []func(string) string
		for i, n := range v.Normalizers {
			f, err := buildNormalizer(n)
			if err != nil {
				return nil, fmt.Errorf("normalizers[%d]: %w", i, err)
			}
			if f != nil {
				fs = append(fs, f)
			}
		}
		return func(s string) string {
			for _, f := range fs {
				s = f(s)
			}
			return s
		}, nil
	case "Prepend":
		var v struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, err
		}
		return func(s string) string {
			if s == "" {
				return s
			}
			return v.Prepend + s
		}, nil
	case "Replace":
		var v struct {
			Pattern hfPattern `json:"pattern"`
			Content string    `json:"content"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, err
		}
		if v.Pattern.String == nil {
			return nil, fmt.Errorf("Replace: only String patterns are supported")
		}
		from := *v.Pattern.String
		return func(s string) string { return strings.ReplaceAll(s, from, v.Content) }, nil
	case "NFC":
		return nfc, nil
	}
	return nil, fmt.Errorf("normalizer type %q is not supported", c.Type)
}

// hfPretok is a tokenizer.json pre-tokenizer: it splits a normalized segment into words.
// first tells whether the segment starts at offset 0 of the input (Metaspace's
// prepend_scheme "first" prepends only there).
type hfPretok func(s string, first bool, yield func(string))

func plain(p pretokenizer) hfPretok {
	return func(s string, _ bool, yield func(string)) { p(s, yield) }
}

func buildPreTokenizer(raw json.RawMessage) (hfPretok, error) {
	return buildPreTokenizerIn(raw, false)
}

// buildPreTokenizerIn builds a pre-tokenizer that sees the byte-level spelling of its text
// when mapped (it follows a ByteLevel step in a Sequence). Those that split on a rune
// predicate test each byte's rune instead, and a Split whose matches are ASCII-only runs
// on the raw text unchanged (it cuts both spellings at the same places); the rest run on
// the spelling itself (inByteLevelDomain).
func buildPreTokenizerIn(raw json.RawMessage, mapped bool) (hfPretok, error) {
	f, direct, err := buildPreTokenizerStep(raw, mapped)
	if err != nil || f == nil || !mapped || direct {
		return f, err
	}
	return inByteLevelDomain(f), nil
}

// buildPreTokenizerStep builds one pre-tokenizer; direct reports that it already handles
// the byte-level spelling (mapped) itself.
func buildPreTokenizerStep(raw json.RawMessage, mapped bool) (f hfPretok, direct bool, err error) {
	c, err := parseComponent(raw)
	if err != nil || c == nil {
		return nil, false, err
	}
	switch c.Type {
	case "Sequence":
		var v struct {
			Pretokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, false, err
		}
		var ps []hfPretok
		for i, p := range v.Pretokenizers {
			f, err := buildPreTokenizerIn(p, mapped)
			if err != nil {
				return nil, false, fmt.Errorf("pretokenizers[%d]: %w", i, err)
			}
			if f != nil {
				ps = append(ps, f)
			}
			mapped = mapped || usesByteLevel(p) // later steps see ByteLevel's spelling
		}
		switch len(ps) {
		case 0:
			return nil, true, nil
		case 1:
			return ps[0], true, nil
		}
		return func(s string, first bool, yield func(string)) {
			var run func(k int, s string, first bool)
			run = func(k int, s string, first bool) {
				if k == len(ps) {
					yield(s)
					return
				}
				n := 0
				ps[k](s, first, func(w string) {
					run(k+1, w, first && n == 0)
					n++
				})
			}
			run(0, s, first)
		}, true, nil
	case "ByteLevel":
		var v struct {
			AddPrefixSpace bool  `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, false, err
		}
		useRegex := v.UseRegex == nil || *v.UseRegex
		if !v.AddPrefixSpace && !useRegex {
			return nil, false, nil // only the byte mapping, which the model does
		}
		return func(s string, _ bool, yield func(string)) {
			if v.AddPrefixSpace && !strings.HasPrefix(s, " ") {
				s = " " + s
			}
			if useRegex {
				splitGPT2(s, yield)
			} else {
				yield(s)
			}
		}, false, nil
	case "Split":
		var v struct {
			Pattern  hfPattern `json:"pattern"`
			Behavior string    `json:"behavior"`
			Invert   bool      `json:"invert"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, false, err
		}
		b, err := parseSplitBehavior(v.Behavior, splitIsolated)
		if err != nil {
			return nil, false, fmt.Errorf("Split: %w", err)
		}
		if v.Pattern.Regex != nil && b == splitIsolated && !v.Invert {
			if f, ok := scannerFor(*v.Pattern.Regex); ok {
				return plain(f), asciiOnlyScanner(*v.Pattern.Regex), nil
			}
		}
		f, err := buildRegexSplit(v.Pattern, b, v.Invert)
		if err != nil {
			return nil, false, err
		}
		return plain(f), false, nil
	case "Digits":
		var v struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, false, err
		}
		b := splitContiguous
		if v.Individual {
			b = splitIsolated
		}
		return plain(runePretok(isNumeric, b, mapped)), true, nil
	case "Punctuation":
		var v struct {
			Behavior string `json:"behavior"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, false, err
		}
		b, err := parseSplitBehavior(v.Behavior, splitIsolated)
		if err != nil {
			return nil, false, fmt.Errorf("Punctuation: %w", err)
		}
		return plain(runePretok(isPunctuation, b, mapped)), true, nil
	case "Metaspace":
		rep, scheme, split, err := metaspaceConfig(c.raw)
		if err != nil {
			return nil, false, err
		}
		// HF: spaces become the replacement; it is prepended (scheme "always", or
		// "first" for the segment at offset 0) unless already there; with split, each
		// replacement character starts a new word (MergedWithNext).
		return func(s string, first bool, yield func(string)) {
			s = strings.ReplaceAll(s, " ", rep)
			if (scheme == "always" || (scheme == "first" && first)) && !strings.HasPrefix(s, rep) {
				s = rep + s
			}
			if !split {
				yield(s)
				return
			}
			start := 0
			for i := 0; i < len(s); {
				if i > start && strings.HasPrefix(s[i:], rep) {
					yield(s[start:i])
					start = i
				}
				_, w := utf8.DecodeRuneInString(s[i:])
				i += w
			}
			if start < len(s) {
				yield(s[start:])
			}
		}, false, nil
	}
	return nil, false, fmt.Errorf("pre_tokenizer type %q is not supported", c.Type)
}

// metaspaceConfig reads a Metaspace pre-tokenizer or decoder: the replacement, the
// prepend scheme (older files have add_prefix_space instead) and split (default true).
func metaspaceConfig(raw json.RawMessage) (rep, scheme string, split bool, err error) {
	var v struct {
		Replacement   string `json:"replacement"`
		PrependScheme string `json:"prepend_scheme"`
		AddPrefix     *bool  `json:"add_prefix_space"`
		Split         *bool  `json:"split"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", "", false, err
	}
	scheme = v.PrependScheme
	if scheme == "" {
		scheme = "always"
		if v.AddPrefix != nil && !*v.AddPrefix {
			scheme = "never"
		}
	}
	switch scheme {
	case "always", "first", "never":
	default:
		return "", "", false, fmt.Errorf("Metaspace prepend_scheme %q: want always, first or never", scheme)
	}
	if v.Replacement == "" {
		return "", "", false, fmt.Errorf("Metaspace: empty replacement")
	}
	return v.Replacement, scheme, v.Split == nil || *v.Split, nil
}

// buildRegexSplit runs a Split pre-tokenizer whose regex has no hand-written scanner
// through regexp2 (a backtracking engine with lookaround, like Oniguruma).
func buildRegexSplit(p hfPattern, behavior splitBehavior, invert bool) (pretokenizer, error) {
	var expr string
	switch {
	case p.Regex != nil:
		var err error
		if expr, err = onigClassesForRegexp2(*p.Regex); err != nil {
			return nil, fmt.Errorf("Split: regex %q: %w", *p.Regex, err)
		}
	case p.String != nil:
		expr = regexp2.Escape(*p.String)
	default:
		return nil, fmt.Errorf("Split: pattern has neither String nor Regex")
	}
	re, err := regexp2.Compile(expr, regexp2.Unicode)
	if err != nil {
		return nil, fmt.Errorf("Split: regex %q: %w", expr, err)
	}
	return func(s string, yield func(string)) {
		// regexp2 reports rune indices; convert to byte offsets. An invalid byte is one
		// rune (U+FFFD) one byte wide, as []rune(s) reads it.
		off := make([]int, 1, len(s)+1)
		for i := 0; i < len(s); {
			_, w := utf8.DecodeRuneInString(s[i:])
			i += w
			off = append(off, i)
		}
		var segs []span
		last := 0
		m, _ := re.FindStringMatch(s)
		for m != nil {
			a, b := off[m.RuneIndex], off[m.RuneIndex+m.RuneLength]
			if last < a {
				segs = append(segs, span{last, a, false})
			}
			if a < b {
				segs = append(segs, span{a, b, true})
			}
			last = b
			m, _ = re.FindNextMatch(m)
		}
		if last < len(s) {
			segs = append(segs, span{last, len(s), false})
		}
		splitSegments(s, segs, behavior, invert, yield)
	}, nil
}

// decodeStep is one decoder of the chain, applied to the token strings.
type decodeStep struct {
	kind  string
	apply func([]string) []string
}

func buildDecoder(raw json.RawMessage) ([]decodeStep, error) {
	c, err := parseComponent(raw)
	if err != nil || c == nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var v struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, err
		}
		var out []decodeStep
		for i, d := range v.Decoders {
			s, err := buildDecoder(d)
			if err != nil {
				return nil, fmt.Errorf("decoders[%d]: %w", i, err)
			}
			out = append(out, s...)
		}
		return out, nil
	case "ByteLevel":
		return []decodeStep{{"ByteLevel", func(toks []string) []string {
			var buf []byte
			for _, t := range toks {
				if raw, ok := byteLevelDecode(t); ok {
					buf = append(buf, raw...)
				} else {
					buf = append(buf, t...)
				}
			}
			return []string{lossyUTF8(buf)}
		}}}, nil
	case "Replace":
		var v struct {
			Pattern hfPattern `json:"pattern"`
			Content string    `json:"content"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, err
		}
		if v.Pattern.String == nil {
			return nil, fmt.Errorf("Replace decoder: only String patterns are supported")
		}
		from := *v.Pattern.String
		return []decodeStep{{"Replace", func(toks []string) []string {
			for i, t := range toks {
				toks[i] = strings.ReplaceAll(t, from, v.Content)
			}
			return toks
		}}}, nil
	case "ByteFallback":
		return []decodeStep{{"ByteFallback", byteFallbackDecode}}, nil
	case "Fuse":
		return []decodeStep{{"Fuse", func(toks []string) []string { return []string{strings.Join(toks, "")} }}}, nil
	case "Strip":
		var v struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return nil, err
		}
		return []decodeStep{{"Strip", func(toks []string) []string {
			for i, t := range toks {
				for k := 0; k < v.Start && strings.HasPrefix(t, v.Content); k++ {
					t = t[len(v.Content):]
				}
				for k := 0; k < v.Stop && strings.HasSuffix(t, v.Content); k++ {
					t = t[:len(t)-len(v.Content)]
				}
				toks[i] = t
			}
			return toks
		}}}, nil
	case "Metaspace":
		rep, scheme, _, err := metaspaceConfig(c.raw)
		if err != nil {
			return nil, err
		}
		// HF: the replacement becomes a space, except in the first token, where it is
		// dropped (unless the prepend scheme is "never").
		return []decodeStep{{"Metaspace", func(toks []string) []string {
			for i, t := range toks {
				if i == 0 && scheme != "never" {
					toks[i] = strings.ReplaceAll(t, rep, "")
				} else {
					toks[i] = strings.ReplaceAll(t, rep, " ")
				}
			}
			return toks
		}}}, nil
	}
	return nil, fmt.Errorf("decoder type %q is not supported", c.Type)
}

// byteFallbackDecode is HF's ByteFallback decoder: runs of <0xNN> tokens become their
// bytes when those are valid UTF-8, else one U+FFFD per byte token.
func byteFallbackDecode(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if len(t) == 6 && strings.HasPrefix(t, "<0x") && t[5] == '>' {
			if b, err := strconv.ParseUint(t[3:5], 16, 8); err == nil {
				pending = append(pending, byte(b))
				continue
			}
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// buildPostProcessor takes the ids add_special_tokens=true puts around a single sequence.
func (t *HF) buildPostProcessor(raw json.RawMessage) error {
	c, err := parseComponent(raw)
	if err != nil || c == nil {
		return err
	}
	switch c.Type {
	case "ByteLevel":
		return nil // offsets only
	case "Sequence":
		var v struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return err
		}
		for i, p := range v.Processors {
			if err := t.buildPostProcessor(p); err != nil {
				return fmt.Errorf("processors[%d]: %w", i, err)
			}
		}
		return nil
	case "TemplateProcessing":
		var v struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				IDs []int `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return err
		}
		seen := false
		for _, p := range v.Single {
			switch {
			case p.Sequence != nil:
				seen = true
			case p.SpecialToken != nil:
				st, ok := v.SpecialTokens[p.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("TemplateProcessing: special token %q missing from special_tokens", p.SpecialToken.ID)
				}
				if seen {
					t.suffix = append(t.suffix, st.IDs...)
				} else {
					t.prefix = append(t.prefix, st.IDs...)
				}
			}
		}
		return nil
	case "BertProcessing", "RobertaProcessing":
		var v struct {
			Sep [2]json.RawMessage `json:"sep"`
			Cls [2]json.RawMessage `json:"cls"`
		}
		if err := json.Unmarshal(c.raw, &v); err != nil {
			return err
		}
		var cls, sep int
		if err := json.Unmarshal(v.Cls[1], &cls); err != nil {
			return fmt.Errorf("%s.cls: %w", c.Type, err)
		}
		if err := json.Unmarshal(v.Sep[1], &sep); err != nil {
			return fmt.Errorf("%s.sep: %w", c.Type, err)
		}
		t.prefix = append(t.prefix, cls)
		t.suffix = append(t.suffix, sep)
		return nil
	}
	return fmt.Errorf("post_processor type %q is not supported", c.Type)
}
