package cpu

import (
	"sync"
	"sync/atomic"
)

// gemmArgs are the operands of one Sgemm call (see Sgemm for their meaning).
type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
}

// gemmJob is one blocked Sgemm call shared by its participants (the caller and the pool
// workers it reserved). The loop nest is the Goto/BLIS one,
//
//	for jc in n by nc:                       C[:, jc:jc+nc]
//	  for pc in k by kc:                     rank-kc update, beta applied at pc = 0
//	    pack op(B)[pc:pc+kc, jc:jc+nc] → bp  (shared; panels split between participants)
//	    for each unit (rows mr-aligned, columns nr-aligned) claimed by a participant:
//	      pack op(A)[rows, pc:pc+kc] → ap[participant]
//	      for each nr panel, for each mr panel: micro-kernel on the C tile
//
// software-pipelined over the (jc, pc) blocks b with two packed-B buffers, so one barrier
// per block suffices:
//
//	pack B(0) → bp[0]; barrier
//	for b: compute block b from bp[b%2]; pack B(b+1) → bp[(b+1)%2]; barrier
//
// B(b+1) overwrites the buffer of block b−1, which every participant finished before the
// previous barrier; a participant done with its units of block b packs ahead while the
// others finish, which also balances the load. Every participant walks the same nest; the
// only shared mutable state is the two claim counters, reset by the last participant to
// reach each barrier.
type gemmJob struct {
	kern *gemmKernel
	g    gemmArgs

	parts      int // participants
	mc, kc, nc int // effective block sizes for this call (see plan)
	mUnits     int // row units per compute phase
	nParts     int // column parts per row unit (>1 only when there are few rows)

	bp        [2][]float32 // packed B blocks (double buffer): nc/nr panels of kc×nr each
	ap        [][]float32  // per participant: packed A (mc×kc) then an mr×nr edge tile
	nextPack  atomic.Int64 // claim counters of the current phase
	nextUnits atomic.Int64

	mu    sync.Mutex
	cond  sync.Cond
	count int
	gen   uint64
	done  sync.WaitGroup
}

var gemmJobs = sync.Pool{New: func() any {
	j := new(gemmJob)
	j.cond.L = &j.mu
	return j
}}

// gemmMinWorkPerThread is the m·n·k below which an extra thread is not worth a hand-off.
const gemmMinWorkPerThread = 48 * 48 * 48

// sgemmBlocked runs g on kern with up to threads participants.
func sgemmBlocked(kern *gemmKernel, threads int, g *gemmArgs) {
	j := gemmJobs.Get().(*gemmJob)
	j.kern, j.g = kern, *g
	if w := g.m * g.n * g.k / gemmMinWorkPerThread; threads > w {
		threads = max(1, w)
	}
	parts := 1
	if threads > 1 {
		gemmPool.ensure(threads - 1)
		for parts < threads && gemmPool.reserve() {
			parts++
		}
	}
	j.plan(parts)
	j.done.Add(parts - 1)
	for pid := 1; pid < parts; pid++ {
		gemmPool.ch <- gemmTask{job: j, pid: pid}
	}
	j.run(0)
	j.done.Wait()
	j.g = gemmArgs{} // drop references to the caller's slices
	gemmJobs.Put(j)
}

// plan fixes the block sizes and the work split for parts participants and sizes the
// buffers. Block sizes are balanced (k = 300 with kc 256 gives two blocks of 150) and do
// not depend on parts, so the result is the same for every thread count.
func (j *gemmJob) plan(parts int) {
	kn, g := j.kern, &j.g
	j.parts = parts
	j.kc = gemmCeilDiv(g.k, gemmCeilDiv(g.k, kn.kc))
	j.nc = gemmRoundUp(gemmCeilDiv(g.n, gemmCeilDiv(g.n, kn.nc)), kn.nr)
	mPanels := gemmCeilDiv(g.m, kn.mr)
	mcPanels := kn.mc / kn.mr
	j.mUnits = gemmCeilDiv(mPanels, mcPanels)
	j.nParts = 1
	if parts > 1 {
		j.mUnits = min(mPanels, parts*gemmCeilDiv(mPanels, parts*mcPanels))
		if j.mUnits < parts {
			j.nParts = min(parts, gemmCeilDiv(min(g.n, j.nc), kn.nr))
		}
	}
	j.mc = gemmCeilDiv(mPanels, j.mUnits) * kn.mr
	for i := range j.bp {
		j.bp[i] = gemmGrow(j.bp[i], j.kc*j.nc)
	}
	for len(j.ap) < parts {
		j.ap = append(j.ap, nil)
	}
	for p := 0; p < parts; p++ {
		j.ap[p] = gemmGrow(j.ap[p], j.mc*j.kc+kn.mr*kn.nr)
	}
	j.nextPack.Store(0)
	j.nextUnits.Store(0)
	j.count = 0
}

// gemmBPanelsPerClaim is how many B micro-panels one packing claim covers.
const gemmBPanelsPerClaim = 4

