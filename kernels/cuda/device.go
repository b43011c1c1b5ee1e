package cuda

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
)

// Options configure a Device.
type Options struct {
	Index int // GPU ordinal (LOCAL_RANK under golaunch)
	// ArenaBytes is the size of the one device allocation everything else is carved from
	// (0: GOMEGATRON_CUDA_ARENA_MB if set, else 90% of the free memory at start-up).
	ArenaBytes int64
	// PinnedBytes is the pinned host staging buffer for transfers (0: 64 MiB).
	PinnedBytes int
	// CacheDir holds compiled CUBINs (0: GOMEGATRON_CUBIN_CACHE, else
	// os.UserCacheDir()/gomegatron/cubin).
	CacheDir string
	// WorkspaceBytes is cuBLASLt's workspace (0: 32 MiB).
	WorkspaceBytes int
}

// Device is one GPU driven from one OS thread. CUDA's current context is per thread and
// goroutines migrate between threads, so a Device owns a goroutine locked to its thread
// with runtime.LockOSThread, on which the device's primary context is current; Do runs
// closures there one at a time. Every driver call in this package happens inside Do.
//
// Work is queued on one non-blocking stream (Stream), so ops run in call order on the GPU
// and the host only waits in Sync and in downloads.
type Device struct {
	libs  *Libraries
	Index int
	Name  string
	CC    int // compute capability major·10 + minor (90 for an H100)
	SMs   int

	th *thread
	mu sync.Mutex // serialises the device thread's closures with bound callers (Backend.Bind)

	ctx, stream uintptr
	arena       *Arena
	arenaBase   uintptr
	pinned      uintptr
	pinnedSize  int
	modules     *modules
	args        launchArgs
	prof        *profiler // GOMEGATRON_CUDA_PROFILE: per-op GPU times (nil: off)
}

// OpenDevice retains the primary context of GPU o.Index on a new locked thread, creates
// the stream, the arena and the pinned staging buffer.
func OpenDevice(libs *Libraries, o Options) (*Device, error) {
	if o.Index < 0 || o.Index >= libs.Devices {
		return nil, fmt.Errorf("cuda: device %d does not exist (%d visible)", o.Index, libs.Devices)
	}
	d := &Device{libs: libs, Index: o.Index}
	th, err := startThread(&d.mu, func() error { return d.setup(o) }, d.teardown)
	if err != nil {
		return nil, err
	}
	d.th = th
	return d, nil
}

// Do runs f on the device's thread and returns its error. f must not call Do.
func (d *Device) Do(f func() error) error {
	if d.th == nil {
		return errClosed
	}
	return d.th.do(f)
}

func (d *Device) drv() *driverAPI { return d.libs.drv }

