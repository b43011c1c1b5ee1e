package tokenizer

import "math"

// pieceTrie is a byte trie over the Unigram model's pieces (NORMAL, USER_DEFINED and
// UNUSED, the pieces SentencePiece's own trie holds), so the Viterbi lattice finds every
// piece starting at a position in one walk instead of one lookup per candidate length.
type pieceTrie struct {
	root  [256]int32 // first byte → node, 0 if no piece starts with it
	value []int32    // node → piece id ending there, -1 if none (node 0 is the root)
	edges *pairTable // node<<8 | byte → child node, below the first byte
	// score is each piece's lattice score as unigram_model.cc computes it, in float64
	// (its expression has type double): the piece score, or length·max_score − 0.1 for a
	// user-defined piece; NaN for UNUSED pieces, which the lattice skips.
	score []float64
}

func newPieceTrie(sp *SentencePiece) *pieceTrie {
	t := &pieceTrie{value: []int32{-1}, score: make([]float64, len(sp.m.pieces))}
	edges := map[uint64]uint64{}
	for p, id := range sp.pieces {
		if p == "" {
			continue
		}
		node := uint64(t.root[p[0]])
		if node == 0 {
			node = uint64(len(t.value))
			t.value = append(t.value, -1)
			t.root[p[0]] = int32(node)
		}
		for i := 1; i < len(p); i++ {
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
	for id, p := range sp.m.pieces {
		switch p.typ {
		case pieceUnused:
			t.score[id] = math.NaN()
		case pieceUserDefined:
			t.score[id] = float64(float32(len(p.piece))*sp.maxScore) - 0.1
		default:
			t.score[id] = float64(p.score)
		}
	}
	return t
}
