package cuda

import (
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
)

// EnvProfile names a file that receives a per-kernel GPU time table when the backend
// closes (GOMEGATRON_CUDA_PROFILE=path, or "-" for stderr).
const EnvProfile = "GOMEGATRON_CUDA_PROFILE"

// profiler times every kernel launch and cuBLASLt matmul with a pair of CUDA events on the
// device stream and sums the times per name (the kernel, or "cublasLt <types> M×N×K"). The
// events are read back when many are pending and at the end, so timing adds a few µs per op
// of host time and no waits between ops. It runs on the device thread only.
type profiler struct {
	d       *Device
	path    string
	pending []timedOp
	free    []uintptr // idle events
	totals  map[string]*opTime
}

type timedOp struct {
	name       string
	start, end uintptr
}

type opTime struct {
	n  int
	ms float64
}

func newProfiler(d *Device, path string) *profiler {
	return &profiler{d: d, path: path, totals: map[string]*opTime{}}
}

func (p *profiler) event() (uintptr, error) {
	if n := len(p.free); n > 0 {
		e := p.free[n-1]
		p.free = p.free[:n-1]
		return e, nil
	}
	var e uintptr
	err := p.d.drv().check("cuEventCreate", p.d.drv().cuEventCreate.Status(addr(&e), 0), "profiler")
	return e, err
}

// time runs enqueue between two recorded events.
func (p *profiler) time(name string, enqueue func() error) error {
	drv := p.d.drv()
	start, err := p.event()
	if err != nil {
		return err
	}
	end, err := p.event()
	if err != nil {
		return err
	}
	if err := drv.check("cuEventRecord", drv.cuEventRecord.Status(start, p.d.stream), "profiler"); err != nil {
		return err
	}
	if err := enqueue(); err != nil {
		return err
	}
	if err := drv.check("cuEventRecord", drv.cuEventRecord.Status(end, p.d.stream), "profiler"); err != nil {
		return err
	}
	p.pending = append(p.pending, timedOp{name, start, end})
	if len(p.pending) >= 4096 {
		return p.collect()
	}
	return nil
}

// collect waits for the pending events and adds their times.
func (p *profiler) collect() error {
	drv := p.d.drv()
	for _, op := range p.pending {
		if err := drv.check("cuEventSynchronize", drv.cuEventSynchronize.Status(op.end), "profiler"); err != nil {
			return err
		}
		var ms float32
		if err := drv.check("cuEventElapsedTime", drv.cuEventElapsedTime.Status(addr(&ms), op.start, op.end), "profiler"); err != nil {
			return err
		}
		t := p.totals[op.name]
		if t == nil {
			t = &opTime{}
			p.totals[op.name] = t
		}
		t.n++
		t.ms += float64(ms)
		p.free = append(p.free, op.start, op.end)
	}
	p.pending = p.pending[:0]
	return nil
}

// report writes the table, longest total first, and releases the events.
func (p *profiler) report() error {
	err := p.collect()
	for _, e := range p.free {
		p.d.drv().cuEventDestroy.Status(e)
	}
	p.free = nil
	var w io.Writer = os.Stderr
	if p.path != "-" {
		f, ferr := os.Create(p.path)
		if ferr != nil {
			return fmt.Errorf("%s: %w", EnvProfile, ferr)
		}
		defer f.Close()
		w = f
	}
	writeProfile(w, p.totals)
	return err
}

// writeProfile prints the per-op table: name, calls, total ms, share, µs per call.
func writeProfile(w io.Writer, totals map[string]*opTime) {
	names := make([]string, 0, len(totals))
	var sum float64
	for n, t := range totals {
		names = append(names, n)
		sum += t.ms
	}
	sort.Slice(names, func(i, j int) bool { return totals[names[i]].ms > totals[names[j]].ms })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%12s\t%6s\t%8s\t%9s\top\n", "GPU time", "share", "calls", "µs/call")
	for _, n := range names {
		t := totals[n]
		fmt.Fprintf(tw, "%9.1f ms\t%5.1f%%\t%8d\t%9.1f\t%s\n", t.ms, 100*t.ms/max(sum, 1e-9), t.n, 1e3*t.ms/float64(t.n), n)
	}
	fmt.Fprintf(tw, "%9.1f ms\t%6s\t%8s\t%9s\ttotal\n", sum, "100%", "", "")
	tw.Flush()
}

// opName labels a matmul in the profile: operand types and the GEMM's (cuBLAS) shape.
func (s matmulSpec) opName() string {
	names := map[int]string{rF32: "f32", rBF16: "bf16", 2: "f16", rE4M3: "e4m3", rE5M2: "e5m2"}
	t := func(x int) string {
		if n, ok := names[x]; ok {
			return n
		}
		return fmt.Sprint(x)
	}
	return fmt.Sprintf("cublasLt %s·%s→%s %d×%d×%d", t(s.aType), t(s.bType), t(s.dType), s.m, s.n, s.k)
}
