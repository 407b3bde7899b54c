package cassback

// Attacks on purges that do not list every pack (index/gc/scan.go,
// ledger.assume and ledger.confirm; docs/design.md §4.3 step 2 "Scans",
// §4.4). Every test is named TestScanAttack…; those whose names end in
// …Holds document an attack the code withstood when it was written; the
// others carry a "BREAK:" comment and failed on the code they were written
// against (3d78cb3).

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/remote"
)

// A saDamage says what happens to the pack a repack writes.
type saDamage int

const (
	saTruncate saDamage = iota // cut to half its size
	saGarbage                  // replaced by as many random-looking bytes
	saDelete                   // lost
)

func (d saDamage) String() string {
	return [...]string{"truncated", "garbage", "deleted"}[d]
}

// saDamagesRepacked is a store that damages the pack a repack writes: the
// next write of an index file once armed (the repack's, which names the
// pack) first damages the last pack written, as a failing bucket or an
// operator's mistake would, outside the protocol.
type saDamagesRepacked struct {
	remote.Store
	how      saDamage
	mu       sync.Mutex
	armed    bool
	lastPack string
	damaged  string
}

func (s *saDamagesRepacked) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	s.mu.Lock()
	if s.armed && strings.HasPrefix(key, "index/") && s.lastPack != "" {
		s.armed, s.damaged = false, s.lastPack
		if err := saDamageObject(ctx, s.Store, s.lastPack, s.how); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	if strings.HasPrefix(key, "packs/") {
		s.lastPack = key
	}
	s.mu.Unlock()
	return s.Store.Put(ctx, key, data, size)
}

func (s *saDamagesRepacked) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	return s.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
}

// saDamageObject damages the object at key as how says.
func saDamageObject(ctx context.Context, st remote.Store, key string, how saDamage) error {
	if how == saDelete {
		return st.Delete(ctx, key)
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	switch how {
	case saTruncate:
		b = b[:len(b)/2]
	case saGarbage:
		for i := range b {
			b[i] = byte(i*7 + 13)
		}
	}
	return st.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}

// saRepackDamaged runs hole 10's schedule with the repacked pack damaged
// as how says: a backup, a first purge (which lists every pack, none has),
// a second backup of one SSTable a keyspace, then a purge of the first
// backup, which repacks the sparse packs (the store damages the new pack
// as its index file is written) and, with no grace, sweeps them at once.
// scan says whether that purge lists every pack. It returns the loss, if
// any.
func saRepackDamaged(t *testing.T, how saDamage, scan bool) error {
	ctx := t.Context()
	st := &saDamagesRepacked{Store: localStore(t), how: how}
	r := repoOn(t, st, gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 0.5})
	data := smallNode(t, 61)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Purge(ctx, PurgeOptions{Host: "h", Before: time.Now().Add(-time.Hour), Holder: "p"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	cut := time.Now()
	time.Sleep(10 * time.Millisecond)
	keepOneSSTable(t, data)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.armed = true
	st.mu.Unlock()
	res, err := r.Purge(ctx, PurgeOptions{Host: "h", Before: cut, Holder: "p", ScanPacks: scan})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Scanned != scan {
		t.Fatalf("the purge listed the packs: %v, want %v (%s)", res.Plan.Scanned, scan, res.Plan.ScanWhy)
	}
	if res.GC.Repacked == 0 || st.damaged == "" {
		t.Fatalf("no repack, or no pack damaged: %+v; removed %v kept %v", res.GC, res.Manifests, res.Kept)
	}
	t.Logf("%s %s; purge: %+v", how, st.damaged, res.GC)
	return committedWhole(t, st)
}

// BREAK (3d78cb3): a sweep that did not list the packs confirms the pack
// it keeps instead of a deleted one with a HEAD, but only that the key
// exists: a repacked pack truncated in the store (a failed multipart
// upload completed short, a bucket tool, a disk) passes, and the sweep
// deletes the sparse pack, the last whole copy of the chunks. A writer
// already treats a pack whose stored size is not its indexed size as gone
// (index.Writer.present); the HEAD returns the size. A sweep that listed
// the packs lost them the same way: the listing shows the size, and the
// keepers ignored it.
func TestScanAttackTruncatedKeeper(t *testing.T) {
	for _, scan := range []bool{false, true} {
		t.Run(map[bool]string{false: "unlisted", true: "listed"}[scan], func(t *testing.T) {
			if err := saRepackDamaged(t, saTruncate, scan); err != nil {
				t.Fatalf("LOSS: %v", err)
			}
		})
	}
}

// BREAK (3d78cb3): as TestScanAttackTruncatedKeeper, with the repacked
// pack replaced in the store by as many bytes of garbage: its size is
// right, so neither a HEAD nor a listing tells, and a sweep, listing or
// not, keeps it as the chunks' copy and deletes the sparse pack.
func TestScanAttackGarbageKeeper(t *testing.T) {
	for _, scan := range []bool{false, true} {
		t.Run(map[bool]string{false: "unlisted", true: "listed"}[scan], func(t *testing.T) {
			if err := saRepackDamaged(t, saGarbage, scan); err != nil {
				t.Fatalf("LOSS: %v", err)
			}
		})
	}
}
