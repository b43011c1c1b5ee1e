package torchpickle

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// TestFP8RoundTrip: torch 1.13 has no float8 types, so FP8 is checked Go to Go: every
// bit pattern survives, under torch ≥ 2.1's storage class names.
func TestFP8RoundTrip(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F8E4M3, tensor.F8E5M2} {
		t.Run(dt.String(), func(t *testing.T) {
			x := tensor.New(dt, 16, 16)
			for i := range x.Data {
				x.Data[i] = byte(i)
			}
			d := NewDict(true)
			d.Set("w", x)
			d.Set("dtype", dt)
			path := filepath.Join(t.TempDir(), "fp8.pt")
			require.NoError(t, Save(path, d))
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			cls, _ := storageClass(dt)
			assert.Contains(t, string(raw), "torch\n"+cls+"\n")
			v, err := Load(path)
			require.NoError(t, err)
			got, _ := v.(*Dict).Get("w")
			gt := got.(*tensor.Tensor)
			assert.Equal(t, dt, gt.DType())
			assert.Equal(t, []int{16, 16}, gt.Shape())
			assert.Equal(t, x.Data, gt.Data)
			gd, _ := v.(*Dict).Get("dtype")
			assert.Equal(t, dt, gd)
		})
	}
}

// TestDisallowedGlobals: a pickle naming a global outside the allow-list fails with
// an error naming module.name, whether it is called or only referenced.
func TestDisallowedGlobals(t *testing.T) {
	for _, g := range []Global{{"os", "system"}, {"builtins", "eval"}, {"subprocess", "Popen"},
		{"transformer_engine.common.recipe", "DelayedScaling"}, {"torch", "load"}} {
		t.Run(g.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "evil.pt")
			require.NoError(t, Save(path, []any{&Object{Class: g, Args: Tuple{"echo hi"}}}))
			_, err := Load(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "global "+g.String()+" is not allowed")
			assert.Contains(t, err.Error(), path)
		})
	}
	_, err := Unpickle([]byte("\x80\x02cposix\nsystem\nq\x00."))
	assert.ErrorContains(t, err, "global posix.system is not allowed")
}

func savedSample(t *testing.T) (string, []byte) {
	d := NewDict(true)
	d.Set("a", patterned(tensor.F32, 1, 4, 4))
	d.Set("b", []any{int64(1), "two", 3.0, Tuple{nil, true}})
	path := filepath.Join(t.TempDir(), "sample.pt")
	require.NoError(t, Save(path, d))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	return path, raw
}

// TestTruncatedAndCorrupt: truncated or damaged archives give errors naming the file.
func TestTruncatedAndCorrupt(t *testing.T) {
	_, raw := savedSample(t)
	dir := t.TempDir()
	for _, n := range []int{0, 10, len(raw) / 3, len(raw) / 2, len(raw) - 30, len(raw) - 1} {
		path := filepath.Join(dir, "cut.pt")
		require.NoError(t, os.WriteFile(path, raw[:n], 0o644))
		_, err := Load(path)
		require.Error(t, err, "truncated to %d bytes", n)
		assert.Contains(t, err.Error(), path)
		f, err := Open(path)
		require.Error(t, err)
		assert.Nil(t, f)
	}
	// Flip a byte inside data.pkl: caught by its CRC.
	bad := append([]byte(nil), raw...)
	bad[64+10] ^= 0xff
	path := filepath.Join(dir, "flip.pt")
	require.NoError(t, os.WriteFile(path, bad, 0o644))
	_, err := Load(path)
	assert.ErrorContains(t, err, "CRC-32 mismatch")
	_, err = Load(filepath.Join(dir, "absent.pt"))
	assert.ErrorContains(t, err, "absent.pt")
}

// TestBadArchives: structurally valid zips with missing or inconsistent entries.
func TestBadArchives(t *testing.T) {
	p := newPickler()
	p.op(opProto, 2)
	require.NoError(t, p.save(patterned(tensor.F32, 1, 4)))
	p.op(opStop)
	pkl := p.b.Bytes()
	cases := []struct {
		name string
		recs []record
		want string
	}{
		{"no data.pkl", []record{{"x/version", []byte("3\n")}}, "no <name>/data.pkl"},
		{"missing storage", []record{{"x/data.pkl", pkl}}, "archive has no entry x/data/0"},
		{"short storage", []record{{"x/data.pkl", pkl}, {"x/data/0", make([]byte, 12)}}, "needs 16 bytes, entry has 12"},
		{"two pickles", []record{{"x/data.pkl", pkl}, {"y/data.pkl", pkl}}, "two data.pkl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, writeZip(&b, c.recs))
			_, err := Decode(b.Bytes())
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	st := &storage{dt: tensor.F32, key: "0", data: make([]byte, 16)}
	_, err := rebuildTensor(Tuple{st, int64(1), Tuple{int64(4)}, Tuple{int64(1)}})
	assert.ErrorContains(t, err, `reaches element 4 of storage "0", which has 4`)
	_, err = rebuildTensor(Tuple{st, int64(0), Tuple{int64(2), int64(2)}, Tuple{int64(1)}})
	assert.ErrorContains(t, err, "differ in rank")
}

// TestMalformedPicklesNeverPanic runs every prefix of a real checkpoint pickle and
// thousands of random byte mutations through the unpickler: each must end in a value
// or an error, never a panic or a hang.
func TestMalformedPicklesNeverPanic(t *testing.T) {
	_, raw := savedSample(t)
	v, err := Decode(raw)
	require.NoError(t, err)
	require.NotNil(t, v)
	p := newPickler()
	p.op(opProto, 2)
	ns := NewNamespace()
	ns.Set("x", []any{int64(1), 2.5, "s", []byte{1}, Tuple{Set{int64(1)}}, &NDArray{DType: "<u4", Shape: []int{1}, Data: make([]byte, 4)}})
	require.NoError(t, p.save(ns))
	p.op(opStop)
	pkl := p.b.Bytes()
	for n := 0; n < len(pkl); n++ {
		_, err := Unpickle(pkl[:n])
		require.Error(t, err, "prefix of %d bytes", n)
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		m := append([]byte(nil), pkl...)
		for k := 0; k < 1+rng.Intn(4); k++ {
			m[rng.Intn(len(m))] = byte(rng.Intn(256))
		}
		Unpickle(m) // must return
	}
	_, err = Unpickle([]byte("\x80\x02X\xff\xff\xff\xff."))
	assert.ErrorContains(t, err, "truncated")
}
