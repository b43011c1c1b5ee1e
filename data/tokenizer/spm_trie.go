package tokenizer

// pieceTrie is a byte trie over the Unigram model's pieces (NORMAL, USER_DEFINED and
// UNUSED, the pieces SentencePiece's own trie holds), so the Viterbi lattice finds every
// piece starting at a position in one walk instead of one lookup per candidate length.
type pieceTrie struct {
	value []int32    // node → piece id ending there, -1 if none
	edges *pairTable // node<<8 | byte → child node
}

func newPieceTrie(pieces map[string]int32) *pieceTrie {
	t := &pieceTrie{value: []int32{-1}}
	edges := map[uint64]uint64{}
	for p, id := range pieces {
		node := uint64(0)
		for i := 0; i < len(p); i++ {
			k := node<<8 | uint64(p[i])
			child, ok := edges[k]
			if !ok {
				child = uint64(len(t.value))
				t.value = append(t.value, -1)
				edges[k] = child
			}
			node = child
		}
		t.value[node] = id
	}
	t.edges = newPairTable(edges)
	return t
}

// walk calls visit(end, id) for each piece that is a prefix of s[start:], shortest first.
func (t *pieceTrie) walk(s string, start int, visit func(end int, id int32)) {
	node := uint64(0)
	for i := start; i < len(s); i++ {
		child, ok := t.edges.get(node<<8 | uint64(s[i]))
		if !ok {
			return
		}
		node = child
		if id := t.value[node]; id >= 0 {
			visit(i+1, id)
		}
	}
}
