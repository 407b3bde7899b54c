package cassback

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// testNamer is the Namer of an encrypted store with the given master key,
// derived as such a store derives it.
func testNamer(master string) chunk.Namer {
	return chunk.KeyedNamer(chunk.DeriveKey("cassback 2026 chunk-id v1", []byte(master)))
}

// namers are the kinds of store the chunk-naming tests run on.
var namers = []struct {
	name string
	nm   chunk.Namer
}{
	{"plain", chunk.Namer{}},
	{"keyed", testNamer("master one")},
}

// namedRepo opens a store as gcRepo does and names its chunks with nm, as
// opening an encrypted store will.
func namedRepo(t *testing.T, dir string, create bool, nm chunk.Namer) *Repo {
	t.Helper()
	r := gcRepo(t, dir, create)
	r.Config.Chunker.Namer = nm
	return r
}

// packIDs returns the IDs of every chunk the store's packs hold, from
// their headers.
func packIDs(t *testing.T, st remote.Store) map[chunk.ID]bool {
	t.Helper()
	ids := map[chunk.ID]bool{}
	var keys []string
	if err := st.List(t.Context(), "packs/", func(i remote.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		entries, _, err := pack.ReadHeader(t.Context(), st, k)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			ids[e.ID] = true
		}
	}
	return ids
}

// checkPadded checks that every pack of the store is padded to a Padmé
// size (format 3), as an encrypted store's writers pad them, or that none
// is.
func checkPadded(t *testing.T, st remote.Store, want bool) {
	t.Helper()
	n := 0
	if err := st.List(t.Context(), "packs/", func(i remote.Info) error {
		rc, err := st.Get(t.Context(), i.Key, i.Size-8, 8)
		if err != nil {
			return err
		}
		defer rc.Close()
		magic, err := io.ReadAll(rc)
		padded := string(magic) == pack.MagicPadded && pack.Padme(i.Size) == i.Size
		if err != nil || padded != want || (!want && string(magic) != pack.Magic) {
			t.Errorf("pack %s: %d bytes, magic %q; want padded %v", i.Key, i.Size, magic, want)
		}
		n++
		return err
	}); err != nil || n == 0 {
		t.Fatalf("list packs: %v, %d packs", err, n)
	}
}

