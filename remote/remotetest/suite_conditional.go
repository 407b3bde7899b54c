package remotetest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	"github.com/cassback/cassback/remote"
)

func testConditional(t *testing.T, newStore func(*testing.T) remote.Store) {
	for _, tt := range []struct {
		name string
		fn   func(*testing.T, remote.Store, remote.Conditional)
	}{
		{"CreateOnly", testCreateOnly},
		{"IfMatch", testIfMatch},
		{"IfMatchPutObject", testIfMatchPutObject},
		{"CreateAfterDelete", testCreateAfterDelete},
		{"RaceCreate", testRaceCreate},
		{"RaceIfMatch", testRaceIfMatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			c, ok := s.(remote.Conditional)
			if !ok {
				t.Skipf("%T does not implement remote.Conditional", s)
			}
			// Probe: a store may find out only now that it cannot do it.
			if _, err := c.PutIf(t.Context(), "probe", nil, ""); errors.Is(err, errors.ErrUnsupported) {
				t.Skipf("PutIf: %v", err)
			} else if err != nil {
				t.Fatalf("PutIf create of a new key: %v", err)
			}
			if err := s.Delete(t.Context(), "probe"); err != nil {
				t.Fatal(err)
			}
			tt.fn(t, s, c)
		})
	}
}

func putIf(t *testing.T, c remote.Conditional, key string, data []byte, ifMatch string) string {
	t.Helper()
	etag, err := c.PutIf(t.Context(), key, data, ifMatch)
	if err != nil {
		t.Fatalf("PutIf(%q, ifMatch %q): %v", key, ifMatch, err)
	}
	if etag == "" {
		t.Fatalf("PutIf(%q, ifMatch %q): got an empty ETag", key, ifMatch)
	}
	return etag
}

func wantPrecondition(t *testing.T, c remote.Conditional, key string, data []byte, ifMatch string) {
	t.Helper()
	etag, err := c.PutIf(t.Context(), key, data, ifMatch)
	if !errors.Is(err, remote.ErrPrecondition) {
		t.Errorf("PutIf(%q, ifMatch %q): got etag %q, error %v; want ErrPrecondition", key, ifMatch, etag, err)
	}
}

