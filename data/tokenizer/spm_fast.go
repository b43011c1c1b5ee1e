package tokenizer

import (
	"math"
	"strings"
	"unicode/utf8"
)

// spFastBPE is an equivalent, faster form of encodeBPE for the common BPE models (Llama-2
// and models trained like it), usable when:
//
//   - there are no USER_DEFINED or UNUSED pieces (no frozen symbols, no resegmentation);
//   - every character of every piece is itself a piece, so a merge always joins two
//     pieces and can be looked up by the pair of ids;
//   - U+2581 only appears in a piece's leading run, so no merge crosses the boundary in
//     front of a U+2581 that follows another character.
//
// The normalized text then splits into independent words at those boundaries. Within a
// word the merge order (highest score, leftmost on ties) is the same as in the whole text,
// so the result is identical; words are cached like HF's BPE does.
type spFastBPE struct {
	pairs   *pairTable // pairKey(a, b) → float32 bits of the score << 32 | merged id
	charIDs []int32    // BMP rune → piece id, -1 if none
	wide    map[rune]int32
}

func (sp *SentencePiece) buildFastBPE() {
	m := sp.m
	for _, p := range m.pieces {
		if p.typ == pieceUserDefined || p.typ == pieceUnused {
			return
		}
	}
	fast := &spFastBPE{charIDs: make([]int32, 0x10000), wide: map[rune]int32{}}
	for i := range fast.charIDs {
		fast.charIDs[i] = -1
	}
	pairs := map[uint64]uint64{}
	for id, p := range m.pieces {
		if p.typ != pieceNormal {
			continue
		}
		if !utf8.ValidString(p.piece) {
			return
		}
		seenOther := false
		for i, r := range p.piece {
			if r == 0x2581 && seenOther {
				return
			}
			if r != 0x2581 {
				seenOther = true
			}
			n := utf8.RuneLen(r)
			if _, ok := sp.pieces[p.piece[i:i+n]]; !ok {
				return
			}
			if i == 0 && n == len(p.piece) {
				if r < 0x10000 {
					fast.charIDs[r] = int32(id)
				} else {
					fast.wide[r] = int32(id)
				}
			}
		}
		for k := 1; k < len(p.piece); k++ {
			if !utf8.RuneStart(p.piece[k]) {
				continue
			}
			a, okA := sp.pieces[p.piece[:k]]
			b, okB := sp.pieces[p.piece[k:]]
			if okA && okB {
				pairs[pairKey(a, b)] = uint64(math.Float32bits(p.score))<<32 | uint64(uint32(id))
			}
		}
	}
	fast.pairs = newPairTable(pairs)
	sp.fast = fast
}

func (f *spFastBPE) lookup(a, b int32) (float32, int32, bool) {
	if a < 0 || b < 0 {
		return 0, -1, false
	}
	v, ok := f.pairs.get(pairKey(a, b))
	if !ok {
		return 0, -1, false
	}
	return math.Float32frombits(uint32(v >> 32)), int32(uint32(v)), true
}

// encodeFast appends the ids of the normalized text s.
func (sp *SentencePiece) encodeFast(dst []int, s string, c *wordCache) []int {
	start := 0
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], spaceSymbol) {
			if i > start && !strings.HasSuffix(s[start:i], spaceSymbol) {
				dst = sp.encodeFastWord(dst, s[start:i], c)
				start = i
			}
			i += len(spaceSymbol)
			continue
		}
		i++
	}
	return sp.encodeFastWord(dst, s[start:], c)
}

func (sp *SentencePiece) encodeFastWord(dst []int, w string, c *wordCache) []int {
	if w == "" {
		return dst
	}
	if !sp.noCache {
		if ids, ok := c.get(w); ok {
			for _, id := range ids {
				dst = append(dst, int(id))
			}
			return dst
		}
	}
	f := sp.fast
	sc := &c.sc
	ids := sc.ids[:0]
	starts := sc.prev[:0] // byte offset of each symbol, for byte fallback of unknown characters
	for i := 0; i < len(w); {
		r, n := utf8.DecodeRuneInString(w[i:])
		id := int32(-1)
		if r < 0x10000 {
			id = f.charIDs[r]
		} else if v, ok := f.wide[r]; ok {
			id = v
		}
		ids = append(ids, id)
		starts = append(starts, int32(i))
		i += n
	}
	if len(ids) > 256 {
		ids, starts = f.mergeHeap(ids, starts)
	} else {
		ids, starts = f.mergeLinear(ids, starts)
	}
	out := sc.ranksAsIDs()
	for k, id := range ids {
		if id >= 0 {
			out = append(out, id)
			continue
		}
		end := len(w)
		if k+1 < len(starts) {
			end = int(starts[k+1])
		}
		piece := w[starts[k]:end]
		if sp.m.byteFallback {
			for i := 0; i < len(piece); i++ {
				out = append(out, sp.byteIDs[piece[i]])
			}
		} else {
			out = append(out, sp.unk)
		}
	}
	sc.ids, sc.prev = ids, starts
	if !sp.noCache {
		c.put(w, out)
	}
	for _, id := range out {
		dst = append(dst, int(id))
	}
	sc.next = sc.next[:0]
	return dst
}

