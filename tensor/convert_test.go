package tensor

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func isNaN32(f float32) bool { return f != f }

func TestBF16AllPatternsRoundTrip(t *testing.T) {
	for b := 0; b < 1<<16; b++ {
		h := uint16(b)
		f := F32FromBF16(h)
		got := BF16FromF32(f)
		if isNaN32(f) {
			if got != 0x7FC0 {
				t.Fatalf("NaN %#04x -> %#04x, want canonical 0x7fc0", h, got)
			}
			continue
		}
		if got != h {
			t.Fatalf("bf16 %#04x -> %v -> %#04x", h, f, got)
		}
	}
}

func TestF16AllPatternsRoundTrip(t *testing.T) {
	for b := 0; b < 1<<16; b++ {
		h := uint16(b)
		f := F32FromF16(h)
		got := F16FromF32(f)
		if isNaN32(f) {
			if got&0x7FFF != 0x7E00 || got&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x -> %#04x, want signed quiet NaN", h, got)
			}
			continue
		}
		if got != h {
			t.Fatalf("f16 %#04x -> %v -> %#04x", h, f, got)
		}
	}
}

// ocpValue is the OCP FP8 table computed straight from the specification's formula, in
// float64, independent of the encoder: (-1)^s · 2^(e-bias) · (1 + m/2^mbits), subnormals
// 2^(1-bias) · m/2^mbits.
func ocpValue(b uint8, ebits, mbits, bias int, hasInf bool) (v float64, nan bool) {
	s := b >> 7
	e := int(b>>mbits) & (1<<ebits - 1)
	m := int(b) & (1<<mbits - 1)
	if hasInf && e == 1<<ebits-1 {
		if m != 0 {
			return 0, true
		}
		v = math.Inf(1)
	} else if !hasInf && e == 1<<ebits-1 && m == 1<<mbits-1 {
		return 0, true
	} else if e == 0 {
		v = math.Ldexp(float64(m)/float64(int(1)<<mbits), 1-bias)
	} else {
		v = math.Ldexp(1+float64(m)/float64(int(1)<<mbits), e-bias)
	}
	if s == 1 {
		v = -v
	}
	return v, false
}

type fp8Case struct {
	name        string
	ebits, bits int
	bias        int
	hasInf      bool
	max         float64
	enc         func(float32, bool) uint8
	dec         func(uint8) float32
}

var fp8Cases = []fp8Case{
	{"e4m3", 4, 3, 7, false, 448, E4M3FromF32, F32FromE4M3},
	{"e5m2", 5, 2, 15, true, 57344, E5M2FromF32, F32FromE5M2},
}

func TestFP8AllPatternsMatchOCPTable(t *testing.T) {
	for _, c := range fp8Cases {
		maxSeen := 0.0
		for i := 0; i < 256; i++ {
			b := uint8(i)
			want, nan := ocpValue(b, c.ebits, c.bits, c.bias, c.hasInf)
			got := c.dec(b)
			if nan {
				if !isNaN32(got) {
					t.Fatalf("%s %#02x: want NaN, got %v", c.name, b, got)
				}
				continue
			}
			if float64(got) != want {
				t.Fatalf("%s %#02x: decode %v, table %v", c.name, b, got, want)
			}
			if !math.IsInf(want, 0) {
				maxSeen = math.Max(maxSeen, math.Abs(want))
			}
			for _, sat := range []bool{false, true} {
				enc := c.enc(got, sat)
				if math.IsInf(want, 0) && sat {
					continue // infinities saturate; checked below
				}
				if enc != b {
					t.Fatalf("%s %#02x (%v): re-encoded to %#02x (sat=%v)", c.name, b, got, enc, sat)
				}
			}
		}
		if maxSeen != c.max {
			t.Fatalf("%s max finite %v, want %v", c.name, maxSeen, c.max)
		}
	}
}

// nearestOCP finds the correctly rounded FP8 pattern by exhaustive search over the table
// (ties to the even mantissa), the reference for random inputs.
func nearestOCP(c fp8Case, x float64, sat bool) (uint8, bool) {
	if math.IsNaN(x) {
		return 0, true
	}
	ax := math.Abs(x)
	var sign uint8
	if math.Signbit(x) {
		sign = 0x80
	}
	if ax > c.max {
		// Beyond max: values below the rounding midpoint to the next (virtual) step round
		// down to max; the rest overflow.
		step := math.Ldexp(1, int(math.Floor(math.Log2(c.max)))-c.bits)
		if ax < c.max+step/2 || sat {
			ax = c.max
		} else if c.hasInf {
			return sign | 0x7C, false
		} else {
			return 0, true
		}
	}
	best, bestErr := uint8(0), math.Inf(1)
	for i := 0; i < 128; i++ {
		v, nan := ocpValue(uint8(i), c.ebits, c.bits, c.bias, c.hasInf)
		if nan || math.IsInf(v, 0) {
			continue
		}
		e := math.Abs(v - ax)
		if e < bestErr || e == bestErr && i&1 == 0 {
			best, bestErr = uint8(i), e
		}
	}
	return sign | best, false
}