func (d *Device) setup(o Options) error {
	drv := d.drv()
	var dev int32
	if err := drv.check("cuDeviceGet", drv.cuDeviceGet.Status(addr(&dev), uintptr(o.Index)), "device %d", o.Index); err != nil {
		return err
	}
	name := make([]byte, 256)
	if err := drv.check("cuDeviceGetName", drv.cuDeviceGetName.Status(bytesAddr(name), 256, uintptr(dev)), ""); err != nil {
		return err
	}
	d.Name = cString(name)
	attr := func(a int) (int, error) {
		var v int32
		err := drv.check("cuDeviceGetAttribute", drv.cuDeviceGetAttribute.Status(addr(&v), uintptr(a), uintptr(dev)), "attribute %d", a)
		return int(v), err
	}
	maj, err := attr(attrCCMajor)
	if err != nil {
		return err
	}
	minor, err := attr(attrCCMinor)
	if err != nil {
		return err
	}
	d.CC = maj*10 + minor
	if d.SMs, err = attr(attrSMCount); err != nil {
		return err
	}
	if err := drv.check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain.Status(addr(&d.ctx), uintptr(dev)), "device %d", o.Index); err != nil {
		return err
	}
	if err := drv.check("cuCtxSetCurrent", drv.cuCtxSetCurrent.Status(d.ctx), ""); err != nil {
		return err
	}
	if err := drv.check("cuStreamCreate", drv.cuStreamCreate.Status(addr(&d.stream), 1 /* CU_STREAM_NON_BLOCKING */), ""); err != nil {
		return err
	}
	var free, total uintptr
	if err := drv.check("cuMemGetInfo_v2", drv.cuMemGetInfo.Status(addr(&free), addr(&total)), ""); err != nil {
		return err
	}
	size := o.ArenaBytes
	if size == 0 {
		if v := os.Getenv("GOMEGATRON_CUDA_ARENA_MB"); v != "" {
			mb, err := strconv.ParseInt(v, 10, 64)
			if err != nil || mb <= 0 {
				return fmt.Errorf("GOMEGATRON_CUDA_ARENA_MB=%q is not a positive number of MiB", v)
			}
			size = mb << 20
		} else {
			size = int64(free) / 10 * 9
		}
	}
	if err := drv.check("cuMemAlloc_v2", drv.cuMemAlloc.Status(addr(&d.arenaBase), uintptr(size)), "arena of %d MiB (%d MiB free of %d)", size>>20, free>>20, total>>20); err != nil {
		return err
	}
	if d.arena, err = NewArena(d.arenaBase, uintptr(size)); err != nil {
		return err
	}
	d.pinnedSize = o.PinnedBytes
	if d.pinnedSize <= 0 {
		d.pinnedSize = 64 << 20
	}
	if err := drv.check("cuMemAllocHost_v2", drv.cuMemAllocHost.Status(addr(&d.pinned), uintptr(d.pinnedSize)), "%d MiB pinned staging buffer", d.pinnedSize>>20); err != nil {
		return err
	}
	if path := os.Getenv(EnvProfile); path != "" {
		d.prof = newProfiler(d, path)
	}
	dir := o.CacheDir
	if dir == "" {
		if dir, err = CacheDir(); err != nil {
			return err
		}
	}
	return d.loadModules(dir)
}

func (d *Device) teardown() {
	drv := d.drv()
	if d.stream != 0 {
		drv.cuStreamSynchronize.Status(d.stream)
	}
	if d.modules != nil {
		d.modules.unload(drv)
	}
	if d.pinned != 0 {
		drv.cuMemFreeHost.Status(d.pinned)
		d.pinned = 0
	}
	if d.arenaBase != 0 {
		drv.cuMemFree.Status(d.arenaBase)
		d.arenaBase = 0
	}
	if d.stream != 0 {
		drv.cuStreamDestroy.Status(d.stream)
		d.stream = 0
	}
	if d.ctx != 0 {
		var dev int32
		drv.cuDeviceGet.Status(addr(&dev), uintptr(d.Index))
		drv.cuDevicePrimaryCtxRelease.Status(uintptr(dev))
		d.ctx = 0
	}
}

// Close waits for queued work, frees the arena and the staging buffer and releases the
// primary context. The Device is unusable afterwards.
func (d *Device) Close() error {
	var err error
	if d.prof != nil {
		err = d.Do(d.prof.report)
	}
	d.th.stop(true)
	return err
}

// Arena returns the device's arena; use it only inside Do.
func (d *Device) Arena() *Arena { return d.arena }

// Stream is the device's stream handle.
func (d *Device) Stream() uintptr { return d.stream }

// sync waits for the stream (on the device thread).
func (d *Device) sync() error {
	return d.drv().check("cuStreamSynchronize", d.drv().cuStreamSynchronize.Status(d.stream), "")
}

// Sync waits for all queued work.
func (d *Device) Sync() error { return d.Do(d.sync) }

