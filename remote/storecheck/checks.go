package storecheck

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/remote"
)

// unsupported is a check's error when the store lacks what the check
// needs; Run reports it as NotSupported.
type unsupported struct{ msg string }

func (e unsupported) Error() string        { return e.msg }
func (e unsupported) Is(target error) bool { return target == errors.ErrUnsupported }

// conditionalOf returns the store as a Conditional if it claims to be one.
// A store that has PutIf may still find out at its first call that the
// server ignores the headers; checkCreate handles that.
func (c *checker) conditionalOf() (remote.Conditional, error) {
	if cond, ok := c.st.(remote.Conditional); ok {
		return cond, nil
	}
	return nil, unsupported{"the store has no conditional writes (no PutIf)"}
}

// needConditional is the error of a conditional check on a store without
// conditional writes.
func (c *checker) needConditional() error {
	if c.cond != nil {
		return nil
	}
	return unsupported{fmt.Sprintf("skipped: the store has no conditional writes (see %s)", CheckCreate)}
}

// checkCreate: If-None-Match creates a new key and refuses an existing one.
func (c *checker) checkCreate(ctx context.Context) (string, error) {
	if c.cond == nil {
		return "", c.condErr
	}
	key := c.key("create")
	etag, err := c.cond.PutIf(ctx, key, []byte("first"), "")
	if errors.Is(err, errors.ErrUnsupported) {
		c.cond, c.condErr = nil, unsupported{"the store has no conditional writes: " + err.Error()}
		return "", c.condErr
	}
	if err != nil {
		return "", fmt.Errorf("create of a new key: %v", err)
	}
	if etag == "" {
		return "", errors.New("create of a new key returned an empty ETag")
	}
	_, err = c.cond.PutIf(ctx, key, []byte("second"), "")
	switch {
	case err == nil:
		return "", errors.New("a second create of the same key succeeded: the server ignores If-None-Match")
	case !errors.Is(err, remote.ErrPrecondition):
		return "", fmt.Errorf("second create of the same key: got %v, want a precondition failure", err)
	}
	if err := c.wantBytes(ctx, key, []byte("first"), "after the refused second create"); err != nil {
		return "", err
	}
	return "If-None-Match creates a new key; a second create fails with a precondition error", nil
}

// checkReplace: If-Match replaces the object with the given ETag only.
func (c *checker) checkReplace(ctx context.Context) (string, error) {
	if err := c.needConditional(); err != nil {
		return "", err
	}
	key := c.key("replace")
	if err := c.put(ctx, key, []byte("v0, a plain put")); err != nil {
		return "", err
	}
	info0, err := c.st.Stat(ctx, key)
	if err != nil {
		return "", fmt.Errorf("stat after put: %v", err)
	}
	etag1, err := c.cond.PutIf(ctx, key, []byte("v1"), info0.ETag)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		c.matchErr = unsupported{"the store has no If-Match writes: " + err.Error()}
		return "", c.matchErr
	case err != nil:
		return "", fmt.Errorf("If-Match with the current ETag (from Stat): %v", err)
	case etag1 == "":
		return "", errors.New("If-Match with the current ETag returned an empty ETag")
	case etag1 == info0.ETag:
		return "", fmt.Errorf("If-Match replaced the object but returned its old ETag %q", etag1)
	}
	if info1, err := c.st.Stat(ctx, key); err != nil {
		return "", fmt.Errorf("stat after If-Match: %v", err)
	} else if info1.ETag != etag1 {
		return "", fmt.Errorf("Stat reports ETag %q, PutIf returned %q", info1.ETag, etag1)
	}
	_, err = c.cond.PutIf(ctx, key, []byte("v2"), info0.ETag)
	switch {
	case err == nil:
		return "", errors.New("If-Match with a stale ETag succeeded: the server ignores If-Match")
	case !errors.Is(err, remote.ErrPrecondition):
		return "", fmt.Errorf("If-Match with a stale ETag: got %v, want a precondition failure", err)
	}
	if err := c.wantBytes(ctx, key, []byte("v1"), "after the refused stale If-Match"); err != nil {
		return "", err
	}
	missing := c.key("replace-missing")
	_, err = c.cond.PutIf(ctx, missing, []byte("x"), etag1)
	switch {
	case err == nil:
		return "", errors.New("If-Match on a missing key succeeded")
	case !errors.Is(err, remote.ErrPrecondition):
		return "", fmt.Errorf("If-Match on a missing key: got %v, want a precondition failure", err)
	}
	if _, err := c.st.Stat(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("stat after a refused If-Match on a missing key: got %v, want not found", err)
	}
	return "If-Match succeeds with the current ETag, fails with a stale one and on a missing key", nil
}

