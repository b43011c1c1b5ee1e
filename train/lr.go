package train

import (
	"fmt"
	"math"
)

// LRSchedule is Megatron's OptimizerParamScheduler learning-rate rule. Steps count samples:
// warm-up and decay lengths are in samples, and the scheduler advances by the global batch
// size each iteration, so iteration k trains with At((k−1)·GBS).
type LRSchedule struct {
	MaxLR, MinLR, InitLR float64 // --lr, --min-lr, --lr-warmup-init
	WarmupSteps          int64   // samples
	DecaySteps           int64   // samples
	Style                string  // constant, linear, cosine, inverse-square-root, WSD
	WSDDecaySteps        int64   // samples of the WSD decay phase
	WSDStyle             string  // linear, cosine, exponential, minus_sqrt
	// The weight decay: StartWD rising to EndWD over WDIncrSteps samples in WDIncrStyle
	// (--start-weight-decay, --end-weight-decay, --weight-decay-incr-style).
	StartWD, EndWD float64
	WDIncrSteps    int64
	WDIncrStyle    string // constant, linear, cosine
}

// WD returns the weight decay after n samples (Megatron's get_wd):
//
//	n > I or constant:  end
//	otherwise:          start + c·(end − start), c = n/I (linear) or ½(cos(π(1 − n/I))+1) (cosine)
func (s LRSchedule) WD(n int64) float64 {
	if n > s.WDIncrSteps || s.WDIncrStyle == "constant" || s.WDIncrStyle == "" {
		return s.EndWD
	}
	r := float64(n) / float64(s.WDIncrSteps)
	c := r
	if s.WDIncrStyle == "cosine" {
		c = 0.5 * (math.Cos(math.Pi*(1-r)) + 1)
	}
	return s.StartWD + c*(s.EndWD-s.StartWD)
}

// Validate checks the style names and lengths.
func (s LRSchedule) Validate() error {
	switch s.Style {
	case "constant", "linear", "cosine", "inverse-square-root":
	case "WSD":
		switch s.WSDStyle {
		case "linear", "cosine", "exponential", "minus_sqrt":
		default:
			return fmt.Errorf("--lr-wsd-decay-style %q: want linear, cosine, exponential or minus_sqrt", s.WSDStyle)
		}
	default:
		return fmt.Errorf("--lr-decay-style %q: want constant, linear, cosine, inverse-square-root or WSD", s.Style)
	}
	if s.Style != "constant" && s.DecaySteps <= s.WarmupSteps && s.Style != "inverse-square-root" {
		return fmt.Errorf("learning-rate decay length %d samples must exceed the warm-up length %d samples", s.DecaySteps, s.WarmupSteps)
	}
	if s.MinLR > s.MaxLR {
		return fmt.Errorf("--min-lr %g exceeds --lr %g", s.MinLR, s.MaxLR)
	}
	switch s.WDIncrStyle {
	case "", "constant":
		if s.StartWD != s.EndWD {
			return fmt.Errorf("--weight-decay-incr-style constant with --start-weight-decay %g ≠ --end-weight-decay %g", s.StartWD, s.EndWD)
		}
	case "linear", "cosine":
	default:
		return fmt.Errorf("--weight-decay-incr-style %q: want constant, linear or cosine", s.WDIncrStyle)
	}
	if s.StartWD < 0 || s.EndWD < s.StartWD {
		return fmt.Errorf("weight decay from %g to %g: Megatron wants 0 ≤ --start-weight-decay ≤ --end-weight-decay", s.StartWD, s.EndWD)
	}
	return nil
}

// At returns the learning rate after n samples:
//
//	warm-up (n ≤ W, W > 0):   init + (max − init)·n/W
//	constant:                 max
//	n > D:                    min
//	inverse-square-root:      max(min, max·sqrt(max(W,1))/sqrt(max(n,1)))
//	otherwise, r = (n−W)/(D−W): min + c·(max − min) with c = 1−r (linear),
//	½(cos(πr)+1) (cosine), or WSD's constant phase followed by its decay.
func (s LRSchedule) At(n int64) float64 {
	if s.WarmupSteps > 0 && n <= s.WarmupSteps {
		return s.InitLR + (s.MaxLR-s.InitLR)*float64(n)/float64(s.WarmupSteps)
	}
	if s.Style == "constant" {
		return s.MaxLR
	}
	if n > s.DecaySteps {
		return s.MinLR
	}
	if s.Style == "inverse-square-root" {
		w := math.Max(float64(s.WarmupSteps), 1)
		return math.Max(s.MinLR, s.MaxLR*math.Sqrt(w)/math.Sqrt(math.Max(float64(n), 1)))
	}
	ratio := float64(n-s.WarmupSteps) / float64(s.DecaySteps-s.WarmupSteps)
	var c float64
	switch s.Style {
	case "linear":
		c = 1 - ratio
	case "cosine":
		c = 0.5 * (math.Cos(math.Pi*ratio) + 1)
	case "WSD":
		annealStart := s.DecaySteps - s.WSDDecaySteps
		if n <= annealStart {
			c = 1
		} else {
			r := float64(n-annealStart) / float64(s.WSDDecaySteps)
			switch s.WSDStyle {
			case "linear":
				c = 1 - r
			case "cosine":
				c = 0.5 * (math.Cos(math.Pi*r) + 1)
			case "exponential":
				c = 2*math.Pow(0.5, r) - 1
			case "minus_sqrt":
				c = 1 - math.Sqrt(r)
			}
		}
	}
	return s.MinLR + c*(s.MaxLR-s.MinLR)
}