// upload copies host bytes to device memory at dst through the pinned staging buffer, a
// chunk at a time (pageable Go memory cannot be copied asynchronously).
func (d *Device) upload(dst uintptr, src []byte) error {
	drv := d.drv()
	stage := dl.Bytes(d.pinned, d.pinnedSize)
	for off := 0; off < len(src); off += d.pinnedSize {
		n := copy(stage, src[off:])
		if err := drv.check("cuMemcpyHtoDAsync_v2", drv.cuMemcpyHtoDAsync.Status(dst+uintptr(off), d.pinned, uintptr(n), d.stream), "%d bytes", n); err != nil {
			return err
		}
		if err := d.sync(); err != nil { // the staging buffer is reused by the next chunk
			return err
		}
	}
	return nil
}

// download copies device memory at src into host bytes through the staging buffer.
func (d *Device) download(dst []byte, src uintptr) error {
	drv := d.drv()
	stage := dl.Bytes(d.pinned, d.pinnedSize)
	for off := 0; off < len(dst); off += d.pinnedSize {
		n := min(d.pinnedSize, len(dst)-off)
		if err := drv.check("cuMemcpyDtoHAsync_v2", drv.cuMemcpyDtoHAsync.Status(d.pinned, src+uintptr(off), uintptr(n), d.stream), "%d bytes", n); err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
		copy(dst[off:off+n], stage[:n])
	}
	return nil
}

func (d *Device) copyDtoD(dst, src uintptr, n int) error {
	if n == 0 {
		return nil
	}
	return d.drv().check("cuMemcpyDtoDAsync_v2", d.drv().cuMemcpyDtoDAsync.Status(dst, src, uintptr(n), d.stream), "%d bytes", n)
}

func (d *Device) memset8(p uintptr, v byte, n int) error {
	if n == 0 {
		return nil
	}
	return d.drv().check("cuMemsetD8Async", d.drv().cuMemsetD8Async.Status(p, uintptr(v), uintptr(n), d.stream), "%d bytes", n)
}

func (d *Device) memset32(p uintptr, v uint32, n int) error {
	if n == 0 {
		return nil
	}
	return d.drv().check("cuMemsetD32Async", d.drv().cuMemsetD32Async.Status(p, uintptr(v), uintptr(n), d.stream), "%d words", n)
}

// Upload, Download, Alloc and Free are the thread-safe forms (each one Do).
func (d *Device) Upload(dst uintptr, src []byte) error {
	return d.Do(func() error { return d.upload(dst, src) })
}
func (d *Device) Download(dst []byte, src uintptr) error {
	return d.Do(func() error { return d.download(dst, src) })
}
func (d *Device) Alloc(n int) (p uintptr, err error) {
	err = d.Do(func() error { p, err = d.arena.Alloc(uintptr(n)); return err })
	return p, err
}
func (d *Device) Free(p uintptr) error { return d.Do(func() error { return d.arena.Free(p) }) }

// Event is a CUDA event for timing or ordering.
type Event struct {
	d *Device
	h uintptr
}

// NewEvent creates an event (with timing).
func (d *Device) NewEvent() (*Event, error) {
	e := &Event{d: d}
	err := d.Do(func() error {
		return d.drv().check("cuEventCreate", d.drv().cuEventCreate.Status(addr(&e.h), 0), "")
	})
	return e, err
}

// Record enqueues the event on the device's stream.
func (e *Event) Record() error {
	return e.d.Do(func() error {
		return e.d.drv().check("cuEventRecord", e.d.drv().cuEventRecord.Status(e.h, e.d.stream), "")
	})
}

// Elapsed waits for end and returns the milliseconds between e and end.
func (e *Event) Elapsed(end *Event) (ms float32, err error) {
	err = e.d.Do(func() error {
		drv := e.d.drv()
		if err := drv.check("cuEventSynchronize", drv.cuEventSynchronize.Status(end.h), ""); err != nil {
			return err
		}
		return drv.check("cuEventElapsedTime", drv.cuEventElapsedTime.Status(addr(&ms), e.h, end.h), "")
	})
	return ms, err
}

// Destroy releases the event.
func (e *Event) Destroy() error {
	return e.d.Do(func() error {
		return e.d.drv().check("cuEventDestroy_v2", e.d.drv().cuEventDestroy.Status(e.h), "")
	})
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
