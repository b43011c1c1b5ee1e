package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newPair(t *testing.T) (*Server, *Client) {
	t.Helper()
	s, err := Listen("127.0.0.1:0", "tok")
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	c := dial(t, s.Addr(), "tok")
	return s, c
}

func dial(t *testing.T, addr, token string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, token)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestSetGetCheck(t *testing.T) {
	_, c := newPair(t)
	ok, err := c.Check("a")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, c.Set("a", []byte("1")))
	require.NoError(t, c.Set("empty", nil))
	ok, err = c.Check("a", "empty")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = c.Check("a", "b")
	require.NoError(t, err)
	assert.False(t, ok)
	v, err := c.Get(ctxT(t, 5*time.Second), "empty")
	require.NoError(t, err)
	assert.Empty(t, v)
	require.NoError(t, c.Set("a", []byte("second")))
	v, err = c.Get(ctxT(t, 5*time.Second), "a")
	require.NoError(t, err)
	assert.Equal(t, "second", string(v))
}

func TestGetWaitsForSetFromAnotherClient(t *testing.T) {
	s, c := newPair(t)
	other := dial(t, s.Addr(), "tok")
	got := make(chan string, 1)
	go func() {
		v, err := c.Get(ctxT(t, 10*time.Second), "late")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(v)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case v := <-got:
		t.Fatalf("Get returned %q before the key was set", v)
	default:
	}
	require.NoError(t, other.Set("late", []byte("v")))
	assert.Equal(t, "v", <-got)
}

func TestWaitTimeoutNamesMissingKeys(t *testing.T) {
	_, c := newPair(t)
	require.NoError(t, c.Set("present", []byte("x")))
	err := c.Wait(ctxT(t, 200*time.Millisecond), "present", "miss1", "miss2")
	require.Error(t, err)
	var te *WaitTimeoutError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, []string{"miss1", "miss2"}, te.Keys)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), `waiting for keys ["miss1" "miss2"]`)
	assert.NotContains(t, err.Error(), `"present"`)

	// Get on a missing key times out the same way; the connection stays usable.
	_, err = c.Get(ctxT(t, 100*time.Millisecond), "nope")
	assert.ErrorContains(t, err, `["nope"]`)
	require.NoError(t, c.Set("after", []byte("y")))
}

func TestWaitCancel(t *testing.T) {
	_, c := newPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err := c.Wait(ctx, "never")
	assert.ErrorIs(t, err, context.Canceled)
	ok, err := c.Check("never")
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestWrongTokenRejectedOnBothSides(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "right")
	require.NoError(t, err)
	defer s.Close()
	var mu sync.Mutex
	var logged []string
	s.SetLogf(func(f string, a ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(f, a...))
		mu.Unlock()
	})
	start := time.Now()
	_, err = Dial(ctxT(t, 10*time.Second), s.Addr(), "wrong")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrRejected)
	assert.Contains(t, err.Error(), "another job")
	assert.Less(t, time.Since(start), 5*time.Second, "a rejected token must not be retried until the deadline")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(logged) == 1 && strings.Contains(logged[0], "wrong job token")
	}, 5*time.Second, 10*time.Millisecond)
}

func TestDialRetriesUntilServerUp(t *testing.T) {
	// Reserve a port, free it, and start the server there after the client began dialling.
	s0, err := Listen("127.0.0.1:0", "t")
	require.NoError(t, err)
	addr := s0.Addr()
	require.NoError(t, s0.Close())
	done := make(chan error, 1)
	go func() {
		c, err := Dial(ctxT(t, 10*time.Second), addr, "t")
		if err == nil {
			err = c.Set("k", []byte("v"))
			c.Close()
		}
		done <- err
	}()
	time.Sleep(150 * time.Millisecond)
	s, err := Listen(addr, "t")
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, <-done)

	_, err = Dial(ctxT(t, 100*time.Millisecond), "127.0.0.1:1", "t")
	assert.ErrorContains(t, err, "cannot reach 127.0.0.1:1")
}

