package train

import (
	"fmt"
	"strconv"
)

// rampup is Megatron's RampupBatchsizeNumMicroBatches (--rampup-batch-size <start>
// <increment> <ramp-up samples>): the global batch size starts at start and grows by
// increment every samples/((global − start)/increment) consumed samples, up to
// --global-batch-size once the ramp-up samples are consumed.
type rampup struct {
	start, increment int
	samples          int64
	global           int
}

// parseRampup reads --rampup-batch-size and checks it as Megatron's constructor does.
func parseRampup(words []string, global int) (*rampup, error) {
	if len(words) == 0 {
		return nil, nil
	}
	if len(words) != 3 {
		return nil, fmt.Errorf("--rampup-batch-size takes 3 values (start batch size, increment, ramp-up samples), got %d", len(words))
	}
	var v [3]int64
	for i, w := range words {
		n, err := strconv.ParseInt(w, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--rampup-batch-size: %q is not a non-negative integer", w)
		}
		v[i] = n
	}
	r := &rampup{start: int(v[0]), increment: int(v[1]), samples: v[2], global: global}
	switch diff := global - r.start; {
	case r.start <= 0 || r.increment <= 0:
		return nil, fmt.Errorf("--rampup-batch-size: the start batch size %d and increment %d must be positive", r.start, r.increment)
	case r.samples == 0:
		return nil, fmt.Errorf("--rampup-batch-size: the ramp-up samples must be positive (Megatron divides by them)")
	case diff <= 0:
		return nil, fmt.Errorf("--rampup-batch-size: the start batch size %d must be below --global-batch-size %d", r.start, global)
	case diff%r.increment != 0:
		return nil, fmt.Errorf("--rampup-batch-size: the global batch size interval %d is not divisible by the increment %d", diff, r.increment)
	}
	return r, nil
}

// at is the global batch size after consumed samples (Megatron's update_num_microbatches).
func (r *rampup) at(consumed int64) int {
	if r == nil {
		return 0
	}
	if consumed > r.samples {
		return r.global
	}
	per := float64(r.samples) / float64((r.global-r.start)/r.increment)
	return r.start + int(float64(consumed)/per)*r.increment
}

// iterations is Megatron's update_train_iters for sample-based training with ramp-up: the
// iterations of the ramp-up phase, then the whole global batches left of trainSamples.
func (r *rampup) iterations(trainSamples int64) int {
	var it int
	var consumed int64
	for consumed <= r.samples {
		consumed += int64(r.at(consumed))
		it++
	}
	return it + int(max(trainSamples-consumed, 0)/int64(r.global))
}
