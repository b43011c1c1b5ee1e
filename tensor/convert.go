package tensor

import "math"

// BF16FromF32 rounds f to bfloat16 to nearest, ties to even, as torch does. NaN becomes the
// canonical quiet NaN 0x7FC0 (torch drops the sign and payload).
func BF16FromF32(f float32) uint16 {
	u := math.Float32bits(f)
	if f != f {
		return 0x7FC0
	}
	return uint16((u + 0x7FFF + (u>>16)&1) >> 16)
}

// F32FromBF16 widens a bfloat16 exactly.
func F32FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F16FromF32 rounds f to IEEE binary16 to nearest, ties to even; values past the largest
// finite half round to ±Inf and NaN becomes the quiet NaN 0x7E00 with f's sign, as torch does.
func F16FromF32(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	abs := u & 0x7FFFFFFF
	switch {
	case abs > 0x7F800000: // NaN
		return sign | 0x7E00
	case abs >= 0x477FF000: // ≥ 65520 rounds to Inf
		return sign | 0x7C00
	case abs < 0x38800000: // below the smallest normal half (2^-14): subnormal or zero
		// Align to the subnormal grid 2^-24 with round-to-nearest-even.
		if abs < 0x33000000 { // < 2^-25 (half of the smallest subnormal) rounds to zero
			return sign
		}
		e := abs >> 23
		m := abs&0x7FFFFF | 0x800000
		shift := 126 - e // value = m * 2^(e-150); subnormal unit 2^-24 → shift = 126-e
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || rem == half && r&1 == 1 {
			r++
		}
		return sign | uint16(r)
	}
	// Normal: rebias exponent 127→15 and round the 13 dropped mantissa bits.
	v := abs - (112 << 23)
	r := v >> 13
	rem := v & 0x1FFF
	if rem > 0x1000 || rem == 0x1000 && r&1 == 1 {
		r++
	}
	return sign | uint16(r)
}

// F32FromF16 widens an IEEE binary16 exactly.
func F32FromF16(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	e := uint32(h>>10) & 0x1F
	m := uint32(h & 0x3FF)
	switch {
	case e == 0x1F:
		return math.Float32frombits(sign | 0x7F800000 | m<<13)
	case e == 0:
		if m == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(m) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (e+112)<<23 | m<<13)
}

// fp8 describes one OCP FP8 encoding.
type fp8 struct {
	mbits, bias uint32
	max         float32 // largest finite magnitude
	hasInf      bool    // E5M2 has IEEE infinities; E4M3 ("fn") does not
}

var (
	e4m3 = fp8{mbits: 3, bias: 7, max: 448, hasInf: false}
	e5m2 = fp8{mbits: 2, bias: 15, max: 57344, hasInf: true}
)

func (f fp8) nan() uint8 {
	if f.hasInf {
		return 0x7E
	}
	return 0x7F
}

// decode widens an FP8 bit pattern exactly.
func (f fp8) decode(b uint8) float32 {
	ebits := 7 - f.mbits
	e := uint32(b>>f.mbits) & (1<<ebits - 1)
	m := uint32(b) & (1<<f.mbits - 1)
	neg := b&0x80 != 0
	var v float32
	switch {
	case f.hasInf && e == 1<<ebits-1:
		if m != 0 {
			return float32(math.NaN())
		}
		v = float32(math.Inf(1))
	case !f.hasInf && e == 1<<ebits-1 && m == 1<<f.mbits-1:
		return float32(math.NaN())
	case e == 0:
		v = float32(m) * float32(math.Ldexp(1, 1-int(f.bias)-int(f.mbits)))
	default:
		v = float32(math.Ldexp(float64(1<<f.mbits|m), int(e)-int(f.bias)-int(f.mbits)))
	}
	if neg {
		v = -v
	}
	return v
}