// raceResult is what the racers of one round got.
type raceResult struct {
	data    [][]byte // racer i's bytes
	etags   []string // the ETag racer i's PutIf returned
	winners []int
	err     error // the first error other than a precondition failure
}

// racerBytes is the size of each racer's object. A server that checks the
// condition before it has received the body and writes after (versitygw
// before #2288, SeaweedFS before #8801) is non-atomic for as long as the body
// takes to arrive. Against such a server (versitygw v1.8.0 with the publish
// lock and the re-check under it removed, on loopback) a single round found
// the bug in 4 of 20 runs with 30-byte bodies and in 7 of 20 with 16 KiB
// ones. 32 racers × 16 KiB is half a MiB per round.
const racerBytes = 16 << 10

// race starts c.opts.Racers PutIf calls of key with ifMatch at once, each
// writing its own bytes: distinct data keeps a retrying decorator, which
// claims a win when the key holds exactly what it wrote, honest.
func (c *checker) race(ctx context.Context, key, ifMatch string) raceResult {
	n := c.opts.Racers
	r := raceResult{data: make([][]byte, n), etags: make([]string, n)}
	errs := make([]error, n)
	for i := range n {
		r.data[i] = append(fmt.Appendf(nil, "%s: racer %d\n", key, i), randomBytes(racerBytes)...)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			r.etags[i], errs[i] = c.cond.PutIf(ctx, key, r.data[i], ifMatch)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		switch {
		case err == nil:
			r.winners = append(r.winners, i)
		case r.err == nil && !errors.Is(err, remote.ErrPrecondition):
			r.err = fmt.Errorf("racer %d: %v", i, err)
		}
	}
	return r
}

// judge checks one round: exactly one winner, whose bytes and ETag the key
// now has.
func (c *checker) judge(ctx context.Context, key string, r raceResult) error {
	if r.err != nil {
		return r.err
	}
	if len(r.winners) != 1 {
		return fmt.Errorf("%d of %d racers won, want exactly 1", len(r.winners), c.opts.Racers)
	}
	w := r.winners[0]
	got, err := c.get(ctx, key, 0, -1)
	if err != nil {
		return fmt.Errorf("get after the race: %v", err)
	}
	if !bytes.Equal(got, r.data[w]) {
		if j := slices.IndexFunc(r.data, func(d []byte) bool { return bytes.Equal(d, got) }); j >= 0 {
			return fmt.Errorf("racer %d won, but the key holds racer %d's bytes", w, j)
		}
		return fmt.Errorf("racer %d won, but the key holds %d bytes that no racer wrote", w, len(got))
	}
	info, err := c.st.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("stat after the race: %v", err)
	}
	if info.ETag != r.etags[w] {
		return fmt.Errorf("after the race Stat reports ETag %q, the winner's PutIf returned %q", info.ETag, r.etags[w])
	}
	return nil
}

