package tokenizer

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// bpe is a merge-rank BPE model as Hugging Face tokenizers' models::bpe::BPE runs it: a
// word starts as one symbol per character (byte-level vocabularies: per byte) and the
// adjacent pair with the lowest merge rank is merged, leftmost first on equal ranks,
// until no adjacent pair has a merge. GPT-2 vocab.json+merges.txt and tiktoken ranks are
// converted to this form.
type bpe struct {
	vocab  map[string]int32  // spelling → id; raw bytes for byte-level models
	tokens []string          // id → spelling (raw bytes for byte-level models); "" if unused
	merges map[uint64]uint64 // filled while loading; finish() turns it into table
	table  *pairTable

	byteLevel    bool
	byteFallback bool
	fuseUnk      bool
	ignoreMerges bool
	noCache      bool       // benchmarks: measure without the word cache
	unk          int32      // unk id, -1 if none
	byteIDs      [256]int32 // byte-level: id of each byte; byte_fallback: id of <0xNN>; -1 if absent
}

// pairKey packs a symbol pair into a merge-table key.
func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

const noMerge = math.MaxUint32

// addMerge records that left+right merge with the given rank. A repeated pair keeps the
// last rank, as HF's HashMap built from the merges list does.
func (m *bpe) addMerge(left, right string, rank int) error {
	a, ok := m.vocab[left]
	if !ok {
		return fmt.Errorf("merge %d: %q is not in the vocab", rank, left)
	}
	b, ok := m.vocab[right]
	if !ok {
		return fmt.Errorf("merge %d: %q is not in the vocab", rank, right)
	}
	c, ok := m.vocab[left+right]
	if !ok {
		return fmt.Errorf("merge %d: %q is not in the vocab", rank, left+right)
	}
	m.merges[pairKey(a, b)] = uint64(rank)<<32 | uint64(uint32(c))
	return nil
}

// initByteIDs fills byteIDs from the vocab.
func (m *bpe) initByteIDs() {
	for b := 0; b < 256; b++ {
		m.byteIDs[b] = -1
		var key string
		switch {
		case m.byteLevel:
			key = string([]byte{byte(b)})
		case m.byteFallback:
			key = fmt.Sprintf("<0x%02X>", b)
		default:
			continue
		}
		if id, ok := m.vocab[key]; ok {
			m.byteIDs[b] = id
		}
	}
}

// finish builds the lookup structures once the vocab and merges are loaded.
func (m *bpe) finish() {
	m.initByteIDs()
	m.table = newPairTable(m.merges)
	m.merges = nil
}

// bpeScratch holds the per-call buffers of bpe.encode so a call allocates little.
type bpeScratch struct {
	ids   []int32
	ranks []uint32
	heap  []bpeCand
	prev  []int32
	next  []int32
}

// encode appends the ids of one pre-token (already normalized; raw bytes for byte-level
// models) to dst.
func (m *bpe) encode(dst []int, word string, c *wordCache) []int {
	if len(word) == 0 {
		return dst
	}
	if m.byteLevel && len(word) == 1 {
		if id := m.byteIDs[word[0]]; id >= 0 {
			return append(dst, int(id))
		}
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, int(id))
		}
	}
	if ids, ok := c.get(word); ok && !m.noCache {
		for _, id := range ids {
			dst = append(dst, int(id))
		}
		return dst
	}
	s := &c.sc
	ids := s.ids[:0]
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			if id := m.byteIDs[word[i]]; id >= 0 {
				ids = append(ids, id)
			} else if m.unk >= 0 {
				ids = append(ids, m.unk)
			}
		}
	} else {
		lastUnk := false
		for i := 0; i < len(word); {
			_, n := utf8.DecodeRuneInString(word[i:])
			ch := word[i : i+n]
			i += n
			if id, ok := m.vocab[ch]; ok {
				ids = append(ids, id)
				lastUnk = false
				continue
			}
			if m.byteFallback {
				okAll := true
				for k := 0; k < len(ch); k++ {
					if m.byteIDs[ch[k]] < 0 {
						okAll = false
					}
				}
				if okAll {
					for k := 0; k < len(ch); k++ {
						ids = append(ids, m.byteIDs[ch[k]])
					}
					lastUnk = false
					continue
				}
			}
			if m.unk >= 0 && !(m.fuseUnk && lastUnk) {
				ids = append(ids, m.unk)
			}
			lastUnk = m.unk >= 0
		}
	}
	if len(ids) > 256 {
		ids = m.mergeHeap(ids, s)
	} else {
		ids = m.mergeLinear(ids, s)
	}
	s.ids = ids
	if !m.noCache {
		c.put(word, ids)
	}
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst
}

