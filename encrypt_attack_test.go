package cassback

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/crypt/keyslot"
	"github.com/cassback/cassback/remote/local"
)

// Attacks on encrypted stores (docs/design.md §1.6). Each test fails while
// the break it names is open.

// TestEncAttackChunkIDsUnkeyed: §1.6 says an encrypted store names its
// chunks by keyed BLAKE3 under a key of the master, so that IDs "reveal
// nothing about content: not in the bucket nor in the nodes' caches (where
// index files are kept in plaintext)". A file smaller than the chunker's
// minimum is one chunk: if its ID is the plain BLAKE3 of its bytes, anyone
// who reads a node's cache (or an index file, once opened) can confirm a
// guessed file by hashing it.
func TestEncAttackChunkIDsUnkeyed(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 3, TotalBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r := openEncrypted(t, filepath.Join(t.TempDir(), "store"), &memKeys{})
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1"}); err != nil {
		t.Fatal(err)
	}
	idx, err := r.loadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cached [][]byte
	if err := filepath.WalkDir(r.CacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		cached = append(cached, b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range notSystem(node.LiveFiles) {
		b, err := os.ReadFile(filepath.Join(data, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 || len(b) >= int(r.Config.Chunker.MinSize) {
			continue
		}
		checked++
		id := chunk.Sum(b)
		if idx.Has(id) {
			t.Errorf("the encrypted store's index names %s's only chunk by the plain BLAKE3 of its bytes (%s)", f, id)
		}
		for _, c := range cached {
			if bytes.Contains(c, id[:]) || bytes.Contains(c, []byte(id.String())) {
				t.Errorf("a node's cache holds the plain BLAKE3 of %s", f)
				break
			}
		}
		if t.Failed() {
			break
		}
	}
	if checked == 0 {
		t.Fatal("no file below the chunker's minimum size to check")
	}
}

// TestEncAttackEveryObjectSealed: after backups of two hosts, a purge that
// condemns and repacks, a second purge, repair-index and validate, every
// object in the bucket but the config and the key slots opens under the
// store's keys: nothing the engine wrote went to the bucket unsealed.
func TestEncAttackEveryObjectSealed(t *testing.T) {
	ctx := t.Context()
	storeDir := filepath.Join(t.TempDir(), "store")
	keys := &memKeys{}
	r := openEncrypted(t, storeDir, keys)
	for i, host := range []string{"node1", "node2"} {
		data := filepath.Join(t.TempDir(), "data")
		if _, err := nodegen.Generate(data, nodegen.Config{Seed: uint64(20 + i), TotalBytes: 4 << 20}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: host}); err != nil {
			t.Fatal(err)
		}
	}
	for _, holder := range []string{"p1", "p2"} {
		if _, err := r.Purge(ctx, PurgeOptions{Host: "node1", Before: time.Now().Add(time.Minute), PurgeLatest: true, Holder: holder, ScanPacks: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.RepairIndex(ctx, "repair", false); err != nil {
		t.Fatal(err)
	}
	if rep, err := r.Validate(ctx, ValidateOptions{Checksum: true}); err != nil || !rep.OK() {
		t.Fatalf("validate: %v %v", err, rep.Problems)
	}
	n := 0
	err := filepath.WalkDir(storeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(storeDir, p)
		key := filepath.ToSlash(rel)
		if key == "config" || strings.HasPrefix(key, "keys/") || strings.HasPrefix(key, ".") {
			return nil // unsealed by design, or the local store's own (.locks)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if _, err := r.keys.Open(key, b); err != nil {
			t.Errorf("object %s (%d bytes) is not sealed: %v (starts %q)", key, len(b), err, b[:min(len(b), 40)])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d objects opened", n)
}

// TestEncAttackOrphanSlotLocksOut: two nodes that create one store at once
// with the same key file each write a key slot of their own master before
// the config; one config wins (index.Init), so the loser's slot wraps a
// master no config checks. It opens with the fleet's key file all the
// same, and Unlock takes the first slot that opens: when the orphan sorts
// first, every open of the store fails with "the key is not this store's"
// for good, though a slot holding the right master is there. (A bucket
// writer cannot forge such a slot, but the race makes one.) Open must try
// the other slots when a master fails the config's check.
func TestEncAttackOrphanSlotLocksOut(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "store")
	kf, err := keyslot.KeyFile([]byte("the fleet's key file: 0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	r := openEncrypted(t, dir, KeySlots(kf))
	slots, err := r.KeySlotList(ctx)
	if err != nil || len(slots) != 1 {
		t.Fatalf("slots %v, %v", slots, err)
	}
	real := slots[0].ID
	// The losing node's slot: the same key file, another master. Made
	// until its random ID sorts before the winner's, as it does half the
	// time.
	loser := make([]byte, 32)
	rand.Read(loser)
	for range 64 {
		s, err := keyslot.Add(ctx, r.raw, r.Config.ID, loser, kf)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID < real {
			break
		}
		if err := keyslot.Remove(ctx, r.raw, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, st, Options{Keys: KeySlots(kf)}); err != nil {
		t.Errorf("open with the fleet's key file, its slot present: %v", err)
	}
}