func wantETag(t *testing.T, s remote.Store, key, want string) {
	t.Helper()
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag != want {
		t.Errorf("Stat(%q).ETag: got %q, want %q (from PutIf)", key, info.ETag, want)
	}
	var listed string
	err = s.List(t.Context(), key, func(info remote.Info) error {
		if info.Key == key {
			listed = info.ETag
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if listed != want {
		t.Errorf("List(%q) ETag: got %q, want %q (from PutIf)", key, listed, want)
	}
}

func testCreateOnly(t *testing.T, s remote.Store, c remote.Conditional) {
	etag := putIf(t, c, "lease/a", []byte("first"), "")
	wantETag(t, s, "lease/a", etag)
	wantBytes(t, "Get", get(t, s, "lease/a", 0, -1), []byte("first"))
	wantPrecondition(t, c, "lease/a", []byte("second"), "")
	wantBytes(t, "Get after a failed create", get(t, s, "lease/a", 0, -1), []byte("first"))
	wantETag(t, s, "lease/a", etag)
}

func testIfMatch(t *testing.T, s remote.Store, c remote.Conditional) {
	etag1 := putIf(t, c, "lease/b", []byte("v1"), "")
	etag2 := putIf(t, c, "lease/b", []byte("v2"), etag1)
	if etag2 == etag1 {
		t.Errorf("PutIf with If-Match: got the old ETag %q back, want a new one", etag2)
	}
	wantETag(t, s, "lease/b", etag2)
	wantBytes(t, "Get", get(t, s, "lease/b", 0, -1), []byte("v2"))

	wantPrecondition(t, c, "lease/b", []byte("v3"), etag1) // stale
	wantPrecondition(t, c, "lease/b", []byte("v3"), "no-such-etag")
	wantBytes(t, "Get after failed If-Match", get(t, s, "lease/b", 0, -1), []byte("v2"))

	wantPrecondition(t, c, "lease/missing", []byte("v"), etag2)
	if _, err := s.Stat(t.Context(), "lease/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after a failed If-Match on a missing key: got %v, want fs.ErrNotExist", err)
	}

	etag3 := putIf(t, c, "lease/b", []byte("v3"), etag2)
	wantETag(t, s, "lease/b", etag3)
}

// testIfMatchPutObject matches the ETag of an object that Put wrote, as seen
// by Stat and by List.
func testIfMatchPutObject(t *testing.T, s remote.Store, c remote.Conditional) {
	put(t, s, "lease/c", []byte("plain"))
	info, err := s.Stat(t.Context(), "lease/c")
	if err != nil {
		t.Fatal(err)
	}
	wantPrecondition(t, c, "lease/c", []byte("x"), "")
	etag := putIf(t, c, "lease/c", []byte("cas"), info.ETag)
	wantBytes(t, "Get", get(t, s, "lease/c", 0, -1), []byte("cas"))

	put(t, s, "lease/c", []byte("plain again"))
	wantPrecondition(t, c, "lease/c", []byte("x"), etag) // Put changed the object
	var listed string
	err = s.List(t.Context(), "lease/", func(info remote.Info) error {
		listed = info.ETag
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	putIf(t, c, "lease/c", []byte("from list"), listed)
	wantBytes(t, "Get", get(t, s, "lease/c", 0, -1), []byte("from list"))
}

func testCreateAfterDelete(t *testing.T, s remote.Store, c remote.Conditional) {
	etag := putIf(t, c, "lease/d/x", []byte("1"), "")
	if err := s.Delete(t.Context(), "lease/d/x"); err != nil {
		t.Fatal(err)
	}
	wantPrecondition(t, c, "lease/d/x", []byte("2"), etag)
	putIf(t, c, "lease/d/x", []byte("3"), "")
	wantBytes(t, "Get", get(t, s, "lease/d/x", 0, -1), []byte("3"))
}

// racers is how many goroutines race for one conditional write.
const racers = 16

// race runs racers PutIf calls of key at once, racer i writing "racer i",
// and returns the winners' indexes.
func race(t *testing.T, c remote.Conditional, key, ifMatch string) []int {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []int
		start   = make(chan struct{})
	)
	for i := range racers {
		wg.Go(func() {
			<-start
			_, err := c.PutIf(t.Context(), key, fmt.Appendf(nil, "racer %d", i), ifMatch)
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, i)
				mu.Unlock()
			case !errors.Is(err, remote.ErrPrecondition):
				t.Errorf("racer %d: PutIf: got %v, want nil or ErrPrecondition", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return winners
}

func testRaceCreate(t *testing.T, s remote.Store, c remote.Conditional) {
	winners := race(t, c, "gc/lease", "")
	if len(winners) != 1 {
		t.Fatalf("%d racers creating one key: got %d winners %v, want exactly 1", racers, len(winners), winners)
	}
	wantBytes(t, "Get", get(t, s, "gc/lease", 0, -1), fmt.Appendf(nil, "racer %d", winners[0]))
}

func testRaceIfMatch(t *testing.T, s remote.Store, c remote.Conditional) {
	etag := putIf(t, c, "gc/lease", []byte("start"), "")
	winners := race(t, c, "gc/lease", etag)
	if len(winners) != 1 {
		t.Fatalf("%d racers replacing one ETag: got %d winners %v, want exactly 1", racers, len(winners), winners)
	}
	got := get(t, s, "gc/lease", 0, -1)
	if want := fmt.Appendf(nil, "racer %d", winners[0]); !bytes.Equal(got, want) {
		t.Errorf("Get: got %q, want %q", got, want)
	}
}