// encode rounds x to nearest, ties to even. With sat (the "satfinite" mode of Transformer
// Engine and cuBLASLt FP8 casts), magnitudes beyond max, infinities included, clamp to ±max;
// without it they become NaN (E4M3) or ±Inf (E5M2), as torch's casts do. NaN stays NaN.
func (f fp8) encode(x float32, sat bool) uint8 {
	u := math.Float32bits(x)
	sign := uint8(u>>24) & 0x80
	abs := u & 0x7FFFFFFF
	if abs > 0x7F800000 {
		return sign | f.nan()
	}
	// Round the magnitude onto the FP8 grid with integer arithmetic on the f32 bits.
	e := int32(abs>>23) - 127 // unbiased exponent (−127 for f32 zero/subnormal; those round to 0 anyway)
	minExp := 1 - int32(f.bias)
	var r uint32 // FP8 magnitude bits before saturation checks
	if abs == 0 {
		return sign
	}
	if e < minExp {
		// Subnormal in FP8: unit 2^(minExp-mbits).
		shift := uint32(minExp-e) + 23 - f.mbits // bits to drop from the 24-bit significand
		if shift > 31 {
			return sign
		}
		m := abs&0x7FFFFF | 0x800000
		if abs < 0x800000 { // f32 subnormal: far below any FP8 subnormal
			return sign
		}
		r = roundShift(m, shift) // may carry into the first normal: encoding stays consistent
	} else {
		drop := 23 - f.mbits
		mant := roundShift(abs&0x7FFFFF|0x800000, drop) // 1.mmm with carry possible
		ee := uint32(e-minExp) + 1                      // biased exponent
		if mant == 1<<(f.mbits+1) {                     // carry out of the significand
			mant >>= 1
			ee++
		}
		if ee > 0xFF>>1 { // exponent far too large for any FP8: overflow
			ee = 0xFF >> 1
			mant = 1<<(f.mbits+1) - 1
		}
		r = ee<<f.mbits | mant&(1<<f.mbits-1)
	}
	maxBits := uint32(f.maxBits())
	if r > maxBits || abs == 0x7F800000 {
		switch {
		case sat:
			return sign | uint8(maxBits)
		case f.hasInf:
			return sign | uint8(maxBits+1) // Inf: exponent all ones, mantissa 0
		default:
			return sign | f.nan()
		}
	}
	return sign | uint8(r)
}

// maxBits is the bit pattern of the largest finite magnitude.
func (f fp8) maxBits() uint8 {
	if f.hasInf {
		return 0x7B // 0 11110 11
	}
	return 0x7E // 0 1111 110
}

// roundShift returns m>>s rounded to nearest, ties to even.
func roundShift(m, s uint32) uint32 {
	if s == 0 {
		return m
	}
	r := m >> s
	rem := m & (1<<s - 1)
	half := uint32(1) << (s - 1)
	if rem > half || rem == half && r&1 == 1 {
		r++
	}
	return r
}

// E4M3FromF32 rounds to OCP FP8 E4M3 (nearest even). sat clamps overflow to ±448
// (Transformer Engine's cast); otherwise overflow gives NaN as torch's float8_e4m3fn cast.
func E4M3FromF32(x float32, sat bool) uint8 { return e4m3.encode(x, sat) }

// F32FromE4M3 widens an E4M3 bit pattern exactly.
func F32FromE4M3(b uint8) float32 { return e4m3.decode(b) }

// E5M2FromF32 rounds to OCP FP8 E5M2 (nearest even). sat clamps overflow to ±57344;
// otherwise overflow gives ±Inf.
func E5M2FromF32(x float32, sat bool) uint8 { return e5m2.encode(x, sat) }

// F32FromE5M2 widens an E5M2 bit pattern exactly.
func F32FromE5M2(b uint8) float32 { return e5m2.decode(b) }

// MaxFinite returns the largest finite value of a floating-point dtype.
func MaxFinite(d DType) float64 {
	switch d {
	case F8E4M3:
		return 448
	case F8E5M2:
		return 57344
	case F16:
		return 65504
	case BF16:
		return float64(math.Float32frombits(0x7F7F0000))
	case F32:
		return math.MaxFloat32
	case F64:
		return math.MaxFloat64
	}
	return 0
}