// rounds runs one race per round on its own key and sums them up: the
// first failure, and in how many rounds one occurred.
func (c *checker) rounds(ctx context.Context, name string, setup func(key string) (ifMatch string, err error)) error {
	var first error
	failed := 0
	for round := range c.opts.Rounds {
		key := c.key(fmt.Sprintf("%s/%d", name, round))
		ifMatch, err := setup(key)
		if err == nil {
			err = c.judge(ctx, key, c.race(ctx, key, ifMatch))
		}
		if err != nil {
			failed++
			if first == nil {
				first = fmt.Errorf("round %d: %w", round+1, err)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if first != nil {
		return fmt.Errorf("%w (%d of %d rounds failed)", first, failed, c.opts.Rounds)
	}
	return nil
}

// warmUp makes as many requests at once as there will be racers, so that
// on a network store each racer has an open connection and the racing
// requests leave together rather than staggered by connection set-up.
func (c *checker) warmUp(ctx context.Context) {
	var wg sync.WaitGroup
	for range c.opts.Racers {
		wg.Go(func() { _, _ = c.st.Stat(ctx, c.startKey) })
	}
	wg.Wait()
}

// checkCreateRace: of racers creating one new key, exactly one wins.
func (c *checker) checkCreateRace(ctx context.Context) (string, error) {
	if err := c.needConditional(); err != nil {
		return "", err
	}
	c.warmUp(ctx)
	err := c.rounds(ctx, "race-create", func(string) (string, error) { return "", nil })
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d rounds of %d concurrent creates of one key: one winner each, and the key holds its bytes",
		c.opts.Rounds, c.opts.Racers), nil
}

// checkMatchRace: of racers replacing one ETag, exactly one wins.
func (c *checker) checkMatchRace(ctx context.Context) (string, error) {
	if err := c.needConditional(); err != nil {
		return "", err
	}
	if c.matchErr != nil {
		return "", unsupported{fmt.Sprintf("skipped: the store has no If-Match writes (see %s)", CheckReplace)}
	}
	err := c.rounds(ctx, "race-match", func(key string) (string, error) {
		etag, err := c.cond.PutIf(ctx, key, []byte("start"), "")
		if err != nil {
			return "", fmt.Errorf("create before the race: %v", err)
		}
		return etag, nil
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d rounds of %d concurrent If-Match replaces of one ETag: one winner each, and the key holds its bytes",
		c.opts.Rounds, c.opts.Racers), nil
}

// checkReadAfterWrite: Get, Stat and List see a new version at once.
func (c *checker) checkReadAfterWrite(ctx context.Context) (string, error) {
	key := c.key("read/obj")
	var prev remote.Info
	for round := range c.opts.Rounds + 1 {
		when := "after the first put"
		if round > 0 {
			when = fmt.Sprintf("after overwrite %d", round)
		}
		// A new length each time, so a stale Stat shows too.
		data := randomBytes(1000 + 37*round)
		if err := c.put(ctx, key, data); err != nil {
			return "", err
		}
		if err := c.wantBytes(ctx, key, data, when); err != nil {
			return "", err
		}
		info, err := c.st.Stat(ctx, key)
		switch {
		case err != nil:
			return "", fmt.Errorf("stat %s: %v", when, err)
		case info.Size != int64(len(data)):
			return "", fmt.Errorf("Stat %s: size %d, want %d", when, info.Size, len(data))
		case info.ETag == "":
			return "", fmt.Errorf("Stat %s: empty ETag", when)
		case round > 0 && info.ETag == prev.ETag:
			return "", fmt.Errorf("Stat %s: ETag %q did not change", when, info.ETag)
		}
		listed, err := c.list(ctx, key)
		if err != nil {
			return "", fmt.Errorf("list %s: %v", when, err)
		}
		i := slices.IndexFunc(listed, func(l remote.Info) bool { return l.Key == key })
		switch {
		case i < 0:
			return "", fmt.Errorf("List %s does not show the key", when)
		case listed[i].Size != info.Size || listed[i].ETag != info.ETag:
			return "", fmt.Errorf("List %s: size %d, ETag %q; Stat: size %d, ETag %q",
				when, listed[i].Size, listed[i].ETag, info.Size, info.ETag)
		}
		prev = info
	}
	return fmt.Sprintf("Get, Stat and List see a put and each of %d overwrites at once, and agree on size and ETag", c.opts.Rounds), nil
}

// checkListAfterWrite: List and ListDirs show a new key at once.
func (c *checker) checkListAfterWrite(ctx context.Context) (string, error) {
	base := c.prefix + "list/"
	var wantKeys, wantDirs []string
	for round := range c.opts.Rounds {
		dir := fmt.Sprintf("d%d", round)
		key := c.key("list/" + dir + "/obj")
		if err := c.put(ctx, key, randomBytes(100)); err != nil {
			return "", err
		}
		wantKeys = append(wantKeys, key)
		wantDirs = append(wantDirs, dir)
		slices.Sort(wantKeys)
		slices.Sort(wantDirs)

		listed, err := c.list(ctx, base)
		if err != nil {
			return "", fmt.Errorf("list after new key %d: %v", round+1, err)
		}
		var got []string
		for _, info := range listed {
			got = append(got, info.Key)
		}
		if !slices.Equal(got, wantKeys) {
			return "", fmt.Errorf("List after new key %d: got %s, want %s", round+1, names(got, c.prefix), names(wantKeys, c.prefix))
		}
		dirs, err := c.st.ListDirs(ctx, base)
		if err != nil {
			return "", fmt.Errorf("list dirs after new key %d: %v", round+1, err)
		}
		if !slices.Equal(dirs, wantDirs) {
			return "", fmt.Errorf("ListDirs after new key %d: got %s, want %s", round+1, names(dirs, ""), names(wantDirs, ""))
		}
	}
	top, err := c.st.ListDirs(ctx, c.prefix)
	if err != nil {
		return "", fmt.Errorf("list dirs: %v", err)
	}
	if !slices.Contains(top, "list") {
		return "", fmt.Errorf("ListDirs of the scratch prefix: got %s, want it to include list", names(top, ""))
	}
	return fmt.Sprintf("each of %d new keys shows in List at once, and its directory in ListDirs", c.opts.Rounds), nil
}

// checkDelete: a deleted key is gone from every read at once; deleting a
// missing key is not an error.
func (c *checker) checkDelete(ctx context.Context) (string, error) {
	key := c.key("delete/obj")
	if err := c.put(ctx, key, []byte("to be deleted")); err != nil {
		return "", err
	}
	if _, err := c.st.Stat(ctx, key); err != nil {
		return "", fmt.Errorf("stat before delete: %v", err)
	}
	if err := c.st.Delete(ctx, key); err != nil {
		return "", fmt.Errorf("delete: %v", err)
	}
	if b, err := c.get(ctx, key, 0, -1); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			return "", fmt.Errorf("Get after Delete returned %d bytes, want not found", len(b))
		}
		return "", fmt.Errorf("Get after Delete: got %v, want not found", err)
	}
	if _, err := c.st.Stat(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			return "", errors.New("Stat after Delete found the object, want not found")
		}
		return "", fmt.Errorf("Stat after Delete: got %v, want not found", err)
	}
	listed, err := c.list(ctx, c.prefix+"delete/")
	if err != nil {
		return "", fmt.Errorf("list after delete: %v", err)
	}
	if len(listed) > 0 {
		return "", errors.New("List after Delete still shows the key")
	}
	dirs, err := c.st.ListDirs(ctx, c.prefix)
	if err != nil {
		return "", fmt.Errorf("list dirs after delete: %v", err)
	}
	if slices.Contains(dirs, "delete") {
		return "", errors.New("ListDirs after Delete still shows the emptied directory")
	}
	if err := c.st.Delete(ctx, key); err != nil {
		return "", fmt.Errorf("second delete of the key: %v, want no error", err)
	}
	if err := c.st.Delete(ctx, c.key("delete/never-written")); err != nil {
		return "", fmt.Errorf("delete of a key never written: %v, want no error", err)
	}
	return "after Delete the key is gone from Get, Stat, List and ListDirs; deleting a missing key is not an error", nil
}

