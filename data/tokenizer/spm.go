package tokenizer

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// SentencePiece is a SentencePiece .model (BPE or Unigram) encoded and decoded as the C++
// library (sentencepiece 0.1.97) does: Normalizer::Normalize (precompiled charsmap,
// add_dummy_prefix, remove_extra_whitespaces, whitespace → U+2581), then the model
// (BPE merges by piece score; Unigram Viterbi), then byte fallback for unknown pieces.
// Encode is encode_as_ids: no BOS/EOS.
type SentencePiece struct {
	m        *spModel
	pieces   map[string]int32 // NORMAL, USER_DEFINED and UNUSED pieces
	reserved map[string]int32 // CONTROL, UNKNOWN and BYTE pieces
	unk      int32
	byteIDs  [256]int32
	byteOf   map[int32]byte // byte piece id → its byte
	user     *addedMatcher  // user-defined symbols: never normalized or split
	charsMap *charsMap

	fast    *spFastBPE // set when the BPE model allows per-word encoding
	trie    *pieceTrie // Unigram lattice
	caches  cachePool
	noCache bool // benchmarks: measure without the word cache

	minScore, maxScore float32 // over NORMAL pieces (Unigram)
	bos, eos, pad      int
}

const spaceSymbol = "\u2581"

// LoadSentencePiece reads a SentencePiece .model file.
func LoadSentencePiece(path string) (*SentencePiece, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	sp, err := ParseSentencePiece(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return sp, nil
}

// ParseSentencePiece builds a tokenizer from the bytes of a .model file.
func ParseSentencePiece(data []byte) (*SentencePiece, error) {
	m, err := parseSPModel(data)
	if err != nil {
		return nil, err
	}
	if m.modelType != 1 && m.modelType != 2 {
		return nil, fmt.Errorf("trainer_spec.model_type %d is not supported (1 UNIGRAM, 2 BPE)", m.modelType)
	}
	if m.treatWSAsSuffix {
		return nil, fmt.Errorf("trainer_spec.treat_whitespace_as_suffix is not supported")
	}
	sp := &SentencePiece{m: m, pieces: map[string]int32{}, reserved: map[string]int32{}, unk: -1,
		minScore: 3.4028234663852886e38, maxScore: 1.1754943508222875e-38}
	var users []addedToken
	for i, p := range m.pieces {
		normal := p.typ == pieceNormal || p.typ == pieceUserDefined || p.typ == pieceUnused
		dst := sp.reserved
		if normal {
			dst = sp.pieces
		}
		if _, dup := dst[p.piece]; dup {
			return nil, fmt.Errorf("pieces[%d] %q is already defined", i, p.piece)
		}
		dst[p.piece] = int32(i)
		switch p.typ {
		case pieceUserDefined:
			users = append(users, addedToken{ID: i, Content: p.piece})
		case pieceUnknown:
			sp.unk = int32(i)
		case pieceByte:
			if !m.byteFallback {
				return nil, fmt.Errorf("pieces[%d] %q is a byte piece but byte_fallback is off", i, p.piece)
			}
		case pieceNormal:
			sp.minScore = min(sp.minScore, p.score)
			sp.maxScore = max(sp.maxScore, p.score)
		}
	}
	if sp.minScore == 3.4028234663852886e38 {
		sp.minScore = 0
	}
	if sp.maxScore == 1.1754943508222875e-38 { // FLT_MIN start value kept: all scores ≤ 0
		sp.maxScore = 0
	}
	if sp.unk < 0 {
		return nil, fmt.Errorf("no UNKNOWN piece")
	}
	sp.byteOf = map[int32]byte{}
	for b := 0; b < 256; b++ {
		sp.byteIDs[b] = -1
		if id, ok := sp.reserved[fmt.Sprintf("<0x%02X>", b)]; ok && m.pieces[id].typ == pieceByte {
			sp.byteIDs[b] = id
			sp.byteOf[id] = byte(b)
		}
	}
	if len(users) > 0 {
		sp.user = newAddedMatcher(users)
	}
	if len(m.charsmap) > 0 {
		if sp.charsMap, err = newCharsMap(m.charsmap); err != nil {
			return nil, fmt.Errorf("normalizer_spec: %w", err)
		}
	}
	sp.bos, sp.eos, sp.pad = sp.specialID(m.bosPiece), sp.specialID(m.eosPiece), sp.specialID(m.padPiece)
	if m.modelType == 2 {
		sp.buildFastBPE()
	} else {
		sp.trie = newPieceTrie(sp)
	}
	return sp, nil
}

// specialID is bos_id()/eos_id()/pad_id(): the id of that piece, -1 if absent.
func (sp *SentencePiece) specialID(piece string) int {
	if id, ok := sp.reserved[piece]; ok {
		return int(id)
	}
	if id, ok := sp.pieces[piece]; ok {
		return int(id)
	}
	return -1
}

// pieceToID is SentencePiece's PieceToId: reserved pieces, then normal ones, else unk.
func (sp *SentencePiece) pieceToID(p string) int32 {
	if id, ok := sp.reserved[p]; ok {
		return id
	}
	if id, ok := sp.pieces[p]; ok {
		return id
	}
	return sp.unk
}

// normalizePrefix is Normalizer::NormalizePrefix: the replacement for the start of s and
// how many bytes it consumes.
func (sp *SentencePiece) normalizePrefix(s string) (string, int) {
	if sp.user != nil && sp.user.first[s[0]] {
		for _, k := range sp.user.byLead[s[0]] {
			c := sp.user.tokens[k].Content
			if strings.HasPrefix(s, c) {
				return c, len(c)
			}
		}
	}
	if sp.charsMap != nil {
		if r, n := sp.charsMap.longest(s); n > 0 {
			return r, n
		}
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n == 1 {
		return "\uFFFD", 1
	}
	return s[:n], n
}

// normalize is Normalizer::Normalize (without the alignment output).
func (sp *SentencePiece) normalize(s string) string {
	m := sp.m
	if s == "" {
		return ""
	}
	if sp.charsMap == nil && sp.user == nil && !m.removeExtraWhitespaces && m.escapeWhitespaces && utf8.ValidString(s) {
		if m.addDummyPrefix {
			return spaceSymbol + strings.ReplaceAll(s, " ", spaceSymbol)
		}
		return strings.ReplaceAll(s, " ", spaceSymbol)
	}
	if m.removeExtraWhitespaces {
		for s != "" {
			p, n := sp.normalizePrefix(s)
			if p != " " {
				break
			}
			s = s[n:]
		}
		if s == "" {
			return ""
		}
	}
	var b strings.Builder
	b.Grow(len(s) * 3 / 2)
	ws := " "
	if m.escapeWhitespaces {
		ws = spaceSymbol
	}
	if m.addDummyPrefix {
		b.WriteString(ws)
	}
	prevSpace := m.removeExtraWhitespaces
	for s != "" {
		p, n := sp.normalizePrefix(s)
		for prevSpace && strings.HasPrefix(p, " ") {
			p = p[1:]
		}
		if p != "" {
			for i := 0; i < len(p); i++ {
				if p[i] == ' ' && m.escapeWhitespaces {
					b.WriteString(spaceSymbol)
				} else {
					b.WriteByte(p[i])
				}
			}
			prevSpace = strings.HasSuffix(p, " ")
		}
		s = s[n:]
		if !m.removeExtraWhitespaces {
			prevSpace = false
		}
	}
	out := b.String()
	if m.removeExtraWhitespaces {
		for strings.HasSuffix(out, ws) {
			out = out[:len(out)-len(ws)]
		}
	}
	return out
}

// Encode is encode_as_ids(text).
func (sp *SentencePiece) Encode(text string) []int {
	norm := sp.normalize(text)
	out := make([]int, 0, len(norm)/3+2)
	if sp.fast != nil {
		c := sp.caches.get()
		out = sp.encodeFast(out, norm, c)
		sp.caches.put(c)
		return out
	}
	emit := func(piece string, id int32) {
		if id == sp.unk && sp.m.byteFallback {
			for i := 0; i < len(piece); i++ {
				out = append(out, int(sp.byteIDs[piece[i]]))
			}
			return
		}
		out = append(out, int(id))
	}
	if sp.m.modelType == 2 {
		sp.encodeBPE(norm, emit)
	} else {
		c := sp.caches.get()
		sp.encodeUnigram(norm, emit, &c.uni)
		sp.caches.put(c)
	}
	return out
}

// Pieces returns the piece strings of Encode(text) (encode(out_type=str)).
func (sp *SentencePiece) Pieces(text string) []string {
	ids := sp.Encode(text)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = sp.m.pieces[id].piece
	}
	return out
}

// Decode is decode_ids: control pieces vanish, unknown ones read " ⁇ ", runs of byte
// pieces become their UTF-8 text (one U+FFFD per byte that is not part of a valid
// character), U+2581 becomes a space, and the first piece that is not a control piece
// loses its leading U+2581.
func (sp *SentencePiece) Decode(ids []int) string {
	var b strings.Builder
	var pending []byte
	flush := func() {
		for len(pending) > 0 {
			r, n := utf8.DecodeRune(pending)
			if r == utf8.RuneError && n <= 1 {
				b.WriteString("\uFFFD")
				n = 1
			} else {
				b.Write(pending[:n])
			}
			pending = pending[n:]
		}
		pending = pending[:0]
	}
	stripFirst := sp.m.addDummyPrefix || sp.m.removeExtraWhitespaces
	first := true // no piece but control ones seen yet
	for _, id := range ids {
		if id < 0 || id >= len(sp.m.pieces) {
			continue
		}
		p := sp.m.pieces[id]
		if p.typ == pieceByte {
			if v, ok := sp.byteOf[int32(id)]; ok {
				pending = append(pending, v)
			}
			first = false
			continue
		}
		flush()
		switch p.typ {
		case pieceControl:
			continue
		case pieceUnknown:
			b.WriteString(sp.m.unkSurface)
			first = false
			continue
		}
		piece := p.piece
		if first && stripFirst {
			piece = strings.TrimPrefix(piece, spaceSymbol)
		}
		first = false
		b.WriteString(strings.ReplaceAll(piece, spaceSymbol, " "))
	}
	flush()
	return b.String()
}

// VocabSize is the number of pieces (vocab_size()).
func (sp *SentencePiece) VocabSize() int { return len(sp.m.pieces) }

// EOD is eos_id(), as Megatron's GPTSentencePieceTokenizer and Llama2Tokenizer define it.
func (sp *SentencePiece) EOD() int { return sp.eos }
func (sp *SentencePiece) BOS() int { return sp.bos }
func (sp *SentencePiece) EOS() int { return sp.eos }
func (sp *SentencePiece) Pad() int { return sp.pad }

// PieceID returns the id of a piece (PieceToId), or -1 if the model has no such piece.
func (sp *SentencePiece) PieceID(piece string) int {
	return sp.specialID(piece)
}