func TestAddCounters(t *testing.T) {
	s, c := newPair(t)
	v, err := c.Add("n", 5)
	require.NoError(t, err)
	assert.EqualValues(t, 5, v)
	v, err = c.Add("n", -7)
	require.NoError(t, err)
	assert.EqualValues(t, -2, v)
	raw, err := c.Get(ctxT(t, time.Second), "n")
	require.NoError(t, err)
	assert.Equal(t, "-2", string(raw), "counters are decimal strings, as in c10d")

	require.NoError(t, c.Set("text", []byte("abc")))
	_, err = c.Add("text", 1)
	assert.ErrorContains(t, err, `"text"`)

	// 8 clients × 50 adds from 4 goroutines each: every increment counts exactly once.
	var wg sync.WaitGroup
	seen := make(chan int64, 8*4*50)
	for i := 0; i < 8; i++ {
		cl := dial(t, s.Addr(), "tok")
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 50; j++ {
					n, err := cl.Add("ctr", 1)
					if err != nil {
						t.Error(err)
						return
					}
					seen <- n
				}
			}()
		}
	}
	wg.Wait()
	close(seen)
	uniq := map[int64]bool{}
	for n := range seen {
		assert.False(t, uniq[n], "value %d returned twice", n)
		uniq[n] = true
	}
	assert.Len(t, uniq, 1600)
	v, err = c.Add("ctr", 0)
	require.NoError(t, err)
	assert.EqualValues(t, 1600, v)
}

func TestCompareSet(t *testing.T) {
	_, c := newPair(t)
	cases := []struct {
		name              string
		expected, desired string
		want              string
	}{
		{"missing key, non-empty expected: not set", "x", "y", "x"},
		{"missing key, empty expected: set", "", "first", "first"},
		{"mismatch: current returned", "nope", "z", "first"},
		{"match: swapped", "first", "second", "second"},
	}
	for _, tc := range cases {
		got, err := c.CompareSet("cs", []byte(tc.expected), []byte(tc.desired))
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, string(got), tc.name)
	}
	v, err := c.Get(ctxT(t, time.Second), "cs")
	require.NoError(t, err)
	assert.Equal(t, "second", string(v))
}

func TestConcurrentWaitersShareOneClient(t *testing.T) {
	s, c := newPair(t)
	setter := dial(t, s.Addr(), "tok")
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Get(ctxT(t, 10*time.Second), fmt.Sprintf("k%d", i))
			if err == nil && string(v) != fmt.Sprint(i*i) {
				err = fmt.Errorf("k%d = %q", i, v)
			}
			errs <- err
		}()
	}
	for i := n - 1; i >= 0; i-- {
		require.NoError(t, setter.Set(fmt.Sprintf("k%d", i), []byte(fmt.Sprint(i*i))))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestBarrier(t *testing.T) {
	s, _ := newPair(t)
	const world = 5
	var wg sync.WaitGroup
	errs := make([]error, world)
	for r := 0; r < world; r++ {
		cl := dial(t, s.Addr(), "tok")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = cl.Barrier(ctxT(t, 10*time.Second), "b0", r, world)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		assert.NoError(t, err, "rank %d", r)
	}
}

func TestBarrierTimeoutNamesMissingRanks(t *testing.T) {
	s, _ := newPair(t)
	const world = 4
	var wg sync.WaitGroup
	errs := make([]error, world)
	for _, r := range []int{0, 2} {
		cl := dial(t, s.Addr(), "tok")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = cl.Barrier(ctxT(t, 300*time.Millisecond), "init", r, world)
		}()
	}
	wg.Wait()
	for _, r := range []int{0, 2} {
		var te *WaitTimeoutError
		require.ErrorAs(t, errs[r], &te, "rank %d", r)
		assert.Equal(t, []int{1, 3}, te.Ranks)
		assert.Contains(t, errs[r].Error(), `barrier "init" timed out`)
		assert.Contains(t, errs[r].Error(), "2 of 4 ranks arrived, missing ranks [1 3]")
	}
	_, c := newPair(t)
	assert.ErrorContains(t, c.Barrier(context.Background(), "x", 4, 4), "rank 4 outside world of 4")
}

func TestServerCloseFailsPendingCalls(t *testing.T) {
	s, c := newPair(t)
	done := make(chan error, 1)
	go func() { done <- c.Wait(context.Background(), "never") }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.Error(t, err)
		assert.False(t, errors.Is(err, context.DeadlineExceeded))
	case <-time.After(5 * time.Second):
		t.Fatal("pending wait did not fail after the server closed")
	}
	assert.Error(t, c.Set("a", nil))
}
