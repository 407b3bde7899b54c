package cassback

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/nodegen"
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
