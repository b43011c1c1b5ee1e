package tokenizer

import "math"

// spSym is a symbol of the SentencePiece BPE encoder: a span of the normalized text.
type spSym struct {
	start, end int32
	prev, next int32
	freeze     bool // user-defined symbol: never merged
}

// spCand is a candidate merge of symbols left and right into a piece of score score
// and byte size size (the size detects stale entries, as bpe_model.cc does).
type spCand struct {
	score       float32
	left, right int32
	size        int32
}

// spBefore orders the agenda: higher score first, then the leftmost pair.
func spBefore(a, b spCand) bool {
	return a.score > b.score || (a.score == b.score && a.left < b.left)
}

// encodeBPE is bpe_model.cc Model::Encode: start from characters (user-defined symbols
// whole and frozen) and repeatedly merge the adjacent pair whose concatenation is a
// piece with the highest score, leftmost first on ties; UNUSED pieces produced by a merge
// are split back into the pieces they were merged from.
func (sp *SentencePiece) encodeBPE(s string, emit func(string, int32)) {
	if s == "" {
		return
	}
	syms := make([]spSym, 0, len(s))
	for i := 0; i < len(s); {
		n, freeze := 0, false
		if sp.user != nil && sp.user.first[s[i]] {
			for _, k := range sp.user.byLead[s[i]] {
				c := sp.user.tokens[k].Content
				if len(c) <= len(s)-i && s[i:i+len(c)] == c {
					n, freeze = len(c), true
					break
				}
			}
		}
		if n == 0 {
			n = oneCharLen(s[i])
			if n > len(s)-i {
				n = len(s) - i
			}
		}
		k := int32(len(syms))
		next := k + 1
		if i+n >= len(s) {
			next = -1
		}
		syms = append(syms, spSym{start: int32(i), end: int32(i + n), prev: k - 1, next: next, freeze: freeze})
		i += n
	}
	var agenda []spCand
	var revMerge map[string][2]string
	push := func(l, r int32) {
		if l < 0 || r < 0 || syms[l].freeze || syms[r].freeze {
			return
		}
		piece := s[syms[l].start:syms[r].end]
		id, ok := sp.pieces[piece]
		if !ok {
			return
		}
		p := &sp.m.pieces[id]
		c := spCand{p.score, l, r, int32(len(piece))}
		agenda = append(agenda, c)
		i := len(agenda) - 1
		for i > 0 {
			j := (i - 1) / 2
			if !spBefore(agenda[i], agenda[j]) {
				break
			}
			agenda[i], agenda[j] = agenda[j], agenda[i]
			i = j
		}
		if p.typ == pieceUnused {
			if revMerge == nil {
				revMerge = map[string][2]string{}
			}
			revMerge[piece] = [2]string{s[syms[l].start:syms[l].end], s[syms[r].start:syms[r].end]}
		}
	}
	pop := func() spCand {
		top := agenda[0]
		last := len(agenda) - 1
		agenda[0] = agenda[last]
		agenda = agenda[:last]
		i := 0
		for {
			l := 2*i + 1
			if l >= len(agenda) {
				break
			}
			c := l
			if r := l + 1; r < len(agenda) && spBefore(agenda[r], agenda[l]) {
				c = r
			}
			if !spBefore(agenda[c], agenda[i]) {
				break
			}
			agenda[i], agenda[c] = agenda[c], agenda[i]
			i = c
		}
		return top
	}
	for i := 1; i < len(syms); i++ {
		push(int32(i-1), int32(i))
	}
	for len(agenda) > 0 {
		top := pop()
		l, r := &syms[top.left], &syms[top.right]
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != top.size {
			continue
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = top.left
		}
		r.start, r.end = 0, 0
		push(l.prev, top.left)
		push(top.left, l.next)
	}
	var reseg func(w string)
	reseg = func(w string) {
		id := sp.pieceToID(w)
		if revMerge != nil && sp.m.pieces[id].typ == pieceUnused {
			if p, ok := revMerge[w]; ok {
				reseg(p[0])
				reseg(p[1])
				return
			}
		}
		emit(w, id)
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		reseg(s[syms[i].start:syms[i].end])
	}
}

// oneCharLen is SentencePiece's OneCharLen: the UTF-8 length announced by a lead byte.
func oneCharLen(b byte) int {
	return int([16]uint8{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4}[b>>4])
}

// unkPenalty is unigram_model.cc's kUnkPenalty.
const unkPenalty = float32(10.0)

// encodeUnigram is unigram_model.cc Model::EncodeOptimized: Viterbi over the lattice of
// pieces. A node's path score is kept as a float32; candidates are computed in float64
// as the C++ code does (its per-piece score expression has type double), compared
// against the stored float32 and rounded when stored. User-defined pieces score
// length·max_score − 0.1; a character no piece starts with becomes an unknown node of
// score min_score − 10.
func (sp *SentencePiece) encodeUnigram(s string, emit func(string, int32), sc *uniScratch) {
	size := len(s)
	if size == 0 {
		return
	}
	type node = uniNode
	if cap(sc.best) < size+1 {
		sc.best = make([]uniNode, size+1)
	}
	best := sc.best[:size+1]
	for i := range best {
		best[i] = node{id: -1, startsAt: -1}
	}
	unkScore := sp.minScore - unkPenalty
	tr := sp.trie
	for start := 0; start < size; {
		here := float64(best[start].score)
		mblen := min(oneCharLen(s[start]), size-start)
		hasSingle := false
		// Walk the trie over s[start:]: every node with a piece is a lattice node.
		nd := uint64(tr.root[s[start]])
		for i := start; nd != 0; {
			if id := tr.value[nd]; id >= 0 {
				if score := tr.score[id]; !math.IsNaN(score) {
					end := i + 1
					cand := score + here
					t := &best[end]
					if t.startsAt == -1 || cand > float64(t.score) {
						*t = node{id: id, score: float32(cand), startsAt: int32(start)}
					}
					if end-start == mblen {
						hasSingle = true
					}
				}
			}
			i++
			if i >= size {
				break
			}
			child, ok := tr.edges.get(nd<<8 | uint64(s[i]))
			if !ok {
				break
			}
			nd = child
		}
		if !hasSingle {
			t := &best[start+mblen]
			cand := unkScore + float32(here)
			if t.startsAt == -1 || cand > t.score {
				*t = node{id: sp.unk, score: cand, startsAt: int32(start)}
			}
		}
		start += mblen
	}
	path := sc.path[:0]
	for end := size; end > 0; {
		n := best[end]
		path = append(path, int32(end))
		end = int(n.startsAt)
	}
	sc.path = path
	for i := len(path) - 1; i >= 0; i-- {
		end := int(path[i])
		n := best[end]
		emit(s[n.startsAt:end], n.id)
	}
}

// uniNode is a lattice position of the Viterbi search: the best path ending there.
type uniNode struct {
	id       int32
	score    float32
	startsAt int32
}

// uniScratch holds encodeUnigram's buffers between calls.
type uniScratch struct {
	best []uniNode
	path []int32
}
