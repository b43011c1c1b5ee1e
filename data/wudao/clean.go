// Package wudao reads the raw WuDaoCorpora 2.0 files and cleans their text exactly as
// Pai-Megatron-Patch's toolkits/pretrain_data_preprocessing/preprocess_wudao2.py does.
//
// A raw WuDao file is one JSON array of objects such as
//
//	{"id": …, "uniqueKey": …, "titleUkey": …, "dataType": …, "title": …, "content": …}
//
// of which only "content" is used; the title is dropped, as in Pai's script.
package wudao

import (
	"strings"
	"unicode/utf8"
)

// Clean is preprocess_wudao2.py's clean_text, the three substitutions in order and a strip:
//
//  1. URLs removed: re.sub(r'http[s]?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+', "", s).
//     The class [$-_] is the ASCII range 0x24..0x5F, which already holds the digits, the upper
//     case letters, "@.&+*(),%", so a URL is "http", an optional "s", "://" and a maximal run of
//     bytes from {'!'} ∪ 0x24..0x5F ∪ 'a'..'z'.
//  2. Runs of ASCII spaces folded to one: re.sub(r' +', ' ', s).
//  3. Every character outside the whitelist removed:
//     [^0-9a-zA-Z\u4e00-\u9fa5.， ,\-。%《*》/•、&＆(—)（+）：？!！“”·]+ → "" (removed).
//  4. str.strip(); after step 3 the only whitespace left is the ASCII space.
//
// Step 3 runs after step 2, so removing a character can leave two spaces side by side; they
// stay, as in Python. Invalid UTF-8 bytes decode to U+FFFD, which step 3 removes.
func Clean(raw string) string {
	s := removeURLs(raw)
	var b strings.Builder
	b.Grow(len(s))
	prevSpace := false // step 2 looks at the text before step 3 removed anything
	for _, r := range s {
		if r == ' ' {
			if !prevSpace {
				b.WriteByte(' ')
			}
			prevSpace = true
			continue
		}
		prevSpace = false
		if keep(r) {
			b.WriteRune(r)
		}
	}
	return strings.Trim(b.String(), " ")
}

// removeURLs is step 1. re.sub scans left to right and resumes after each match; a match
// needs at least one URL byte after "://".
func removeURLs(s string) string {
	if !strings.Contains(s, "http") {
		return s
	}
	var b strings.Builder
	last := 0 // start of the text not yet copied
	for i := 0; i+4 <= len(s); {
		k := strings.Index(s[i:], "http")
		if k < 0 {
			break
		}
		i += k
		j := i + 4
		if j < len(s) && s[j] == 's' {
			j++
		}
		if strings.HasPrefix(s[j:], "://") {
			e := j + 3
			for e < len(s) && urlByte(s[e]) {
				e++
			}
			if e > j+3 {
				b.WriteString(s[last:i])
				last, i = e, e
				continue
			}
		}
		i++
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// urlByte reports whether c is in the URL pattern's character set.
func urlByte(c byte) bool {
	return c == '!' || (c >= 0x24 && c <= 0x5F) || (c >= 'a' && c <= 'z')
}

// keep reports whether r is in step 3's whitelist (the space is handled by the caller).
func keep(r rune) bool {
	if r < utf8.RuneSelf {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			return true
		}
		return strings.IndexByte(".,-%*/&()+!", byte(r)) >= 0
	}
	if r >= 0x4e00 && r <= 0x9fa5 {
		return true
	}
	switch r {
	case '，', '。', '《', '》', '•', '、', '＆', '—', '（', '）', '：', '？', '！', '“', '”', '·':
		return true
	}
	return false
}
