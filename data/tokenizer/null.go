package tokenizer

import (
	"strconv"
	"strings"
)

// Null is Megatron's _NullTokenizer: the text is a space-separated list of integer ids;
// the vocab has --vocab-size ids plus one for EOD (eod = vocab_size, vocab_size+1 ids in
// all), and there is no BOS, EOS or pad.
type Null struct{ n int }

// NewNull returns a NullTokenizer for --vocab-size n.
func NewNull(n int) *Null { return &Null{n: n} }

// Encode parses space-separated integers; a field that is not an integer is skipped
// (Megatron would raise on it).
func (t *Null) Encode(text string) []int {
	var ids []int
	for _, f := range strings.Fields(text) {
		if v, err := strconv.Atoi(f); err == nil {
			ids = append(ids, v)
		}
	}
	return ids
}

// Decode joins the ids with spaces.
func (t *Null) Decode(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, " ")
}

func (t *Null) VocabSize() int { return t.n + 1 }
func (t *Null) EOD() int       { return t.n }
func (t *Null) BOS() int       { return -1 }
func (t *Null) EOS() int       { return -1 }
func (t *Null) Pad() int       { return -1 }
