package gpt

import "fmt"

// PretrainingSampler is Megatron's MegatronPretrainingSampler: it walks sample ids
// [consumed, total) in order, in global chunks of micro_batch_size * data_parallel_size, and
// data-parallel rank r takes ids [r*mbs, (r+1)*mbs) of each chunk. A final partial chunk is
// dropped unless DropLast is false, in which case rank r gets its (possibly short or empty)
// slice of it. The shuffle happens in the dataset's shuffle_index, not here.
type PretrainingSampler struct {
	Total, Consumed  int
	MicroBatchSize   int
	DataParallelRank int
	DataParallelSize int
	DropLast         bool
}

// NewPretrainingSampler checks Megatron's sanity asserts.
func NewPretrainingSampler(total, consumed, microBatchSize, dpRank, dpSize int, dropLast bool) (*PretrainingSampler, error) {
	switch {
	case total <= 0:
		return nil, fmt.Errorf("gpt: sampler: no sample to consume: %d", total)
	case consumed < 0 || consumed >= total:
		return nil, fmt.Errorf("gpt: sampler: no samples left to consume: consumed %d of %d", consumed, total)
	case microBatchSize <= 0:
		return nil, fmt.Errorf("gpt: sampler: --micro-batch-size %d must be positive", microBatchSize)
	case dpSize <= 0:
		return nil, fmt.Errorf("gpt: sampler: data parallel size %d must be positive", dpSize)
	case dpRank < 0 || dpRank >= dpSize:
		return nil, fmt.Errorf("gpt: sampler: data_parallel_rank %d should be smaller than data size %d", dpRank, dpSize)
	}
	return &PretrainingSampler{total, consumed, microBatchSize, dpRank, dpSize, dropLast}, nil
}

// Batches calls yield with each of this rank's micro-batches of sample ids, in order, until
// yield returns false or the samples run out.
func (s *PretrainingSampler) Batches(yield func(batch []int) bool) {
	chunk := s.MicroBatchSize * s.DataParallelSize
	beg := s.DataParallelRank * s.MicroBatchSize
	for start := s.Consumed; start < s.Total; start += chunk {
		end := start + chunk
		if end > s.Total {
			if s.DropLast {
				return
			}
			end = s.Total
		}
		lo, hi := min(start+beg, end), min(start+beg+s.MicroBatchSize, end)
		batch := make([]int, 0, hi-lo)
		for id := lo; id < hi; id++ {
			batch = append(batch, id)
		}
		if !yield(batch) {
			return
		}
	}
}