// mergeLinear merges the highest-scoring adjacent pair, leftmost on ties, until none
// merges; starts (each symbol's byte offset) follows along. Quadratic: for short words.
func (f *spFastBPE) mergeLinear(ids, starts []int32) ([]int32, []int32) {
	for len(ids) > 1 {
		bi := -1
		var best float32
		var bid int32
		for i := 0; i+1 < len(ids); i++ {
			if s, id, ok := f.lookup(ids[i], ids[i+1]); ok && (bi < 0 || s > best) {
				bi, best, bid = i, s, id
			}
		}
		if bi < 0 {
			break
		}
		ids[bi] = bid
		copy(ids[bi+1:], ids[bi+2:])
		ids = ids[:len(ids)-1]
		copy(starts[bi+1:], starts[bi+2:])
		starts = starts[:len(starts)-1]
	}
	return ids, starts
}

// spFastCand is a queued merge of the symbol at pos with its successor.
type spFastCand struct {
	score float32
	pos   int32
	newID int32
}

func spFastBefore(a, b spFastCand) bool {
	return a.score > b.score || (a.score == b.score && a.pos < b.pos)
}

// mergeHeap is mergeLinear with a priority queue, O(n log n), for long words (text
// without spaces, such as Chinese). An entry whose pair has changed since it was queued
// is skipped: a symbol's span only grows, so the pair at pos cannot again give newID.
func (f *spFastBPE) mergeHeap(ids, starts []int32) ([]int32, []int32) {
	n := len(ids)
	next := make([]int32, n)
	prev := make([]int32, n)
	for i := range n {
		prev[i], next[i] = int32(i-1), int32(i+1)
	}
	next[n-1] = -1
	var h []spFastCand
	push := func(c spFastCand) {
		h = append(h, c)
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if !spFastBefore(h[i], h[p]) {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
	}
	pop := func() spFastCand {
		top := h[0]
		last := len(h) - 1
		h[0] = h[last]
		h = h[:last]
		for i := 0; ; {
			l := 2*i + 1
			if l >= len(h) {
				break
			}
			c := l
			if r := l + 1; r < len(h) && spFastBefore(h[r], h[l]) {
				c = r
			}
			if !spFastBefore(h[c], h[i]) {
				break
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
		return top
	}
	for i := 0; i+1 < n; i++ {
		if s, id, ok := f.lookup(ids[i], ids[i+1]); ok {
			push(spFastCand{s, int32(i), id})
		}
	}
	const dead = -2
	for len(h) > 0 {
		c := pop()
		p := c.pos
		if prev[p] == dead || next[p] < 0 {
			continue
		}
		q := next[p]
		if _, id, ok := f.lookup(ids[p], ids[q]); !ok || id != c.newID {
			continue
		}
		ids[p] = c.newID
		next[p] = next[q]
		prev[q] = dead
		if nq := next[q]; nq >= 0 {
			prev[nq] = p
		}
		if pp := prev[p]; pp >= 0 {
			if s, id, ok := f.lookup(ids[pp], ids[p]); ok {
				push(spFastCand{s, pp, id})
			}
		}
		if nq := next[p]; nq >= 0 {
			if s, id, ok := f.lookup(ids[p], ids[nq]); ok {
				push(spFastCand{s, p, id})
			}
		}
	}
	outIDs, outStarts := ids[:0], starts[:0]
	for i := int32(0); i >= 0; i = next[i] {
		outIDs = append(outIDs, ids[i])
		outStarts = append(outStarts, starts[i])
	}
	return outIDs, outStarts
}

// ranksAsIDs lends the scratch's next buffer as an id buffer.
func (s *bpeScratch) ranksAsIDs() []int32 { return s.next[:0] }
