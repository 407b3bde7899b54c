package remotetest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

func putString(f remote.Store, t *testing.T, key, value string) error {
	return f.Put(t.Context(), key, strings.NewReader(value), int64(len(value)))
}

func exists(t *testing.T, s remote.Store, key string) bool {
	t.Helper()
	_, err := s.Stat(t.Context(), key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestFaultyFailNext(t *testing.T) {
	mem := remotetest.NewMemory()
	f := remotetest.NewFaulty(mem)
	f.FailNext(remotetest.OpPut, 2, nil)
	for i, wantFail := range []bool{true, true, false, false} {
		key := fmt.Sprintf("k%d", i)
		err := putString(f, t, key, "v")
		if got := errors.Is(err, remotetest.ErrInjected); got != wantFail {
			t.Errorf("Put %d: got error %v, want injected %v", i, err, wantFail)
		}
		if got := exists(t, mem, key); got == wantFail {
			t.Errorf("Put %d: object stored %v, want %v", i, got, !wantFail)
		}
	}
	if got := f.Calls(remotetest.OpPut); got != 4 {
		t.Errorf("Calls(OpPut): got %d, want 4", got)
	}
	if _, err := f.Stat(t.Context(), "k3"); err != nil {
		t.Errorf("Stat, which no rule selects: %v", err)
	}
}

func TestFaultyFailAfter(t *testing.T) {
	f := remotetest.NewFaulty(remotetest.NewMemory())
	crash := errors.New("crash")
	f.FailAfter(remotetest.OpAny, 3, crash)
	ctx := t.Context()
	var errs []error
	errs = append(errs, putString(f, t, "a", "1"))
	_, err := f.Stat(ctx, "a")
	errs = append(errs, err)
	errs = append(errs, f.List(ctx, "", func(remote.Info) error { return nil }))
	errs = append(errs, putString(f, t, "b", "2"))
	_, err = f.Stat(ctx, "a")
	errs = append(errs, err)
	errs = append(errs, f.Delete(ctx, "a"))
	for i, err := range errs {
		if wantFail := i >= 3; errors.Is(err, crash) != wantFail {
			t.Errorf("call %d: got error %v, want crash %v", i, err, wantFail)
		}
	}
	if got, want := errs[3].Error(), "put b: crash"; got != want {
		t.Errorf("injected error text: got %q, want %q", got, want)
	}
}

func TestFaultyFailMatching(t *testing.T) {
	mem := remotetest.NewMemory()
	f := remotetest.NewFaulty(mem)
	for _, k := range []string{"packs/aa/1", "index/n/1"} {
		if err := putString(f, t, k, "x"); err != nil {
			t.Fatal(err)
		}
	}
	f.FailMatching(remotetest.OpGet, "packs/", nil)
	if _, err := f.Get(t.Context(), "packs/aa/1", 0, -1); !errors.Is(err, remotetest.ErrInjected) {
		t.Errorf("Get packs/aa/1: got %v, want ErrInjected", err)
	}
	rc, err := f.Get(t.Context(), "index/n/1", 0, -1)
	if err != nil {
		t.Errorf("Get index/n/1: got %v, want nil", err)
	} else {
		rc.Close()
	}
	f.FailMatching(remotetest.OpList, "index/", nil)
	if err := f.List(t.Context(), "index/n/", func(remote.Info) error { return nil }); !errors.Is(err, remotetest.ErrInjected) {
		t.Errorf("List index/n/: got %v, want ErrInjected", err)
	}
	f.Reset()
	if _, err := f.Get(t.Context(), "packs/aa/1", 0, -1); err != nil {
		t.Errorf("Get after Reset: got %v, want nil", err)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestFaultyModes(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 1000)
	for _, tt := range []struct {
		name       string
		mode       remotetest.Mode
		wantStored bool
		wantRead   int
	}{
		{"refused", remotetest.Refused, false, 0},
		{"partial", remotetest.Partial, false, 500},
		{"lost-reply", remotetest.LostReply, true, 1000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := remotetest.NewMemory()
			f := remotetest.NewFaulty(mem)
			f.SetMode(tt.mode)
			f.FailNext(remotetest.OpAny, 3, nil)

			r := &countingReader{r: bytes.NewReader(data)}
			if err := f.Put(t.Context(), "p", r, int64(len(data))); !errors.Is(err, remotetest.ErrInjected) {
				t.Errorf("Put: got %v, want ErrInjected", err)
			}
			if r.n != tt.wantRead {
				t.Errorf("Put read %d bytes of its data, want %d", r.n, tt.wantRead)
			}
			if got := exists(t, mem, "p"); got != tt.wantStored {
				t.Errorf("after a failed Put: stored %v, want %v", got, tt.wantStored)
			}

			if _, err := f.PutIf(t.Context(), "c", []byte("v"), ""); !errors.Is(err, remotetest.ErrInjected) {
				t.Errorf("PutIf: got %v, want ErrInjected", err)
			}
			if got := exists(t, mem, "c"); got != tt.wantStored {
				t.Errorf("after a failed PutIf: stored %v, want %v", got, tt.wantStored)
			}

			if err := putString(mem, t, "d", "v"); err != nil {
				t.Fatal(err)
			}
			if err := f.Delete(t.Context(), "d"); !errors.Is(err, remotetest.ErrInjected) {
				t.Errorf("Delete: got %v, want ErrInjected", err)
			}
			if got := !exists(t, mem, "d"); got != tt.wantStored {
				t.Errorf("after a failed Delete: deleted %v, want %v", got, tt.wantStored)
			}
		})
	}
}

func TestFaultyHook(t *testing.T) {
	f := remotetest.NewFaulty(remotetest.NewMemory())
	var seen []string
	f.SetHook(func(op remotetest.Op, key string) error {
		seen = append(seen, op.String()+" "+key)
		if key == "bad" {
			return errors.New("hook says no")
		}
		return nil
	})
	if err := putString(f, t, "good", "x"); err != nil {
		t.Errorf("Put good: %v", err)
	}
	if err := putString(f, t, "bad", "x"); err == nil || err.Error() != "put bad: hook says no" {
		t.Errorf("Put bad: got %v, want %q", err, "put bad: hook says no")
	}
	f.SetHook(nil)
	if err := putString(f, t, "bad", "x"); err != nil {
		t.Errorf("Put bad without the hook: %v", err)
	}
	if got, want := strings.Join(seen, ","), "put good,put bad"; got != want {
		t.Errorf("hook saw %q, want %q", got, want)
	}
}

func TestFaultyLog(t *testing.T) {
	f := remotetest.NewFaulty(remotetest.NewMemory())
	f.FailNext(remotetest.OpPut, 1, nil)
	_ = putString(f, t, "packs/1", "x") // fails
	_ = putString(f, t, "packs/1", "x") // retried
	_ = putString(f, t, "packs/2", "x")
	_, _ = f.Stat(t.Context(), "nope")
	log := f.Log()
	if len(log) != 4 {
		t.Fatalf("Log: got %d calls, want 4", len(log))
	}
	stored := map[string]int{}
	for _, c := range log {
		if c.Op == remotetest.OpPut && c.Err == nil {
			stored[c.Key]++
		}
	}
	if stored["packs/1"] != 1 || stored["packs/2"] != 1 {
		t.Errorf("successful Puts per key: got %v, want 1 each", stored)
	}
	if !errors.Is(log[3].Err, fs.ErrNotExist) || log[3].Op != remotetest.OpStat {
		t.Errorf("last call: got %v %v, want stat with fs.ErrNotExist", log[3].Op, log[3].Err)
	}
	if got := f.Calls(remotetest.OpAny); got != 4 {
		t.Errorf("Calls(OpAny): got %d, want 4", got)
	}
}

func TestFaultyConcurrent(t *testing.T) {
	f := remotetest.NewFaulty(remotetest.NewMemory())
	f.FailNext(remotetest.OpPut, 10, nil)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	for i := range 100 {
		wg.Go(func() {
			if err := putString(f, t, fmt.Sprintf("k/%d", i), "x"); err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed != 10 {
		t.Errorf("100 concurrent Puts with FailNext(10): got %d failures, want 10", failed)
	}
	if got := f.Calls(remotetest.OpPut); got != 100 {
		t.Errorf("Calls(OpPut): got %d, want 100", got)
	}
}

func TestFaultyUnsupportedPutIf(t *testing.T) {
	f := remotetest.NewFaulty(remotetest.WithoutConditional(remotetest.NewMemory()))
	if _, err := f.PutIf(t.Context(), "k", nil, ""); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PutIf on a store without it: got %v, want errors.ErrUnsupported", err)
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[remotetest.Op]string{
		remotetest.OpAny: "any", remotetest.OpPut: "put", remotetest.OpListDirs: "list-dirs",
		remotetest.OpPutIf: "put-if", remotetest.Op(99): "Op(99)",
	} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String(): got %q, want %q", int(op), got, want)
		}
	}
}

// A backup that crashes after its second upload, retried, stores each pack
// exactly once.
func ExampleFaulty() {
	ctx := context.Background()
	f := remotetest.NewFaulty(remotetest.NewMemory())
	f.FailAfter(remotetest.OpPut, 2, nil)
	upload := func() error {
		for _, key := range []string{"packs/01", "packs/02", "packs/03"} {
			if _, err := f.Stat(ctx, key); err == nil {
				continue // already stored by an earlier run
			}
			if err := f.Put(ctx, key, strings.NewReader(key), int64(len(key))); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Println("first run:", upload())
	f.Reset()
	fmt.Println("second run:", upload())
	fmt.Println("puts:", f.Calls(remotetest.OpPut))
	// Output:
	// first run: put packs/03: injected fault
	// second run: <nil>
	// puts: 4
}
