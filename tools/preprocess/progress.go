package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports a run as it goes: doc is called after every written document, update
// after every batch, finish once at the end.
type progress interface {
	doc(s *Summary)
	update(s *Summary)
	finish(s *Summary)
}

// newProgress picks the reporter: "bar" draws a progress bar over the input bytes read
// from disk (documents, tokens, MB/s and, with the total size known, the ETA); "log" prints
// Megatron's line every interval documents; "auto" is the bar on a terminal and the log
// lines otherwise; "none" is silent.
func newProgress(mode string, w io.Writer, total int64, interval int) progress {
	if mode == "" || mode == "auto" {
		mode = "log"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		return &barProgress{bar: progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionThrottle(250*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetDescription("0 docs, 0 tokens"),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)}
	case "log":
		return &logProgress{w: w, interval: int64(interval), start: time.Now()}
	}
	return noProgress{}
}

type noProgress struct{}

func (noProgress) doc(*Summary)    {}
func (noProgress) update(*Summary) {}
func (noProgress) finish(*Summary) {}

// barProgress is the terminal progress bar.
type barProgress struct {
	bar  *progressbar.ProgressBar
	last time.Time
}

func (p *barProgress) doc(*Summary) {}

func (p *barProgress) update(s *Summary) {
	if now := time.Now(); now.Sub(p.last) >= 250*time.Millisecond {
		p.last = now
		p.bar.Describe(fmt.Sprintf("%d docs, %d tokens", s.Documents, s.Tokens))
		p.bar.Set64(s.InputBytes)
	}
}

func (p *barProgress) finish(s *Summary) {
	p.bar.Describe(fmt.Sprintf("%d docs, %d tokens", s.Documents, s.Tokens))
	p.bar.Set64(s.InputBytes)
	p.bar.Finish()
}

// logProgress prints Megatron's preprocess_data.py line,
// "Processed {count} documents ({docs/s} docs/s, {MB/s} MB/s).", where MB/s counts the
// records' JSON bytes in MiB.
type logProgress struct {
	w        io.Writer
	interval int64
	start    time.Time
}

func (p *logProgress) doc(s *Summary) {
	if s.Documents%p.interval == 0 {
		p.line(s)
	}
}

func (p *logProgress) line(s *Summary) {
	el := time.Since(p.start).Seconds()
	if el <= 0 {
		el = 1e-9
	}
	fmt.Fprintf(p.w, "Processed %d documents (%g docs/s, %g MB/s).\n", s.Documents, float64(s.Documents)/el, float64(s.TextBytes)/el/1024/1024)
}

func (p *logProgress) update(*Summary) {}

func (p *logProgress) finish(s *Summary) {
	if s.Documents%p.interval != 0 {
		p.line(s)
	}
}
