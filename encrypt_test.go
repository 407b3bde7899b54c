package cassback

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// memKeys is a Keys that holds the master key in memory, for tests of the
// engine that need no key slot.
type memKeys struct{ master []byte }

func (k *memKeys) Unlock(context.Context, remote.Store, string, func([]byte) bool) ([]byte, error) {
	if k.master == nil {
		return nil, errors.New("no key")
	}
	return bytes.Clone(k.master), nil
}

func (k *memKeys) Create(_ context.Context, _ remote.Store, _ string, master []byte) error {
	k.master = bytes.Clone(master)
	return nil
}

// openEncrypted opens (creating) the local store in dir, encrypted with keys.
func openEncrypted(t *testing.T, dir string, keys Keys) *Repo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.Context(), st, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEncryptedRoundTrip backs up the generated node into an encrypted
// store, a second node's identical files upload no chunk, restore is
// byte-identical, validate --checksum is clean, and no stored object holds
// any 16-byte run of a source file or a keyspace or table name.
func TestEncryptedRoundTrip(t *testing.T) {
	size := int64(48 << 20)
	if testing.Short() || raceOn {
		size = 12 << 20 // CI runs it under -race: its time, not its size, matters there
	}
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 11, TotalBytes: size})
	if err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(t.TempDir(), "store")
	keys := &memKeys{}
	r := openEncrypted(t, storeDir, keys)
	if !r.Config.Encrypted() {
		t.Fatal("a store created with a key is not encrypted")
	}
	s1, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	r2 := openEncrypted(t, storeDir, keys)
	s2, err := r2.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node2"})
	if err != nil {
		t.Fatal(err)
	}
	if s2.BytesNew != 0 || s2.ChunksNew != 0 {
		t.Errorf("second node uploaded %d chunk bytes in %d chunks, want none (dedup across nodes)", s2.BytesNew, s2.ChunksNew)
	}
	t.Logf("first backup: %d files, %d bytes new; second node: %d bytes new", s1.Files, s1.BytesNew, s2.BytesNew)

	want := notSystem(node.LiveFiles)
	for _, host := range []string{"node1", "node2"} {
		dst := filepath.Join(t.TempDir(), "restored")
		ms, err := Select(ctx, r.Store, host, "", nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
			t.Fatal(err)
		}
		sameFiles(t, data, dst, want)
	}
	rep, err := r.Validate(ctx, ValidateOptions{Checksum: true})
	if err != nil || !rep.OK() {
		t.Fatalf("validate --checksum: %v, problems %v, bad index %v", err, rep.Problems, rep.BadIndex)
	}

	// No plaintext: every 8-byte word of the source files at an offset
	// divisible by 8 is indexed, so any 16-byte run an object shares with a
	// source file contains one; candidates are checked at full length.
	var words []uint64
	var sources [][]byte
	names := map[string]bool{}
	for _, f := range want {
		b, err := os.ReadFile(filepath.Join(data, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, b)
		for i := 0; i+8 <= len(b); i += 8 {
			words = append(words, binary.LittleEndian.Uint64(b[i:]))
		}
		parts := strings.Split(f, "/")
		names[parts[0]] = true
		if len(parts) > 1 {
			names[strings.SplitN(parts[1], "-", 2)[0]] = true
		}
	}
	slices.Sort(words)
	words = slices.Compact(words)
	objects := 0
	err = filepath.WalkDir(storeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objects++
		rel, _ := filepath.Rel(storeDir, path)
		for i := 0; i+8 <= len(b); i++ {
			if _, found := slices.BinarySearch(words, binary.LittleEndian.Uint64(b[i:])); !found {
				continue
			}
			for lo := max(0, i-8); lo <= i && lo+16 <= len(b); lo++ {
				for _, s := range sources {
					if bytes.Contains(s, b[lo:lo+16]) {
						t.Fatalf("object %s holds 16 bytes of a source file at offset %d: %x", rel, lo, b[lo:lo+16])
					}
				}
			}
		}
		for n := range names {
			if len(n) >= 4 && bytes.Contains(b, []byte(n)) {
				t.Errorf("object %s holds the name %q", rel, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned %d objects for %d source words and %d names", objects, len(words), len(names))
}

// TestEncryptedStoreNeedsItsKey: an encrypted store opens with its key
// only; a plaintext store refuses a key.
func TestEncryptedStoreNeedsItsKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	keys := &memKeys{}
	openEncrypted(t, dir, keys)
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), st, Options{}); !errors.Is(err, ErrNeedKey) {
		t.Errorf("open without a key: %v, want ErrNeedKey", err)
	}
	wrong := make([]byte, 32)
	rand.Read(wrong)
	if _, err := Open(t.Context(), st, Options{Keys: &memKeys{master: wrong}}); err == nil || !strings.Contains(err.Error(), "not this store's") {
		t.Errorf("open with another master key: %v, want the key refused", err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	openLocal(t, plain, true)
	pst, err := local.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), pst, Options{Keys: keys}); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("open a plaintext store with a key: %v, want ErrNotEncrypted", err)
	}
}
