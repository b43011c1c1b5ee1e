package tokenizer

import "sync"

// pairTable is an open-addressing hash table from a packed symbol pair (pairKey) to a
// packed merge (rank<<32 | merged id). BPE encoding is dominated by these lookups, and a
// flat table with linear probing is several times faster than a Go map for them.
type pairTable struct {
	keys  []uint64
	vals  []uint64
	shift uint
}

const pairEmpty = ^uint64(0)

func newPairTable(m map[uint64]uint64) *pairTable {
	size := 16
	for size < 2*len(m) {
		size <<= 1
	}
	bits := uint(0)
	for 1<<bits < size {
		bits++
	}
	t := &pairTable{keys: make([]uint64, size), vals: make([]uint64, size), shift: 64 - bits}
	for i := range t.keys {
		t.keys[i] = pairEmpty
	}
	mask := uint64(size - 1)
	for k, v := range m {
		i := (k * 0x9E3779B97F4A7C15) >> t.shift
		for t.keys[i] != pairEmpty {
			i = (i + 1) & mask
		}
		t.keys[i], t.vals[i] = k, v
	}
	return t
}

func (t *pairTable) get(k uint64) (uint64, bool) {
	mask := uint64(len(t.keys) - 1)
	i := (k * 0x9E3779B97F4A7C15) >> t.shift
	for {
		kk := t.keys[i]
		if kk == k {
			return t.vals[i], true
		}
		if kk == pairEmpty {
			return 0, false
		}
		i = (i + 1) & mask
	}
}

// wordCache remembers the ids of recently seen words, as HF tokenizers' BPE cache does.
// A tokenizer keeps its caches in a sync.Pool, so concurrent Encode calls each use their
// own and none takes a lock; a cache that grows past its budget is emptied.
type wordCache struct {
	m     map[string][]int32
	bytes int
	sc    bpeScratch
	uni   uniScratch
}

const (
	cacheMaxWord  = 256     // longer words are not cached
	cacheMaxBytes = 8 << 20 // approximate budget per cache
)

func (c *wordCache) get(w string) ([]int32, bool) {
	ids, ok := c.m[w]
	return ids, ok
}

func (c *wordCache) put(w string, ids []int32) {
	if len(w) > cacheMaxWord {
		return
	}
	if c.m == nil || c.bytes > cacheMaxBytes {
		c.m = make(map[string][]int32, 1024)
		c.bytes = 0
	}
	c.m[string([]byte(w))] = append([]int32(nil), ids...)
	c.bytes += len(w) + 4*len(ids) + 64
}

// cachePool hands out wordCaches.
type cachePool struct{ p sync.Pool }

func (p *cachePool) get() *wordCache {
	if c, ok := p.p.Get().(*wordCache); ok {
		return c
	}
	return &wordCache{}
}

func (p *cachePool) put(c *wordCache) { p.p.Put(c) }
