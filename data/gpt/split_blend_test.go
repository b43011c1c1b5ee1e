package gpt

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSplitsMatchMegatron checks parse_and_normalize_split, the split matrix and the
// per-split ranges against splits.json (Megatron's builder with a recording dataset class).
func TestSplitsMatchMegatron(t *testing.T) {
	b, err := os.ReadFile("testdata/splits/splits.json")
	require.NoError(t, err)
	var fx struct {
		Cases []struct {
			Split       string          `json:"split"`
			N           int             `json:"num_elements"`
			Normalized  [3]float64      `json:"normalized_split_vector"`
			SplitMatrix [3]*[2]float64  `json:"split_matrix"`
			Ranges      [3]*[2]int      `json:"ranges"`
			RawMatrix   json.RawMessage `json:"-"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(b, &fx))
	require.NotEmpty(t, fx.Cases)
	for _, c := range fx.Cases {
		t.Run(c.Split+"/"+strconv.Itoa(c.N), func(t *testing.T) {
			v, err := ParseSplit(c.Split)
			require.NoError(t, err)
			for i := range v {
				assert.Equal(t, math.Float64bits(c.Normalized[i]), math.Float64bits(v[i]), "normalized[%d] %v vs %v", i, c.Normalized[i], v[i])
			}
			m := SplitMatrix(v)
			r := SplitRanges(m, c.N)
			for i := range 3 {
				if c.SplitMatrix[i] == nil {
					assert.Nil(t, m[i])
					assert.Nil(t, r[i])
					continue
				}
				require.NotNil(t, m[i])
				assert.Equal(t, c.SplitMatrix[i][0], m[i].Lo)
				assert.Equal(t, c.SplitMatrix[i][1], m[i].Hi)
				require.NotNil(t, r[i])
				assert.Equal(t, *c.Ranges[i], [2]int{r[i].Beg, r[i].End})
			}
		})
	}
}

func TestParseSplitErrors(t *testing.T) {
	for _, s := range []string{"", "0,0,0", "1,2,3,4", "1.2.3", "abc"} {
		_, err := ParseSplit(s)
		assert.Error(t, err, "split %q", s)
		if err != nil {
			assert.Contains(t, err.Error(), "--split")
		}
	}
	v, err := ParseSplit("1/2/1")
	require.NoError(t, err)
	assert.Equal(t, [3]float64{0.25, 0.5, 0.25}, v)
	// round half to even: 0.5*7 = 3.5 -> 4 and 0.5*5 = 2.5 -> 2.
	r := SplitRanges(SplitMatrix([3]float64{0.5, 0.5, 0}), 5)
	assert.Equal(t, Range{0, 2}, *r[0])
	r = SplitRanges(SplitMatrix([3]float64{0.5, 0.5, 0}), 7)
	assert.Equal(t, Range{0, 4}, *r[0])
}

// TestSizePerSplitPerDataset checks _get_size_per_split_per_dataset with surplus 0 and 0.005.
func TestSizePerSplitPerDataset(t *testing.T) {
	b, err := os.ReadFile("testdata/blending/size_per_split_per_dataset.json")
	require.NoError(t, err)
	var fx struct {
		Cases []struct {
			Weights    []float64 `json:"weights"`
			Normalized []float64 `json:"normalized_weights"`
			Targets    [3]int    `json:"target_size_per_split"`
			Target     [][3]int  `json:"sizes_per_dataset_target"`
			Buffer     [][3]int  `json:"sizes_per_dataset_buffer_surplus_0.005"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(b, &fx))
	require.NotEmpty(t, fx.Cases)
	for _, c := range fx.Cases {
		w, err := Normalize(c.Weights)
		require.NoError(t, err)
		assert.Equal(t, c.Normalized, w)
		assert.Equal(t, c.Target, SizePerSplitPerDataset(w, c.Targets, 0))
		assert.Equal(t, c.Buffer, SizePerSplitPerDataset(w, c.Targets, MidLevelDatasetSurplus))
	}
}

// TestBlendingMatchesMegatron rebuilds each blending fixture and compares both .npy files.
func TestBlendingMatchesMegatron(t *testing.T) {
	dirs, err := filepath.Glob("testdata/blending/*/config.json")
	require.NoError(t, err)
	require.Len(t, dirs, 4)
	for _, cfgPath := range dirs {
		dir := filepath.Dir(cfgPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := os.ReadFile(cfgPath)
			require.NoError(t, err)
			var c struct {
				RawWeights  []float64 `json:"raw_weights"`
				Once        []float64 `json:"weights_after_normalize_once"`
				PassedHex   []string  `json:"weights_passed_to_helper_hex"`
				Size        int       `json:"size"`
				Sizes       []int64   `json:"sizes"`
				PerDataset  []int64   `json:"samples_per_dataset"`
				DatasetIdx  []int16   `json:"dataset_index"`
				DatasetSamp []int64   `json:"dataset_sample_index"`
			}
			require.NoError(t, json.Unmarshal(b, &c))
			var bl *Blend
			if c.Sizes != nil {
				bl, err = BuildExhaustiveBlendingIndices(c.Sizes)
				require.NoError(t, err)
				assert.Equal(t, c.DatasetIdx, bl.DatasetIndex)
				assert.Equal(t, c.DatasetSamp, bl.DatasetSampleIndex)
			} else {
				once, err := Normalize(c.RawWeights)
				require.NoError(t, err)
				assert.Equal(t, c.Once, once)
				twice, err := Normalize(once)
				require.NoError(t, err)
				for i, h := range c.PassedHex {
					want, err := strconv.ParseFloat(h, 64)
					require.NoError(t, err)
					assert.Equal(t, math.Float64bits(want), math.Float64bits(twice[i]), "weight %d", i)
				}
				bl, err = BuildBlendingIndices(twice, c.Size)
				require.NoError(t, err)
				counts := make([]int64, len(twice))
				for _, d := range bl.DatasetIndex {
					counts[d]++
				}
				assert.Equal(t, c.PerDataset, counts)
			}
			di, dsi, err := bl.Marshal()
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(dir, "dataset_index.npy"))
			require.NoError(t, err)
			assert.Equal(t, want, di)
			want, err = os.ReadFile(filepath.Join(dir, "dataset_sample_index.npy"))
			require.NoError(t, err)
			assert.Equal(t, want, dsi)
		})
	}
}