// checkChunkNames checks that every chunk of every file of the backups
// is named by nm from the source's bytes, and, for a keyed nm, is not
// their plain BLAKE3.
func checkChunkNames(t *testing.T, r *Repo, names []string, src string, nm chunk.Namer) {
	t.Helper()
	n := 0
	for _, name := range names {
		m, err := manifest.Get(t.Context(), r.Store, name, r.Chunks())
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range m.Tables {
			for _, f := range tb.Files {
				b, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(f.Path)))
				if err != nil {
					t.Fatal(err)
				}
				if nm.Sum(b) != f.Sum || nm.Keyed() && chunk.Sum(b) == f.Sum {
					t.Errorf("%s: file sum %s, want the store's (keyed on a keyed store) BLAKE3 of the file", f.Path, f.Sum)
				}
				off := 0
				for _, c := range f.Chunks {
					data := b[off : off+int(c.Len)]
					off += int(c.Len)
					n++
					if got := nm.Sum(data); got != c.ID {
						t.Errorf("%s: chunk at %d: ID %s, want %s (%v)", f.Path, off, c.ID, got, nm)
					}
					if nm.Keyed() && c.ID == chunk.Sum(data) {
						t.Errorf("%s: chunk at %d: ID %s is the plain BLAKE3 of its bytes on a keyed store", f.Path, off, c.ID)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no chunk checked")
	}
}

// TestKeyedChunkIDs: a store whose Namer is keyed names every chunk and
// tree node by keyed BLAKE3, and round-trips a node through backup,
// validate, dedup from a second host, purge and restore. Stores of other
// keys, or plain ones, share no ID with it for the same data.
func TestKeyedChunkIDs(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 31, TotalBytes: 6 << 20, Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]map[chunk.ID]bool{}
	for _, tc := range []struct {
		name string
		nm   chunk.Namer
	}{{"plain", chunk.Namer{}}, {"key one", testNamer("master one")}, {"key two", testNamer("master two")}} {
		r := namedRepo(t, filepath.Join(t.TempDir(), "store"), true, tc.nm)
		s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkChunkNames(t, r, s.Manifests, data, tc.nm)
		ids[tc.name] = packIDs(t, r.Store)
		checkPadded(t, r.Store, tc.nm.Keyed())
	}
	for _, pair := range [][2]string{{"plain", "key one"}, {"plain", "key two"}, {"key one", "key two"}} {
		a, b := ids[pair[0]], ids[pair[1]]
		shared := 0
		for id := range a {
			if b[id] {
				shared++
			}
		}
		// (Their counts may differ by a tree node or two: an inner node
		// ends after a child whose ID ends in zero bits.)
		if shared > 0 || len(a) == 0 || len(b) == 0 {
			t.Errorf("stores %s and %s of the same data: %d and %d chunks, %d IDs shared; want none shared", pair[0], pair[1], len(a), len(b), shared)
		}
	}

	// The keyed store through the engine's other paths.
	nm := testNamer("master one")
	dir := filepath.Join(t.TempDir(), "store")
	r := namedRepo(t, dir, true, nm)
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1", Now: func() time.Time { return t1 }}); err != nil {
		t.Fatal(err)
	}
	// A second node of the same store and key uploads no chunk.
	s2, err := namedRepo(t, dir, false, nm).Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n2", Now: func() time.Time { return t1 }})
	if err != nil || s2.BytesNew != 0 || s2.ChunksNew != 0 {
		t.Errorf("second host: %v, %d new bytes in %d chunks; want none", err, s2.BytesNew, s2.ChunksNew)
	}
	// New data, and a purge of the first backup of n1: the collector reads
	// the trees (keyed nodes) to keep what the later backups reference.
	if _, err := node.Flush("ks", "t", 512<<10); err != nil {
		t.Fatal(err)
	}
	var gens []string
	for _, s := range node.Keyspace("ks") {
		gens = append(gens, s.Gen)
	}
	if _, err := node.Compact("ks", "t", gens); err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(48 * time.Hour)
	s3, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1", Now: func() time.Time { return t2 }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Purge(ctx, PurgeOptions{Host: "n1", Before: t2.Add(-time.Hour), Holder: "test"})
	if err != nil || len(res.Manifests) == 0 {
		t.Fatalf("purge: %v, removed %v; want the first backup removed", err, res.Manifests)
	}
	rep, err := r.Validate(ctx, ValidateOptions{Checksum: true})
	if err != nil || !rep.OK() {
		t.Fatalf("validate: %v %+v", err, rep.Problems)
	}
	checkChunkNames(t, r, s3.Manifests, data, nm)
	var last string
	for _, n := range s3.Manifests {
		if strings.Contains(n, "-ks-") {
			last = n
		}
	}
	restoreAndCompare(t, r, last, data, ksFiles(node.LiveFiles, "ks"))
	checkPadded(t, r.Store, true) // the purge's repacks too

	// The same store read with another key, or with none, finds nothing
	// it can trust: its trees' nodes fail their check.
	for _, other := range []chunk.Namer{testNamer("master two"), {}} {
		o := namedRepo(t, dir, false, other)
		if _, err := manifest.Get(ctx, o.Store, last, o.Chunks()); !errors.Is(err, index.ErrCorrupt) {
			t.Errorf("manifest read with namer %v: %v, want %v", other, err, index.ErrCorrupt)
		}
	}
}

// TestRestoreReportsCorruptChunk: a chunk whose stored bytes no longer
// match its ID (plain or keyed) is reported, and its file is not restored.
func TestRestoreReportsCorruptChunk(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 23, TotalBytes: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range namers {
		t.Run(tc.name, func(t *testing.T) {
			r := namedRepo(t, filepath.Join(t.TempDir(), "store"), true, tc.nm)
			s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n"})
			if err != nil {
				t.Fatal(err)
			}
			flip(t, r.Store, largestPack(t, r.Store), 100)
			ms, err := Select(ctx, r.Store, "n", "", nil, time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: t.TempDir(), NoChown: true})
			if !errors.Is(err, ErrRestoreFailed) || len(res.Failed) == 0 {
				t.Fatalf("restore of a damaged chunk: %v, %d files failed; want %v and a failed file", err, len(res.Failed), ErrRestoreFailed)
			}
			for _, f := range res.Failed {
				if !errors.Is(f.Err, index.ErrCorrupt) {
					t.Errorf("%s: %v, want %v", f.Path, f.Err, index.ErrCorrupt)
				}
			}
			if len(res.Restored) == 0 || len(s.Manifests) == 0 {
				t.Errorf("restored %d files: want those of the undamaged chunks", len(res.Restored))
			}
		})
	}
}

// largestPack is the key of the store's largest pack: one of file chunks,
// not the small one of the manifests' trees.
func largestPack(t *testing.T, st remote.Store) string {
	t.Helper()
	var key string
	var largest int64
	if err := st.List(t.Context(), "packs/", func(i remote.Info) error {
		if i.Size > largest {
			key, largest = i.Key, i.Size
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return key
}
