package layers

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// Recompute is Megatron's activation recomputation (--recompute-granularity,
// --recompute-method, --recompute-num-layers).
//
// "selective" recomputes the core attention (softmax probabilities and their dropout). The
// attention kernel never stores the S×S probabilities at all — it keeps the output and the
// log-sum-exp and recomputes P in backward, flash-attention style — so selective recompute is
// what every run already does, and the setting changes nothing.
//
// "full" keeps only the input of each chunk of layers and re-runs the chunk's forward right
// before its backward: "uniform" cuts the stage's layers into chunks of NumLayers and
// recomputes every chunk; "block" recomputes the first NumLayers layers of the stage one by
// one and keeps the others' activations. Recomputed layers share one set of activation
// buffers across chunks and microbatches, which is where the memory goes down. Dropout masks
// are functions of (seed, step, position), so the recomputed forward is bitwise the original.
type Recompute struct {
	Granularity string // "", "selective" or "full"
	Method      string // "uniform" or "block" (full only)
	NumLayers   int
}

// chunk is a run of consecutive local layers [lo, hi); recompute marks a checkpointed one.
type chunk struct {
	lo, hi    int
	recompute bool
}

// SetRecompute configures activation recomputation; call it before NewStash.
func (m *GPTModel) SetRecompute(r Recompute) error {
	n := len(m.Layers)
	m.chunks = nil
	switch r.Granularity {
	case "", "selective":
		if r.Method != "" || r.NumLayers != 0 {
			return fmt.Errorf("--recompute-method and --recompute-num-layers need --recompute-granularity full")
		}
		m.chunks = []chunk{{0, n, false}}
		return nil
	case "full":
	default:
		return fmt.Errorf("--recompute-granularity %q: want selective or full", r.Granularity)
	}
	if r.NumLayers <= 0 {
		return fmt.Errorf("--recompute-granularity full needs --recompute-num-layers ≥ 1, got %d", r.NumLayers)
	}
	switch r.Method {
	case "uniform":
		for lo := 0; lo < n; lo += r.NumLayers {
			m.chunks = append(m.chunks, chunk{lo, min(lo+r.NumLayers, n), true})
		}
	case "block":
		k := min(r.NumLayers, n)
		for i := 0; i < k; i++ {
			m.chunks = append(m.chunks, chunk{i, i + 1, true})
		}
		if k < n {
			m.chunks = append(m.chunks, chunk{k, n, false})
		}
	default:
		return fmt.Errorf("--recompute-method %q: want uniform or block", r.Method)
	}
	return nil
}

// layerChunks returns the chunking, the whole stage as one kept chunk by default.
func (m *GPTModel) layerChunks() []chunk {
	if m.chunks == nil {
		return []chunk{{0, len(m.Layers), false}}
	}
	return m.chunks
}

// allocLayerStashes gives kept layers their own activations and recomputed layers the
// model's shared ones, plus a saved input per recomputed chunk and a stage output buffer.
func (m *GPTModel) allocLayerStashes(st *Stash, s, b int) {
	st.layers = make([]*layerStash, len(m.Layers))
	st.chunkIn = make([]*tensor.Tensor, len(m.layerChunks()))
	widest := 0
	for ci, ch := range m.layerChunks() {
		if !ch.recompute {
			for i := ch.lo; i < ch.hi; i++ {
				st.layers[i] = m.Layers[i].newStash(m.be, m.act, s, b)
			}
			continue
		}
		widest = max(widest, ch.hi-ch.lo)
		st.chunkIn[ci] = m.be.Alloc(m.act, st.rows(m), m.Cfg.HiddenSize)
	}
	if widest > 0 {
		if m.shared == nil || m.shared[0].q.DType() != m.act || m.shared[0].q.Dim(2) != s || m.shared[0].q.Dim(0) != b || len(m.shared) < widest {
			m.shared = nil
			for i := 0; i < widest; i++ {
				sh := m.Layers[0].newStash(m.be, m.act, s, b)
				for _, l := range m.Layers[1:] { // MoE and dense layers may share it
					l.completeStash(m.be, sh, m.act, s, b)
				}
				m.shared = append(m.shared, sh)
			}
		}
		for _, ch := range m.layerChunks() {
			if ch.recompute {
				for i := ch.lo; i < ch.hi; i++ {
					st.layers[i] = m.shared[i-ch.lo]
				}
			}
		}
	}
	if ch := m.layerChunks(); len(m.Layers) > 0 && ch[len(ch)-1].recompute {
		st.lastOut = m.be.Alloc(m.act, st.rows(m), m.Cfg.HiddenSize)
	}
}

// rows is this rank's row count Nl.
func (st *Stash) rows(m *GPTModel) int {
	n := st.S * st.B
	if m.Par.sp() {
		n /= m.Par.tpSize()
	}
	return n
}

// forwardLayers runs the stage's layers on x, saving each recomputed chunk's input.
func (m *GPTModel) forwardLayers(st *Stash, x *tensor.Tensor) error {
	for ci, ch := range m.layerChunks() {
		if ch.recompute {
			m.be.Copy(st.chunkIn[ci], x)
		}
		var err error
		if x, err = m.runLayers(st, ch, x); err != nil {
			return err
		}
	}
	if st.lastOut != nil {
		m.be.Copy(st.lastOut, x)
	}
	return nil
}

func (m *GPTModel) runLayers(st *Stash, ch chunk, x *tensor.Tensor) (*tensor.Tensor, error) {
	for i := ch.lo; i < ch.hi; i++ {
		l, ls := m.Layers[i], st.layers[i]
		// Sites spaced by the whole sequence (context parallelism holds part of it).
		ls.dropSeed, ls.dropOffs = st.seed, dropOffset(st.step, l.Index+1, 2*st.fullS*st.B*m.Cfg.HiddenSize)
		ls.positions, ls.keyStart, ls.keyChunks = st.ropePos, st.keyStart, st.keyChunks
		if err := l.Forward(m.be, ls, x); err != nil {
			return nil, fmt.Errorf("layer %d: %w", l.Index, err)
		}
		x = ls.out
	}
	return x, nil
}

// backwardLayers runs the layers' backward on d (in place), re-running each recomputed
// chunk's forward from its saved input first.
func (m *GPTModel) backwardLayers(st *Stash, d *tensor.Tensor) error {
	chunks := m.layerChunks()
	for ci := len(chunks) - 1; ci >= 0; ci-- {
		ch := chunks[ci]
		if ch.recompute {
			if _, err := m.runLayers(st, ch, st.chunkIn[ci]); err != nil {
				return fmt.Errorf("recomputing: %w", err)
			}
		}
		for i := ch.hi - 1; i >= ch.lo; i-- {
			if err := m.Layers[i].Backward(m.be, st.layers[i], st.grads, d, d); err != nil {
				return fmt.Errorf("layer %d backward: %w", m.Layers[i].Index, err)
			}
			m.gradsReady(m.Layers[i].params)
		}
	}
	return nil
}
