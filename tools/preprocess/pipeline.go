package main

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Batching and back-pressure. The reader cuts the input into batches of at most batchDocs
// records or batchBytes bytes; workers encode whole batches; the writer takes them back in
// input order. A batch holds a slot of a semaphore from the moment the reader cuts it until
// the writer has written it, so at most inFlight batches exist at once: memory is bounded
// by inFlight*batchBytes plus their tokens whatever the corpus size, and a slow batch can
// hold back at most inFlight-1 finished ones in the reorder buffer.
const (
	batchDocs  = 64
	batchBytes = 1 << 20
)

// rawRecord is one record of a batch: its bytes are arena[off:end].
type rawRecord struct {
	file     int32
	array    bool
	pos      int64
	off, end int
}

// job is a batch of records on its way to a worker.
type job struct {
	seq      int64
	recs     []rawRecord
	arena    []byte
	issues   []Issue // file-level problems met after these records, in input order
	blank    int64   // blank lines skipped while reading these records
	consumed int64   // input bytes read from disk when the batch was cut
}

// result is a job after encoding.
type result struct {
	seq      int64
	docs     []doc
	issues   []Issue
	blank    int64
	consumed int64
}

// batcher is the reader side: it implements recordSink for readFile and sends full batches.
type batcher struct {
	ctx      context.Context
	out      chan<- *job
	sem      chan struct{}
	cur      *job
	seq      int64
	file     int32
	consumed int64 // bytes read from disk so far, over all files (updated by countingReader)
}

func (b *batcher) record(pos int64, array bool, data []byte) error {
	if b.cur == nil {
		b.cur = &job{seq: b.seq, arena: make([]byte, 0, batchBytes)}
	}
	off := len(b.cur.arena)
	b.cur.arena = append(b.cur.arena, data...)
	b.cur.recs = append(b.cur.recs, rawRecord{file: b.file, array: array, pos: pos, off: off, end: len(b.cur.arena)})
	if len(b.cur.recs) >= batchDocs || len(b.cur.arena) >= batchBytes {
		return b.flush()
	}
	return nil
}

func (b *batcher) blank() {
	if b.cur == nil {
		b.cur = &job{seq: b.seq}
	}
	b.cur.blank++
}

func (b *batcher) issue(is Issue) {
	if b.cur == nil {
		b.cur = &job{seq: b.seq}
	}
	b.cur.issues = append(b.cur.issues, is)
}

// flush sends the current batch once a semaphore slot is free.
func (b *batcher) flush() error {
	if b.cur == nil {
		return nil
	}
	b.cur.consumed = b.consumed
	select {
	case b.sem <- struct{}{}:
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	select {
	case b.out <- b.cur:
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	b.cur = nil
	b.seq++
	return nil
}

// pipeline reads files, encodes records on workers goroutines and hands the encoded
// batches to write in input order.
func pipeline(ctx context.Context, files []inputFile, enc *encoder, workers int, write func(*result) error) error {
	g, ctx := errgroup.WithContext(ctx)
	inFlight := 4*workers + 4
	jobs := make(chan *job, workers)
	results := make(chan *result, workers)
	sem := make(chan struct{}, inFlight)

	g.Go(func() error { // reader
		defer close(jobs)
		b := &batcher{ctx: ctx, out: jobs, sem: sem}
		for i, f := range files {
			b.file = int32(i)
			start := b.consumed
			err := readFile(f, &b.consumed, b)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				b.issue(fileIssue(f.path, err))
				if err := b.flush(); err != nil { // keep the report in input order
					return err
				}
			}
			b.consumed = start + f.size // a compressed reader may stop short of the end
		}
		return b.flush()
	})

	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		g.Go(func() error {
			defer wg.Done()
			for j := range jobs {
				r := &result{seq: j.seq, issues: j.issues, blank: j.blank, consumed: j.consumed, docs: make([]doc, len(j.recs))}
				for k, rec := range j.recs {
					d := &r.docs[k]
					d.file, d.pos, d.array = rec.file, rec.pos, rec.array
					enc.encode(j.arena[rec.off:rec.end], d)
				}
				select {
				case results <- r:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		wg.Wait()
		close(results)
		return nil
	})

	g.Go(func() error { // writer: the reorder buffer
		pending := make(map[int64]*result)
		var next int64
		for r := range results {
			pending[r.seq] = r
			for {
				p, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				if err := write(p); err != nil {
					return err
				}
				<-sem
				next++
			}
		}
		if len(pending) > 0 && ctx.Err() == nil {
			return fmt.Errorf("preprocess: internal error: %d batches never written (next %d)", len(pending), next)
		}
		return nil
	})
	return g.Wait()
}