func TestBlendingErrors(t *testing.T) {
	_, err := BuildBlendingIndices(nil, 3)
	assert.Error(t, err)
	_, err = BuildExhaustiveBlendingIndices([]int64{3, 0})
	assert.ErrorContains(t, err, "dataset 1")
	_, err = Normalize([]float64{0, 0})
	assert.Error(t, err)
	_, err = Normalize([]float64{1, -1, 2})
	assert.Error(t, err)
}

func numpyPython() string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import numpy").Run() == nil {
			return py
		}
	}
	return ""
}

// TestNumpySumAndRepr compares NumpySum with numpy.sum on arrays of many lengths (the pairwise
// blocks start at 8 and 128 elements) and PyFloatRepr with Python's repr.
func TestNumpySumAndRepr(t *testing.T) {
	py := numpyPython()
	if py == "" {
		t.Skip("no python3 with numpy found (tried /usr/bin/python3 and python3 on PATH)")
	}
	script := `
import numpy, json
rs = numpy.random.RandomState(5)
out = []
for n in [1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 127, 128, 129, 255, 256, 257, 1000, 3001]:
    a = rs.random_sample(n) * 10.0 ** rs.randint(-3, 4, size=n)
    out.append(dict(a=[float(x).hex() for x in a], s=float(numpy.sum(a)).hex()))
floats = [0.0, -0.0, 1.0, 0.1, 1e-4, 1e-5, 0.00012345, 1e15, 1e16, 1e17, 1234567890123456.0, 12345678901234567.0,
          0.9500000000000001, 2.5e-300, 1.7976931348623157e308, 5e-324, 123.456, -0.001, 1/3, 0.949]
print(json.dumps(dict(sums=out, floats=[f.hex() for f in floats], reprs=[repr(f) for f in floats], dumps=json.dumps(floats, indent=4))))
`
	out, err := exec.Command(py, "-c", script).Output()
	require.NoError(t, err)
	var ref struct {
		Sums []struct {
			A []string
			S string
		}
		Floats []string
		Reprs  []string
		Dumps  string
	}
	require.NoError(t, json.Unmarshal(out, &ref))
	parse := func(h string) float64 {
		f, err := strconv.ParseFloat(h, 64)
		require.NoError(t, err)
		return f
	}
	for _, c := range ref.Sums {
		a := make([]float64, len(c.A))
		for i, h := range c.A {
			a[i] = parse(h)
		}
		assert.Equal(t, math.Float64bits(parse(c.S)), math.Float64bits(NumpySum(a)), "numpy.sum of %d elements", len(a))
	}
	var list []any
	for i, h := range ref.Floats {
		f := parse(h)
		assert.Equal(t, ref.Reprs[i], PyFloatRepr(f))
		list = append(list, f)
	}
	got, err := PyJSONDumps(list)
	require.NoError(t, err)
	assert.Equal(t, ref.Dumps, got)
}

