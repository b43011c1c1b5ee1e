package tokenizer

import "strings"

// SentencePieceBOS is Megatron's _Llama2Tokenizer: a SentencePiece model whose
// tokenize prepends BOS (tokenize(s, bos=True, eos=False)); eod = eos.
type SentencePieceBOS struct{ *SentencePiece }

// Encode prepends BOS to encode(text).
func (t *SentencePieceBOS) Encode(text string) []int {
	ids := t.SentencePiece.Encode(text)
	if t.bos < 0 {
		return ids
	}
	return append([]int{t.bos}, ids...)
}

// MegatronSentencePiece is Megatron's _SentencePieceTokenizer (--tokenizer-type
// SentencePieceTokenizer): the model's pieces plus <CLS>, <SEP>, <EOD>, <MASK>, the pad,
// bos and eos pieces (<PAD>/<BOS>/<EOS> when the model has none) and vocab_extra_ids
// <extra_id_N> tokens, each appended after the vocab unless already a piece. Those
// special tokens are found in the text (the earliest occurrence first; on equal
// positions the one added first) and the text between them is encoded by the model.
type MegatronSentencePiece struct {
	sp       *SentencePiece
	special  []string       // in insertion order
	ids      map[string]int // special token → id
	inv      map[int]string
	size     int
	eod      int
	bos, eos int
	pad      int
}

// NewMegatronSentencePiece wraps sp as Megatron's SentencePieceTokenizer.
func NewMegatronSentencePiece(sp *SentencePiece, vocabExtraIDs int) *MegatronSentencePiece {
	t := &MegatronSentencePiece{sp: sp, ids: map[string]int{}, inv: map[int]string{}, size: sp.VocabSize()}
	add := func(tok string) int {
		id := sp.specialID(tok)
		if id < 0 {
			if prev, ok := t.ids[tok]; ok {
				id = prev
			} else {
				id = t.size
				t.size++
			}
		}
		if _, ok := t.ids[tok]; !ok {
			t.special = append(t.special, tok)
		}
		t.ids[tok] = id
		t.inv[id] = tok
		return id
	}
	add("<CLS>")
	add("<SEP>")
	t.eod = add("<EOD>")
	add("<MASK>")
	pieceOr := func(id int, fallback string) string {
		if id >= 0 && id < sp.VocabSize() {
			return sp.m.pieces[id].piece
		}
		return fallback
	}
	t.pad = add(pieceOr(sp.pad, "<PAD>"))
	t.bos = add(pieceOr(sp.bos, "<BOS>"))
	t.eos = add(pieceOr(sp.eos, "<EOS>"))
	for i := 0; i < vocabExtraIDs; i++ {
		add("<extra_id_" + itoa(i) + ">")
	}
	return t
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// Encode is _SentencePieceTokenizer.tokenize.
func (t *MegatronSentencePiece) Encode(text string) []int {
	ids := []int{}
	for {
		best, at := "", -1
		for _, tok := range t.special {
			if i := strings.Index(text, tok); i >= 0 && (at < 0 || i < at) {
				best, at = tok, i
			}
		}
		if at < 0 {
			break
		}
		ids = append(ids, t.sp.Encode(text[:at])...)
		ids = append(ids, t.ids[best])
		text = text[at+len(best):]
	}
	return append(ids, t.sp.Encode(text)...)
}

// Decode is _SentencePieceTokenizer.detokenize: special tokens are written with a space
// on each side of them.
func (t *MegatronSentencePiece) Decode(ids []int) string {
	var b strings.Builder
	last := 0
	for i, id := range ids {
		if tok, ok := t.inv[id]; ok {
			b.WriteString(t.sp.Decode(ids[last:i]))
			b.WriteString(" ")
			b.WriteString(tok)
			b.WriteString(" ")
			last = i + 1
		}
	}
	b.WriteString(t.sp.Decode(ids[last:]))
	return b.String()
}

func (t *MegatronSentencePiece) VocabSize() int { return t.size }
func (t *MegatronSentencePiece) EOD() int       { return t.eod }
func (t *MegatronSentencePiece) BOS() int       { return t.bos }
func (t *MegatronSentencePiece) EOS() int       { return t.eos }
func (t *MegatronSentencePiece) Pad() int       { return t.pad }