func (m *bpe) lookup(a, b int32) (rank uint32, id int32) {
	v, ok := m.table.get(pairKey(a, b))
	if !ok {
		return noMerge, -1
	}
	return uint32(v >> 32), int32(uint32(v))
}

// mergeLinear merges by scanning for the lowest-ranked pair; best for short words.
func (m *bpe) mergeLinear(ids []int32, s *bpeScratch) []int32 {
	n := len(ids)
	if n < 2 {
		return ids
	}
	ranks := s.ranks[:0]
	for i := 0; i+1 < n; i++ {
		r, _ := m.lookup(ids[i], ids[i+1])
		ranks = append(ranks, r)
	}
	s.ranks = ranks
	for len(ids) > 1 {
		best, bi := uint32(noMerge), -1
		for i, r := range ranks {
			if r < best {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		_, id := m.lookup(ids[bi], ids[bi+1])
		ids[bi] = id
		copy(ids[bi+1:], ids[bi+2:])
		ids = ids[:len(ids)-1]
		copy(ranks[bi:], ranks[bi+1:])
		ranks = ranks[:len(ranks)-1]
		if bi > 0 {
			ranks[bi-1], _ = m.lookup(ids[bi-1], ids[bi])
		}
		if bi < len(ranks) {
			ranks[bi], _ = m.lookup(ids[bi], ids[bi+1])
		}
	}
	return ids
}

// bpeCand is a queued merge: lowest rank first, then leftmost position.
type bpeCand struct {
	rank  uint32
	pos   int32
	newID int32
}

func candLess(a, b bpeCand) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

func heapPush(h []bpeCand, c bpeCand) []bpeCand {
	h = append(h, c)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !candLess(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []bpeCand) (bpeCand, []bpeCand) {
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && candLess(h[r], h[l]) {
			c = r
		}
		if !candLess(h[c], h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	return top, h
}

// mergeHeap is HF's Word::merge_all: a priority queue of candidate merges with stale
// entries skipped; O(n log n) for long words (SentencePiece-style models see whole texts).
func (m *bpe) mergeHeap(ids []int32, s *bpeScratch) []int32 {
	n := len(ids)
	prev, next := s.prev[:0], s.next[:0]
	for i := 0; i < n; i++ {
		prev = append(prev, int32(i-1))
		nx := int32(i + 1)
		if i == n-1 {
			nx = -1
		}
		next = append(next, nx)
	}
	h := s.heap[:0]
	for i := 0; i+1 < n; i++ {
		if r, id := m.lookup(ids[i], ids[i+1]); r != noMerge {
			h = heapPush(h, bpeCand{r, int32(i), id})
		}
	}
	dead := int32(-2)
	for len(h) > 0 {
		var top bpeCand
		top, h = heapPop(h)
		p := top.pos
		if prev[p] == dead || next[p] < 0 {
			continue
		}
		q := next[p]
		if _, id := m.lookup(ids[p], ids[q]); id != top.newID {
			continue
		}
		ids[p] = top.newID
		next[p] = next[q]
		prev[q] = dead
		if nq := next[q]; nq >= 0 {
			prev[nq] = p
		}
		if pp := prev[p]; pp >= 0 {
			if r, id := m.lookup(ids[pp], ids[p]); r != noMerge {
				h = heapPush(h, bpeCand{r, pp, id})
			}
		}
		if nq := next[p]; nq >= 0 {
			if r, id := m.lookup(ids[p], ids[nq]); r != noMerge {
				h = heapPush(h, bpeCand{r, p, id})
			}
		}
	}
	s.prev, s.next, s.heap = prev, next, h
	out := ids[:0]
	for i := int32(0); i >= 0 && int(i) < n; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}