// checkRange: ranged Gets return exactly the bytes asked for.
func (c *checker) checkRange(ctx context.Context) (string, error) {
	const size = 3*4096 + 17
	key := c.key("range")
	data := randomBytes(size)
	if err := c.put(ctx, key, data); err != nil {
		return "", err
	}
	for _, tt := range []struct {
		offset, length int64
		from, to       int64 // the bytes wanted; from < 0: ErrInvalidRange wanted
	}{
		{0, -1, 0, size},
		{0, 1, 0, 1},
		{1000, 4096, 1000, 5096},
		{size - 100, 100, size - 100, size},  // exactly to the end
		{size - 100, 1000, size - 100, size}, // past the end: clipped
		{size - 100, -1, size - 100, size},
		{size, -1, size, size}, // at the end: empty
		{size, 10, size, size},
		{500, 0, 500, 500},
		{size + 1, -1, -1, 0}, // beyond the end
		{size + 1000, 10, -1, 0},
	} {
		what := fmt.Sprintf("Get(offset %d, length %d) of a %d-byte object", tt.offset, tt.length, size)
		got, err := c.get(ctx, key, tt.offset, tt.length)
		if tt.from < 0 {
			switch {
			case err == nil:
				return "", fmt.Errorf("%s: got %d bytes, want an invalid-range error", what, len(got))
			case !errors.Is(err, remote.ErrInvalidRange):
				return "", fmt.Errorf("%s: got %v, want an invalid-range error", what, err)
			}
			continue
		}
		want := data[tt.from:tt.to]
		switch {
		case err != nil:
			return "", fmt.Errorf("%s: %v", what, err)
		case len(got) != len(want):
			return "", fmt.Errorf("%s: got %d bytes, want %d", what, len(got), len(want))
		case !bytes.Equal(got, want):
			return "", fmt.Errorf("%s: got the wrong bytes", what)
		}
	}
	return "exact ranges, a range clipped at the end, an empty read at the end, an invalid-range error past it", nil
}