func TestFP8RandomRoundingMatchesTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range fp8Cases {
		for n := 0; n < 200000; n++ {
			// Log-uniform magnitudes across the whole FP8 range and beyond, plus exact ties.
			var x float32
			if n%4 == 0 {
				a := c.dec(uint8(r.IntN(126)))
				b := c.dec(uint8(r.IntN(126)))
				x = (a + b) / 2
			} else {
				x = float32(math.Ldexp(1+r.Float64(), r.IntN(40)-c.bias-c.bits-6))
			}
			if r.IntN(2) == 0 {
				x = -x
			}
			for _, sat := range []bool{false, true} {
				got := c.enc(x, sat)
				want, wantNaN := nearestOCP(c, float64(x), sat)
				if wantNaN {
					if !isNaN32(c.dec(got)) {
						t.Fatalf("%s(%v, sat=%v) = %#02x, want NaN", c.name, x, sat, got)
					}
					continue
				}
				if got != want {
					t.Fatalf("%s(%v, sat=%v) = %#02x (%v), want %#02x (%v)", c.name, x, sat, got, c.dec(got), want, c.dec(want))
				}
			}
		}
	}
}

func TestFP8SpecialValues(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	cases := []struct {
		got, want uint8
	}{
		{E4M3FromF32(inf, true), 0x7E}, {E4M3FromF32(-inf, true), 0xFE},
		{E4M3FromF32(inf, false), 0x7F}, {E4M3FromF32(1000, false), 0x7F},
		{E4M3FromF32(464, false), 0x7E}, // tie between 448 and 480 goes to even 448
		{E4M3FromF32(470, false), 0x7F}, // nearer 480, which is NaN in E4M3
		{E5M2FromF32(inf, false), 0x7C}, {E5M2FromF32(inf, true), 0x7B},
		{E5M2FromF32(1e6, false), 0x7C}, {E5M2FromF32(-1e6, true), 0xFB},
		{E4M3FromF32(nan, true) & 0x7F, 0x7F}, {E5M2FromF32(nan, true) & 0x7F, 0x7E},
		{E4M3FromF32(math.Float32frombits(1), true), 0}, // f32 subnormal underflows
	}
	for i, c := range cases {
		if c.got != c.want {
			t.Errorf("case %d: got %#02x want %#02x", i, c.got, c.want)
		}
	}
}

// TestRoundingMatchesTorch converts random float32 bit patterns with PyTorch and compares.
func TestRoundingMatchesTorch(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if exec.Command(py, "-c", "import torch").Run() != nil {
		t.Skip("python3-torch not installed (apt-get install python3-torch); .ci/run installs it")
	}
	r := rand.New(rand.NewPCG(7, 9))
	const n = 1 << 18
	in := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		var u uint32
		switch i % 4 {
		case 0: // any bit pattern
			u = r.Uint32()
		case 1: // values around the f16 range
			u = math.Float32bits(float32(math.Ldexp(r.Float64(), r.IntN(50)-30)))
		case 2: // exact bf16/f16 ties: low bits 0x8000 / 0x1000
			u = r.Uint32()&^0xFFFF | 0x8000
		default:
			u = math.Float32bits(float32(math.Ldexp(1+r.Float64(), r.IntN(12)-26)))&^0xFFF | 0x1000
		}
		binary.LittleEndian.PutUint32(in[4*i:], u)
	}
	dir := t.TempDir()
	inPath := filepath.Join(dir, "in.f32")
	if err := os.WriteFile(inPath, in, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, torch, numpy as np
x = torch.from_numpy(np.fromfile(sys.argv[1], dtype='<f4'))
x.to(torch.bfloat16).view(torch.int16).numpy().astype('<i2').tofile(sys.argv[2])
x.to(torch.float16).view(torch.int16).numpy().astype('<i2').tofile(sys.argv[3])
`
	bfPath, hPath := filepath.Join(dir, "bf16"), filepath.Join(dir, "f16")
	if out, err := exec.Command(py, "-c", script, inPath, bfPath, hPath).CombinedOutput(); err != nil {
		t.Fatalf("torch: %v\n%s", err, out)
	}
	bf, _ := os.ReadFile(bfPath)
	hf, _ := os.ReadFile(hPath)
	for i := 0; i < n; i++ {
		f := math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:]))
		wantBF := binary.LittleEndian.Uint16(bf[2*i:])
		wantH := binary.LittleEndian.Uint16(hf[2*i:])
		if got := BF16FromF32(f); got != wantBF && !(isNaN32(f) && isNaN32(F32FromBF16(wantBF))) {
			t.Fatalf("bf16(%v bits %#08x) = %#04x, torch %#04x", f, math.Float32bits(f), got, wantBF)
		}
		if got := F16FromF32(f); got != wantH && !(isNaN32(f) && isNaN32(F32FromF16(wantH))) {
			t.Fatalf("f16(%v bits %#08x) = %#04x, torch %#04x", f, math.Float32bits(f), got, wantH)
		}
	}
}
