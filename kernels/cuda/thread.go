package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// thread is a goroutine locked to its OS thread that runs closures one at a time: the way
// a CUDA context stays current for every call made through it.
type thread struct {
	mu      *sync.Mutex // held while a closure runs (shared with bound callers)
	work    chan func()
	quit    chan struct{}
	stopped chan struct{}
}

// errClosed is returned by calls on a stopped thread.
var errClosed = errors.New("cuda: device thread is closed")

// startThread starts the thread, runs setup on it and returns once setup is done; on a
// setup error teardown runs and the thread ends. teardown also runs at stop.
func startThread(mu *sync.Mutex, setup func() error, teardown func()) (*thread, error) {
	t := &thread{mu: mu, work: make(chan func()), quit: make(chan struct{}), stopped: make(chan struct{})}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the OS thread ends with this goroutine
		defer close(t.stopped)
		if err := setup(); err != nil {
			teardown()
			ready <- err
			return
		}
		ready <- nil
		for {
			select {
			case f := <-t.work:
				if t.mu != nil {
					t.mu.Lock()
				}
				f()
				if t.mu != nil {
					t.mu.Unlock()
				}
			case <-t.quit:
				teardown()
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return t, nil
}

// do runs f on the thread and returns its error. f must not call do on the same thread.
func (t *thread) do(f func() error) error { return <-t.async(f) }

// async queues f and returns a channel that receives its error.
func (t *thread) async(f func() error) <-chan error {
	done := make(chan error, 1)
	select {
	case t.work <- func() { done <- safe(f) }:
	case <-t.quit:
		done <- errClosed
	}
	return done
}

// safe turns a panic inside f into an error, so one bad op cannot kill the thread.
func safe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cuda: panic on the device thread: %v", r)
		}
	}()
	return f()
}

// stop ends the thread after the closure in progress (running teardown) and waits. It
// does not wait when wait is false (a closure stuck in a driver call).
func (t *thread) stop(wait bool) {
	select {
	case <-t.quit:
	default:
		close(t.quit)
	}
	if wait {
		<-t.stopped
	}
}

// Worker is an extra OS thread on which the device's primary context is current, for
// work that may block for long (NCCL's communicator set-up and completion waits) without
// stalling the device thread that enqueues compute. Work it enqueues goes to the same
// stream (Device.Stream), so compute and communication stay ordered.
type Worker struct {
	d  *Device
	th *thread
}

// NewWorker starts a worker thread with d's context current.
func (d *Device) NewWorker() (*Worker, error) {
	th, err := startThread(nil, func() error {
		return d.drv().check("cuCtxSetCurrent", d.drv().cuCtxSetCurrent.Status(d.ctx), "worker thread")
	}, func() {})
	if err != nil {
		return nil, err
	}
	return &Worker{d: d, th: th}, nil
}

// Do runs f on the worker thread.
func (w *Worker) Do(f func() error) error { return w.th.do(f) }

// Async queues f on the worker thread; the channel receives its error.
func (w *Worker) Async(f func() error) <-chan error { return w.th.async(f) }

// Close stops the worker; with wait false it does not wait for a closure stuck in a call.
func (w *Worker) Close(wait bool) { w.th.stop(wait) }

// StreamEvent is an event without timing for completion polling, usable from any thread
// with the device's context current (Device.Do or a Worker).
type StreamEvent uintptr

// NewStreamEvent creates a completion event (CU_EVENT_DISABLE_TIMING).
func (d *Device) NewStreamEvent() (StreamEvent, error) {
	var h uintptr
	err := d.drv().check("cuEventCreate", d.drv().cuEventCreate.Status(addr(&h), 2), "")
	return StreamEvent(h), err
}

// Record enqueues the event on the device's stream.
func (d *Device) RecordStreamEvent(e StreamEvent) error {
	return d.drv().check("cuEventRecord", d.drv().cuEventRecord.Status(uintptr(e), d.stream), "")
}

// QueryStreamEvent reports whether the work before the event's record has completed.
func (d *Device) QueryStreamEvent(e StreamEvent) (bool, error) {
	code := d.drv().cuEventQuery.Status(uintptr(e))
	if code == cudaErrNotReady {
		return false, nil
	}
	return code == cudaSuccess, d.drv().check("cuEventQuery", code, "")
}

// DestroyStreamEvent releases the event.
func (d *Device) DestroyStreamEvent(e StreamEvent) {
	d.drv().cuEventDestroy.Status(uintptr(e))
}