// clockSlack is the offset from this host's clock that the report calls
// "within": S3's Last-Modified has whole seconds.
const clockSlack = 2 * time.Second

// checkClock: objects carry the store's modification time.
func (c *checker) checkClock(ctx context.Context) (string, error) {
	info, err := c.st.Stat(ctx, c.startKey)
	if err != nil {
		return "", fmt.Errorf("stat: %v", err)
	}
	if info.ModTime.IsZero() {
		return "", errors.New("Stat gives no modification time; purge uses it as the store's clock")
	}
	skew := info.ModTime.Sub(c.startTime)
	const what = "objects carry the store's modification time"
	switch {
	case skew > clockSlack:
		return fmt.Sprintf("%s; the store's clock is %v ahead of this host's (harmless: purge uses the store's clock)", what, skew.Round(time.Second)), nil
	case skew < -clockSlack:
		return fmt.Sprintf("%s; the store's clock is %v behind this host's (harmless: purge uses the store's clock)", what, (-skew).Round(time.Second)), nil
	}
	return fmt.Sprintf("%s, within %v of this host's clock", what, clockSlack), nil
}

func (c *checker) put(ctx context.Context, key string, data []byte) error {
	return c.st.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
}

func (c *checker) get(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	rc, err := c.st.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (c *checker) list(ctx context.Context, prefix string) ([]remote.Info, error) {
	var infos []remote.Info
	err := c.st.List(ctx, prefix, func(info remote.Info) error {
		infos = append(infos, info)
		return nil
	})
	return infos, err
}

// wantBytes checks that key holds exactly want.
func (c *checker) wantBytes(ctx context.Context, key string, want []byte, when string) error {
	got, err := c.get(ctx, key, 0, -1)
	switch {
	case err != nil:
		return fmt.Errorf("get %s: %v", when, err)
	case bytes.Equal(got, want):
		return nil
	case printable(got) && printable(want):
		return fmt.Errorf("Get %s: got %q, want %q", when, got, want)
	case len(got) == len(want):
		return fmt.Errorf("Get %s: got other bytes of the same length (%d)", when, len(got))
	}
	return fmt.Errorf("Get %s: got %d bytes, want %d", when, len(got), len(want))
}

// printable reports whether b is short text, shown as it is in errors.
func printable(b []byte) bool {
	return len(b) <= 64 && !bytes.ContainsFunc(b, func(r rune) bool { return r < ' ' || r > '~' })
}

// names shows keys without the scratch prefix.
func names(keys []string, prefix string) string {
	short := make([]string, len(keys))
	for i, k := range keys {
		short[i] = strings.TrimPrefix(k, prefix)
	}
	return "[" + strings.Join(short, " ") + "]"
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
