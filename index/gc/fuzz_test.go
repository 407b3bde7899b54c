package gc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/remotetest"
)

// fuzzStore returns a memory store whose clock is t0 until advanced.
func fuzzStore(t0 time.Time) (*remotetest.Memory, func(time.Duration)) {
	st := remotetest.NewMemory()
	now := t0
	st.SetClock(func() time.Time { return now })
	return st, func(d time.Duration) { now = now.Add(d) }
}

func fuzzPut(t *testing.T, st *remotetest.Memory, key string, b []byte) {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

var fuzzT0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// FuzzDecodeSession feeds hostile session objects to decodeSession and to
// ListSessions, which purge and validate run over every session: neither
// may panic, a session that decodes has the current format, and one that
// does not is listed as unparsed rather than failing the listing.
func FuzzDecodeSession(f *testing.F) {
	name := "2026_11_26T12_00_00_000000-ks-h"
	good, _ := json.Marshal(sessionDoc{Format: sessionFormat, Host: "h", ID: "0123", Kind: KindBackup, State: Live,
		Started: fuzzT0, Acked: []string{"s1"}, Committed: []string{name}, Hashes: map[string]manifest.Hash{name: manifest.HashOf(nil)}, Seq: 3})
	f.Add(good)
	noHash, _ := json.Marshal(sessionDoc{Format: sessionFormat, Host: "h", ID: "0123", Kind: KindBackup, State: Live, Committed: []string{name}})
	f.Add(noHash)
	f.Add([]byte(`{"format":2,"committed":["x"],"hashes":{"x":"0123456789ABCDEF01234567"}}`))
	f.Add([]byte(`{"format":1,"state":"revoked","seq":-1}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeSession(b)
		if err == nil && d.Format != sessionFormat {
			t.Fatalf("decodeSession accepted format %d", d.Format)
		}
		for _, n := range d.Committed {
			if _, ok := d.Hashes[n]; err == nil && !ok {
				t.Fatalf("decodeSession accepted committed backup %q without its manifest's hash", n)
			}
		}
		st, advance := fuzzStore(fuzzT0)
		fuzzPut(t, st, SessionKey("h", "0123"), b)
		advance(time.Hour)
		infos, lerr := ListSessions(context.Background(), st, fuzzT0.Add(time.Hour), 30*time.Minute)
		if lerr != nil {
			t.Fatalf("ListSessions: %v", lerr)
		}
		if len(infos) != 1 {
			t.Fatalf("ListSessions: %d sessions, want 1", len(infos))
		}
		if si := infos[0]; si.Unparsed != (err != nil) || !si.Stale || si.Host != "h" || si.ID != "0123" {
			t.Fatalf("ListSessions: %+v for a session that decodes with error %v", si, err)
		}
	})
}

// FuzzCondemnedSet feeds a hostile condemned set (header, one shard, doom
// list) to ListCondemned, which every writer and sweep reads: it must
// never panic nor fail, and a set it returns must be consistent with its
// header (the packs its shards list, its own ID); a damaged set is left out.
func FuzzCondemnedSet(f *testing.F) {
	const id = "0123456789abcdef"
	p := chunk.Sum([]byte("pack"))
	hdr, _ := json.Marshal(setHeader{Format: condemnedFormat, ID: id, Shards: 1, Packs: 1, Bytes: 100})
	shard, _ := json.Marshal(setShard{Format: condemnedFormat, Set: id, Shard: 0, Packs: []chunk.ID{p}})
	doom, _ := json.Marshal(setDoom{Format: condemnedFormat, Set: id, Packs: []chunk.ID{p}})
	f.Add(hdr, shard, doom, true)
	f.Add(hdr, shard, doom, false)
	f.Add([]byte(`{"format":1,"id":"0123456789abcdef","shards":1000000000,"packs":0}`), shard, doom, false)
	f.Add([]byte(`{"format":1,"id":"0123456789abcdef","shards":-1,"packs":-1}`), []byte(`{}`), []byte(`[]`), true)
	f.Fuzz(func(t *testing.T, hdr, shard, doom []byte, withDoom bool) {
		st, _ := fuzzStore(fuzzT0)
		fuzzPut(t, st, setPrefix(id)+headerName, hdr)
		fuzzPut(t, st, setPrefix(id)+"0", shard)
		if withDoom {
			fuzzPut(t, st, setPrefix(id)+doomName, doom)
		}
		sets, present, err := ListCondemned(context.Background(), st, nil)
		if err != nil {
			t.Fatalf("ListCondemned: %v", err)
		}
		if len(sets) > 1 || len(present) != len(sets) {
			t.Fatalf("ListCondemned: %d sets, %d present; want at most the one, present iff returned", len(sets), len(present))
		}
		for _, s := range sets {
			var h setHeader
			_ = json.Unmarshal(hdr, &h)
			if s.ID != id || len(s.Packs) != h.Packs || s.shards != h.Shards || s.Doomed != withDoom {
				t.Fatalf("set %+v from header %s", s, hdr)
			}
		}
		if _, err := damagedSets(context.Background(), st); err != nil {
			t.Fatalf("damagedSets: %v", err)
		}
	})
}

// FuzzLease feeds a hostile purge lease to AcquireLease, fresh or past the
// lease: it must never panic; a fresh lease held by another purge is
// refused with ErrLeaseHeld, and a taken lease decodes as ours.
func FuzzLease(f *testing.F) {
	held, _ := json.Marshal(leaseDoc{Format: leaseFormat, Holder: "other", State: leaseHeld, Since: fuzzT0, Seq: 7})
	free, _ := json.Marshal(leaseDoc{Format: leaseFormat, Holder: "other", State: leaseFree, Since: fuzzT0, Seq: 8})
	f.Add(held, false)
	f.Add(held, true)
	f.Add(free, false)
	f.Add([]byte(`{"seq":9223372036854775807}`), true)
	f.Add([]byte(`garbage`), true)
	f.Fuzz(func(t *testing.T, b []byte, stale bool) {
		ctx := context.Background()
		st, advance := fuzzStore(fuzzT0)
		fuzzPut(t, st, leaseKey, b)
		if stale {
			advance(time.Hour)
		}
		l, err := AcquireLease(ctx, st, "me", Options{}, false)
		if err != nil {
			return
		}
		var cur leaseDoc
		if jerr := json.Unmarshal(b, &cur); jerr == nil && !stale && cur.State != leaseFree {
			t.Fatalf("AcquireLease took a fresh lease held by %q (%s)", cur.Holder, b)
		}
		got, _, rerr := readBack(ctx, st, leaseKey)
		if rerr != nil {
			t.Fatal(rerr)
		}
		var mine leaseDoc
		if err := json.Unmarshal(got, &mine); err != nil || mine.Holder != "me" || mine.State != leaseHeld {
			t.Fatalf("lease after taking it: %s, %v", got, err)
		}
		if err := l.Release(ctx); err != nil && !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("Release: %v", err)
		}
	})
}

// TestCondemnedSetUndecodable: a condemned set whose shard or doom list
// does not decode — not JSON, or a pack that is not a chunk ID — is left
// out as damaged, as the doc of ListCondemned promises, and not an error
// that stops every writer and sweep (found by FuzzCondemnedSet).
func TestCondemnedSetUndecodable(t *testing.T) {
	const id = "0123456789abcdef"
	p := chunk.Sum([]byte("pack"))
	hdr, _ := json.Marshal(setHeader{Format: condemnedFormat, ID: id, Shards: 1, Packs: 1, Bytes: 100})
	shard, _ := json.Marshal(setShard{Format: condemnedFormat, Set: id, Shard: 0, Packs: []chunk.ID{p}})
	badID := []byte(`{"format":1,"set":"0123456789abcdef","shard":0,"packs":["zz"]}`)
	for _, tt := range []struct {
		name        string
		shard, doom []byte
	}{
		{"shard with a bad chunk ID", badID, nil},
		{"doom list not JSON", shard, []byte("garbage")},
		{"doom list with a bad chunk ID", shard, []byte(`{"format":1,"set":"0123456789abcdef","packs":[""]}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := fuzzStore(fuzzT0)
			fuzzPut(t, st, setPrefix(id)+headerName, hdr)
			fuzzPut(t, st, setPrefix(id)+"0", tt.shard)
			if tt.doom != nil {
				fuzzPut(t, st, setPrefix(id)+doomName, tt.doom)
			}
			sets, present, err := ListCondemned(t.Context(), st, nil)
			if err != nil || len(sets) != 0 || len(present) != 0 {
				t.Errorf("ListCondemned: %d sets, %d present, %v; want none, no error", len(sets), len(present), err)
			}
			keys, err := damagedSets(t.Context(), st)
			if err != nil || len(keys) == 0 {
				t.Errorf("damagedSets: %q, %v; want the set's keys", keys, err)
			}
		})
	}
}