// run is participant pid's walk of the loop nest.
func (j *gemmJob) run(pid int) {
	g := &j.g
	nk := gemmCeilDiv(g.k, j.kc)
	blocks := gemmCeilDiv(g.n, j.nc) * nk
	j.packBlock(0)
	j.barrier()
	for b := 0; b < blocks; b++ {
		jc, pc := (b/nk)*j.nc, (b%nk)*j.kc
		nc, kc := min(j.nc, g.n-jc), min(j.kc, g.k-pc)
		beta := g.beta
		if pc > 0 {
			beta = 1
		}
		nPanels := gemmCeilDiv(nc, j.kern.nr)
		nUnits := int64(j.mUnits * j.nParts)
		for u := j.nextUnits.Add(1) - 1; u < nUnits; u = j.nextUnits.Add(1) - 1 {
			j.computeUnit(pid, j.bp[b%2], int(u)/j.nParts, int(u)%j.nParts, jc, nc, nPanels, pc, kc, beta)
		}
		if b+1 < blocks {
			j.packBlock(b + 1)
		}
		j.barrier()
	}
}

// packBlock packs the claimed panels of op(B) block b (jc = b/nk·nc, pc = b%nk·kc) into
// bp[b%2].
func (j *gemmJob) packBlock(b int) {
	kn, g := j.kern, &j.g
	nk := gemmCeilDiv(g.k, j.kc)
	jc, pc := (b/nk)*j.nc, (b%nk)*j.kc
	nc, kc := min(j.nc, g.n-jc), min(j.kc, g.k-pc)
	nPanels := gemmCeilDiv(nc, kn.nr)
	claims := int64(gemmCeilDiv(nPanels, gemmBPanelsPerClaim))
	bp := j.bp[b%2]
	for u := j.nextPack.Add(1) - 1; u < claims; u = j.nextPack.Add(1) - 1 {
		for q := int(u) * gemmBPanelsPerClaim; q < min(nPanels, int(u+1)*gemmBPanelsPerClaim); q++ {
			c0 := q * kn.nr
			gemmPackB(bp[q*kn.nr*kc:(q+1)*kn.nr*kc], kn.nr, g, pc, kc, jc+c0, min(kn.nr, nc-c0), kn.asmPack)
		}
	}
}

// computeUnit packs the rows of row unit mu and multiplies them with column part np of
// the packed B block at (jc, pc).
func (j *gemmJob) computeUnit(pid int, bp []float32, mu, np, jc, nc, nPanels, pc, kc int, beta float32) {
	kn, g := j.kern, &j.g
	mPanels := gemmCeilDiv(g.m, kn.mr)
	p0, p1 := mu*mPanels/j.mUnits, (mu+1)*mPanels/j.mUnits
	i0 := p0 * kn.mr
	rows := min(p1*kn.mr, g.m) - i0
	buf := j.ap[pid]
	ap, tile := buf[:j.mc*j.kc], buf[j.mc*j.kc:]
	gemmPackA(ap, kn.mr, g, i0, rows, pc, kc, kn.asmPack)
	q0, q1 := np*nPanels/j.nParts, (np+1)*nPanels/j.nParts
	mrkc, nrkc := kn.mr*kc, kn.nr*kc
	for q := q0; q < q1; q++ {
		col := jc + q*kn.nr
		cols := min(kn.nr, jc+nc-col)
		bq := &bp[q*nrkc]
		for ip := 0; ip < p1-p0; ip++ {
			row := i0 + ip*kn.mr
			rs := min(kn.mr, g.m-row)
			if rs == kn.mr && cols == kn.nr {
				kn.fn(kc, &ap[ip*mrkc], bq, &g.c[row*g.ldc+col], g.ldc, g.alpha, beta)
				continue
			}
			kn.fn(kc, &ap[ip*mrkc], bq, &tile[0], kn.nr, 1, 0)
			for i := 0; i < rs; i++ {
				cr := g.c[(row+i)*g.ldc+col : (row+i)*g.ldc+col+cols]
				tr := tile[i*kn.nr : i*kn.nr+cols]
				for jj, t := range tr {
					if beta == 0 {
						cr[jj] = g.alpha * t
					} else {
						cr[jj] = g.alpha*t + beta*cr[jj]
					}
				}
			}
		}
	}
}

// barrier waits until every participant has reached it; the last one resets the claim
// counters for the next phase.
func (j *gemmJob) barrier() {
	if j.parts == 1 {
		j.nextPack.Store(0)
		j.nextUnits.Store(0)
		return
	}
	j.mu.Lock()
	gen := j.gen
	j.count++
	if j.count == j.parts {
		j.count = 0
		j.gen++
		j.nextPack.Store(0)
		j.nextUnits.Store(0)
		j.cond.Broadcast()
	} else {
		for gen == j.gen {
			j.cond.Wait()
		}
	}
	j.mu.Unlock()
}

func gemmCeilDiv(a, b int) int { return (a + b - 1) / b }
func gemmRoundUp(a, b int) int { return gemmCeilDiv(a, b) * b }

// gemmGrow returns s resized to n, reallocating only when its capacity is short.
func gemmGrow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
