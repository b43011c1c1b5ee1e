package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/internal/atomicfile"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// shardWriter streams Megatron shard files: the state dict is built with a
// torchpickle.LazyTensor per parameter, and torchpickle.SaveStream produces each one
// (read from the source, resized, cut, cast, written) only when its storage entry is
// written, so peak memory is about one source tensor (as float32, plus its resized and
// cut copies) instead of the whole shard. The file is byte-identical to saving the
// materialised shard.
type shardWriter struct {
	c      *cli
	src    source
	vp     *vocabPlan
	loc    megatron.Location
	args   *torchpickle.Namespace
	format megatron.Format
	cfg    layers.Config // the target model
	dtype  tensor.DType
	prog   *progress
	stdout io.Writer
	// zero backs the shape-only stand-ins given to megatron.ModelDict (which wants
	// *tensor.Tensor values to lay out the dict): one buffer of the largest parameter's
	// size, never written or read, so its pages are never touched.
	zero []byte
}

// maxParamBytes is the largest target parameter's size in dt over all shards.
func maxParamBytes(stages [][][]layers.Params, dt tensor.DType) int {
	m := 0
	for _, ranks := range stages {
		for _, st := range ranks {
			for _, specs := range st {
				for _, p := range specs {
					m = max(m, tensor.ShapeNumel(p.Shape)*storedDType(p, dt).Size())
				}
			}
		}
	}
	return m
}

// write streams shard (tp, pp) of expert-parallel rank ep to its model_optim_rng.pt.
func (w *shardWriter) write(ep, tp, pp int, specs layers.Params) error {
	stand := make(map[string]*tensor.Tensor, len(specs))
	lazy := make(map[*tensor.Tensor]*torchpickle.LazyTensor, len(specs))
	for _, p := range specs {
		dt := storedDType(p, w.dtype)
		t, err := tensor.FromBytes(dt, p.Shape, w.zero[:tensor.ShapeNumel(p.Shape)*dt.Size()])
		if err != nil {
			return fmt.Errorf("parameter %s: %w", p.Name, err)
		}
		stand[p.Name] = t
		lazy[t] = &torchpickle.LazyTensor{Name: p.Name, DType: dt, Shape: p.Shape,
			Fill: func(out io.Writer) error { return w.fill(out, p, tp) }}
	}
	model, err := megatron.ModelDict(w.format, specs, stand)
	if err != nil {
		return err
	}
	if n := replaceTensors(model, lazy); n != len(specs) {
		return fmt.Errorf("shard tp %d pp %d: %d of %d parameters found in the model dict", tp, pp, n, len(specs))
	}
	loc := w.loc
	loc.ExpertRank = ep
	path := loc.ShardFile(tp, pp, w.c.TargetPP, megatron.ModelFile)
	if w.c.PrintStructure {
		printShard(w.stdout, path, w.format, specs, w.dtype)
	}
	// As megatron.SaveShard, streamed.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("megatron: %w", err)
	}
	if err := torchpickle.SaveStream(path, megatron.StateDict(w.args, w.loc.Iteration, model)); err != nil {
		return fmt.Errorf("megatron: %w", err)
	}
	atomicfile.SyncDir(filepath.Dir(path))
	return nil
}

// writeDist writes every shard in the torch_dist format, one data file per (ep, pp, tp)
// rank, each parameter read from the source when its turn comes.
func (w *shardWriter) writeDist(stages [][][]layers.Params) error {
	dir := w.loc.Dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("megatron: %w", err)
	}
	rank := 0
	for e := range stages {
		for pp := range stages[e] {
			for tp, specs := range stages[e][pp] {
				sh := megatron.DistShard{Cfg: w.cfg, Format: w.format, TPRank: tp, TPSize: w.c.TargetTP}
				for _, p := range specs {
					if !megatron.DistWrites(p, tp, e) {
						w.prog.add(1)
						continue
					}
					sh.Params = append(sh.Params, megatron.DistParam{Param: p, DType: storedDType(p, w.dtype), Local: func() ([]float32, error) {
						defer w.prog.add(1)
						return w.local(p, tp)
					}})
					if w.c.PrintStructure {
						fmt.Fprintf(w.stdout, "%s %v %v\n", p.InitKey, p.FullShape, storedDType(p, w.dtype))
					}
				}
				if err := megatron.WriteDistShard(dir, rank, sh); err != nil {
					return err
				}
				rank++
			}
		}
	}
	return megatron.FinishDist(dir, megatron.StateDictChunks(w.args, w.loc.Iteration, nil))
}

// local is parameter p's TP rank tp shard: the source's full tensor, resized if it is
// vocabulary-indexed, cut to the rank.
func (w *shardWriter) local(p *layers.Param, tp int) ([]float32, error) {
	return p.LocalFrom(func(q *layers.Param) ([]float32, error) {
		vals, shape, err := w.src.full(q.InitKey)
		if err != nil {
			return nil, err
		}
		if vals, shape, err = w.vp.apply(q.InitKey, vals, shape); err != nil {
			return nil, err
		}
		if !tensor.SameShape(shape, q.FullShape) {
			return nil, fmt.Errorf("%s: source tensor %s has shape %v, the target model needs %v", w.c.LoadPath, q.InitKey, shape, q.FullShape)
		}
		return vals, nil
	}, tp, w.c.TargetTP)
}

// fill produces parameter p of TP rank tp (local), cast to the target dtype and written in
// chunks.
func (w *shardWriter) fill(out io.Writer, p *layers.Param, tp int) error {
	local, err := w.local(p, tp)
	if err != nil {
		return err
	}
	if err := writeCast(out, storedDType(p, w.dtype), local); err != nil {
		return err
	}
	w.prog.add(1)
	return nil
}

// castChunk is how many values writeCast rounds at a time (4 MiB of float32).
const castChunk = 1 << 20

// writeCast writes v rounded to dt (tensor.ConvertFromF32, as tensor.FromF32Values)
// through one reused chunk buffer instead of a whole cast copy.
func writeCast(w io.Writer, dt tensor.DType, v []float32) error {
	buf := tensor.New(dt, min(castChunk, len(v)))
	for i := 0; i < len(v); i += castChunk {
		n := min(castChunk, len(v)-i)
		t := buf
		if n < buf.Numel() {
			t = buf.Slice(0, n)
		}
		tensor.ConvertFromF32(t, v[i:i+n])
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// replaceTensors swaps, throughout the nested dicts under d, every tensor that is a key of
// lazy for its lazy counterpart, and returns how many it swapped.
func replaceTensors(d *torchpickle.Dict, lazy map[*tensor.Tensor]*torchpickle.LazyTensor) int {
	n := 0
	for i, v := range d.Values {
		switch x := v.(type) {
		case *torchpickle.Dict:
			n += replaceTensors(x, lazy)
		case *tensor.Tensor:
			if l, ok := lazy[x]; ok {
				d.Values[i] = l
				n++
			}
		}
	}
	return n
}

// storedDType is the dtype parameter p is written in: dt, or F32 for a buffer (Megatron
// keeps the expert bias in fp32).
func storedDType(p *layers.Param, dt tensor.DType) tensor.DType {
	if p.Buffer {
		return tensor.F32
	}
	return dt
}
