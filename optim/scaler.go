package optim

// LossScaler is Megatron's grad scaler (grad_scaler.py): the loss is multiplied by Scale()
// before backward and the gradients divided by it before the update; Update reports whether
// the unscaled gradients held an inf/NaN.
type LossScaler interface {
	Scale() float64
	Update(foundInf bool)
}

// ConstantScaler is --loss-scale X.
type ConstantScaler float64

func (c ConstantScaler) Scale() float64 { return float64(c) }
func (ConstantScaler) Update(bool)      {}

// DynamicScaler is DynamicGradScaler: on an overflow the growth count resets and, once
// Hysteresis overflows have been seen, the scale is multiplied by Backoff (not below Min);
// after GrowthInterval clean steps in a row the scale is multiplied by Growth and the
// hysteresis budget refilled.
type DynamicScaler struct {
	Cur, Min, Growth, Backoff float64
	GrowthInterval            int
	Hysteresis                int
	growthTracker             int
	hysteresisTracker         int
}

// NewDynamicScaler returns Megatron's --fp16 scaler: initial 2^32 (--initial-loss-scale),
// min 1 (--min-loss-scale), growth 2, backoff 0.5, window 1000 (--loss-scale-window),
// hysteresis 2 (--hysteresis).
func NewDynamicScaler(initial, min float64, window, hysteresis int) *DynamicScaler {
	return &DynamicScaler{Cur: initial, Min: min, Growth: 2, Backoff: 0.5, GrowthInterval: window,
		Hysteresis: hysteresis, hysteresisTracker: hysteresis}
}

func (d *DynamicScaler) Scale() float64 { return d.Cur }

func (d *DynamicScaler) Update(foundInf bool) {
	if foundInf {
		d.growthTracker = 0
		d.hysteresisTracker--
		if d.hysteresisTracker <= 0 {
			d.Cur = max(d.Cur*d.Backoff, d.Min)
		}
		return
	}
	d.growthTracker++
	if d.growthTracker == d.GrowthInterval {
		d.growthTracker = 0
		d.hysteresisTracker = d.Hysteresis
		d.Cur *= d.Growth
	}
}

// Trackers returns the growth and hysteresis counters (for checkpoints).
func (d *DynamicScaler) Trackers() (growth, hysteresis int) {
	return d.growthTracker, d.hysteresisTracker
}

// Restore sets the scale and counters from a checkpoint.
func (d *DynamicScaler) Restore(scale float64, growth, hysteresis int) {
	d.Cur, d.growthTracker, d.hysteresisTracker = scale, growth, hysteresis
}
