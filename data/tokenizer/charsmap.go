package tokenizer

import (
	"encoding/binary"
	"fmt"
)

// charsMap is SentencePiece's precompiled normalization rule set
// (NormalizerSpec.precompiled_charsmap, e.g. nmt_nfkc): a little-endian uint32 trie size,
// a darts-clone double-array trie of that many bytes mapping input byte strings to offsets,
// then the NUL-terminated replacement strings those offsets point into.
type charsMap struct {
	units      []uint32
	normalized string
}

func newCharsMap(blob []byte) (*charsMap, error) {
	if len(blob) < 4 {
		return nil, fmt.Errorf("precompiled_charsmap: %d bytes, too short", len(blob))
	}
	n := binary.LittleEndian.Uint32(blob)
	if n%4 != 0 || uint64(n) > uint64(len(blob)-4) {
		return nil, fmt.Errorf("precompiled_charsmap: trie size %d does not fit %d bytes", n, len(blob))
	}
	c := &charsMap{units: make([]uint32, n/4), normalized: string(blob[4+n:])}
	for i := range c.units {
		c.units[i] = binary.LittleEndian.Uint32(blob[4+4*i:])
	}
	if len(c.units) == 0 {
		return nil, fmt.Errorf("precompiled_charsmap: empty trie")
	}
	return c, nil
}

// longest is darts-clone's commonPrefixSearch keeping the longest match, as
// sentencepiece's Normalizer::NormalizePrefix does: it returns the replacement for the
// longest rule that is a prefix of s and that prefix's length, or n == 0 if none.
//
// A unit encodes: has_leaf = bit 8; value = low 31 bits; label = bit 31 | low 8 bits;
// offset = (unit >> 10) << ((unit & (1<<9)) >> 6).
func (c *charsMap) longest(s string) (repl string, n int) {
	u := c.units
	pos := uint32(0)
	unit := u[0]
	pos ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
	best := -1
	bestLen := 0
	for i := 0; i < len(s); i++ {
		pos ^= uint32(s[i])
		if int(pos) >= len(u) {
			break
		}
		unit = u[pos]
		if unit&(1<<31|0xFF) != uint32(s[i]) {
			break
		}
		pos ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
		if (unit>>8)&1 == 1 {
			if int(pos) >= len(u) {
				break
			}
			best = int(u[pos] & 0x7FFFFFFF)
			bestLen = i + 1
		}
	}
	if best < 0 || best >= len(c.normalized) {
		return "", 0
	}
	end := best
	for end < len(c.normalized) && c.normalized[end] != 0 {
		end++
	}
	return c.normalized[best:end], bestLen
}
