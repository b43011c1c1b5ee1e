// Package sampler gives Megatron's data-loader order (megatron/data/data_samplers.py): which
// dataset indices each data-parallel rank reads for its next micro-batch, for
// --dataloader-type single (MegatronPretrainingSampler) and cyclic
// (MegatronPretrainingRandomSampler, torch.randperm per epoch, with or without
// --no-data-sharding). A sampler starts at the consumed-samples count of a checkpoint, so a
// resumed run reads what the uninterrupted one would have.
package sampler

import "fmt"

// Config is one data loader's shape: the dataset size, the micro-batch size and this rank's
// place among the data-parallel ranks.
type Config struct {
	Total          int   // len(dataset)
	MicroBatchSize int   // --micro-batch-size
	DPSize, DPRank int   // data-parallel size and rank
	Consumed       int64 // samples consumed before the first micro-batch (all ranks together)
}

// Sampler yields this rank's micro-batches one after another.
type Sampler interface {
	// Next returns the dataset indices of this rank's next micro-batch.
	Next() ([]int, error)
}

// New returns the sampler of --dataloader-type kind ("single" or "cyclic"); sharding is
// Megatron's data_sharding (on unless --no-data-sharding).
func New(kind string, c Config, sharding bool) (Sampler, error) {
	if c.Total <= 0 {
		return nil, fmt.Errorf("no sample to consume: the dataset is empty")
	}
	if c.MicroBatchSize <= 0 || c.DPSize <= 0 || c.DPRank < 0 || c.DPRank >= c.DPSize || c.Consumed < 0 {
		return nil, fmt.Errorf("sampler: micro-batch size %d, data-parallel rank %d of %d, consumed %d: out of range", c.MicroBatchSize, c.DPRank, c.DPSize, c.Consumed)
	}
	switch kind {
	case "single":
		if c.Consumed >= int64(c.Total) {
			return nil, fmt.Errorf("no samples left to consume: %d consumed of %d", c.Consumed, c.Total)
		}
		return &single{c}, nil
	case "cyclic":
		step := c.MicroBatchSize * c.DPSize
		if c.Total < step {
			return nil, fmt.Errorf("--dataloader-type cyclic: the dataset's %d samples do not fill one micro-batch on every data-parallel rank (%d × %d)", c.Total, c.MicroBatchSize, c.DPSize)
		}
		if uint64(c.Total) >= (1<<32)/20 {
			return nil, fmt.Errorf("--dataloader-type cyclic: %d samples is beyond the torch.randperm sequence reproduced here (< %d)", c.Total, (1<<32)/20)
		}
		return &cyclic{Config: c, sharding: sharding}, nil
	}
	return nil, fmt.Errorf("--dataloader-type %q: want single or cyclic", kind)
}

// single is MegatronPretrainingSampler: consecutive chunks of MicroBatchSize·DPSize
// samples, rank r taking rows [r·mbs, (r+1)·mbs) of each; an incomplete last chunk is
// dropped and the loader then ends.
type single struct{ Config }

func (s *single) Next() ([]int, error) {
	step := int64(s.MicroBatchSize * s.DPSize)
	if s.Consumed+step > int64(s.Total) {
		return nil, fmt.Errorf("the dataset has %d samples and %d are consumed: no full batch of %d left (--dataloader-type single does not wrap around)", s.Total, s.Consumed, step)
	}
	out := make([]int, s.MicroBatchSize)
	base := int(s.Consumed) + s.DPRank*s.MicroBatchSize
	for k := range out {
		out[k] = base + k
	}
	s.Consumed += step
	return out, nil
}

// cyclic is MegatronPretrainingRandomSampler behind Megatron's cyclic_iter. Each pass
// (Python's __iter__) derives its epoch from the consumed count, shuffles with
// torch.randperm seeded by the epoch and walks the shuffled indices in micro-batches,
// dropping a short tail; the next pass starts from the count reached.
//
//	active = total − total mod (mbs·dp), epoch = consumed ÷ active, off = consumed mod active
//	sharding:  bucket = ⌊total/(mbs·dp)⌋·mbs; rank r reads r·bucket + perm(bucket)[off/dp:]
//	otherwise: perm(⌊total/mbs⌋·mbs)[off:][r::dp]
type cyclic struct {
	Config
	sharding bool
	idx      []int // this pass's indices for this rank
}

func (c *cyclic) Next() ([]int, error) {
	mbs := c.MicroBatchSize
	if len(c.idx) < mbs {
		c.pass()
		if len(c.idx) < mbs {
			return nil, fmt.Errorf("--dataloader-type cyclic: a pass at %d consumed samples yields no full micro-batch", c.Consumed)
		}
	}
	out := c.idx[:mbs:mbs]
	c.idx = c.idx[mbs:]
	c.Consumed += int64(mbs * c.DPSize)
	return out, nil
}

func (c *cyclic) pass() {
	step := int64(c.MicroBatchSize * c.DPSize)
	active := int64(c.Total) - int64(c.Total)%step
	epoch, off := c.Consumed/active, c.Consumed%active
	if c.sharding {
		bucket := c.Total / int(step) * c.MicroBatchSize
		perm := Randperm(bucket, uint64(epoch))[off/int64(c.DPSize):]
		c.idx = make([]int, len(perm))
		for i, x := range perm {
			c.idx[i] = c.DPRank*bucket + x
		}
		return
	}
	full := c.Total / c.MicroBatchSize * c.MicroBatchSize
	perm := Randperm(full, uint64(epoch))[off:]
	c.idx = make([]int, 0, (len(perm)+c.DPSize-1)/c.DPSize) // Next's results alias the old one
	for i := c.DPRank; i < len(perm); i += c.DPSize {
		c.idx = append(c.idx, perm[i])
	}
}

// DistributedIndices is torch.utils.data.DistributedSampler's order for one replica, with
// shuffle (its default) and drop_last false: torch.randperm(n) after manual_seed(seed +
// epoch) (passed here as one seed), padded by repeating its head up to a multiple of
// replicas, then every replicas-th index from rank. Pai-Megatron-Patch's fine-tuning reads
// its data this way (finetune_utils.build_data_loader, set_epoch(--seed + epoch)).
func DistributedIndices(n, replicas, rank int, seed uint64) []int {
	if n <= 0 || replicas <= 0 || rank < 0 || rank >= replicas {
		return nil
	}
	perm := Randperm(n, seed)
	total := (n + replicas - 1) / replicas * replicas
	for len(perm) < total { // padding_size may exceed n: the head is repeated as often as needed
		perm = append(perm, perm[:min(n, total-len(perm))]...)
	}
	out := make([]int, 0, total/replicas)
	for i := rank; i < total; i += replicas {
		out = append(out, perm[i])
	}
	return out
}