func TestPyJSONStrings(t *testing.T) {
	py := numpyPython()
	if py == "" {
		t.Skip("no python3 found")
	}
	s := "a\"b\\c\n\t\x01é€😀/"
	om := OrderedMap{{"k", s}, {"empty", OrderedMap{}}, {"list", []any{}}, {"n", nil}, {"b", true}, {"i", -3}}
	got, err := PyJSONDumps(om)
	require.NoError(t, err)
	in, _ := json.Marshal(s)
	out, err := exec.Command(py, "-c", `import json,sys,collections; s=json.loads(sys.argv[1]); print(json.dumps(collections.OrderedDict([("k", s), ("empty", {}), ("list", []), ("n", None), ("b", True), ("i", -3)]), indent=4), end="")`, string(in)).Output()
	require.NoError(t, err)
	assert.Equal(t, string(out), got)
}

// TestWriteAndLoadCache writes a fixture's indices with Megatron's file names and loads them
// back; a missing file is a cache miss.
func TestWriteAndLoadCache(t *testing.T) {
	f := loadGPTFixtures(t)[0]
	ix, err := LoadIndices(filepath.Join(f.Dir, "document_index.npy"), filepath.Join(f.Dir, "sample_index.npy"), filepath.Join(f.Dir, "shuffle_index.npy"))
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "cache")
	desc := CacheDescription{Class: "GPTDataset", DatasetPath: "x", NumSamples: -1, IndexSplit: Valid, RandomSeed: 1, SequenceLength: 4, Split: "1", SplitMatrix: SplitMatrix([3]float64{1, 0, 0})}
	_, ok, err := LoadCache(dir, desc)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, WriteCache(dir, desc, ix))
	got, ok, err := LoadCache(dir, desc)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, ix, got)
	for _, kind := range IndexKinds {
		b, err := os.ReadFile(desc.Path(dir, kind+".npy"))
		require.NoError(t, err)
		want, err := os.ReadFile(filepath.Join(f.Dir, kind+".npy"))
		require.NoError(t, err)
		assert.Equal(t, want, b)
	}
	txt, err := os.ReadFile(desc.Path(dir, "description.txt"))
	require.NoError(t, err)
	assert.Equal(t, desc.Text(), string(txt))
	require.NoError(t, os.Remove(desc.Path(dir, "sample_index.npy")))
	_, ok, err = LoadCache(dir, desc)
	require.NoError(t, err)
	assert.False(t, ok)
}
