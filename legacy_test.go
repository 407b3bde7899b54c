package cassback

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/manifest/sstable"
)

// sharedTestdata finds ../shared/testdata/cassandra-sstables/legacy-sstables
// above the working directory. A user's clone has no ../shared: the test
// skips there, and fails when CI is set.
func sharedTestdata(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "..", "shared", "testdata", "cassandra-sstables", "legacy-sstables")
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("../shared/testdata/cassandra-sstables not found, and CI is set")
	}
	t.Skip("../shared/testdata/cassandra-sstables not found (a clone without ../shared); skipping real-SSTable test")
	return ""
}

type legacyFile struct {
	rel                            string // path in the live layout
	src                            string
	table, version, gen, component string
}

// placeLegacy copies every real SSTable file into a live node layout:
// data/legacy_tables/<table>-<32 hex id>/<file>.
func placeLegacy(t *testing.T, src, data string) []legacyFile {
	t.Helper()
	var out []legacyFile
	vers, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vers {
		tdirs, err := os.ReadDir(filepath.Join(src, v.Name(), "legacy_tables"))
		if err != nil {
			t.Fatal(err)
		}
		for _, td := range tdirs {
			n++
			id := fmt.Sprintf("%032x", n)
			rel := "legacy_tables/" + td.Name() + "-" + id
			if err := os.MkdirAll(filepath.Join(data, rel), 0o755); err != nil {
				t.Fatal(err)
			}
			files, err := os.ReadDir(filepath.Join(src, v.Name(), "legacy_tables", td.Name()))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				b, err := os.ReadFile(filepath.Join(src, v.Name(), "legacy_tables", td.Name(), f.Name()))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(data, rel, f.Name()), b, 0o644); err != nil {
					t.Fatal(err)
				}
				// Expected parse, from the README's naming rules: legacy
				// "<ks>-<table>-ka-<gen>-<Comp>", modern "<ver>-<gen>-<fmt>-<Comp>".
				parts := strings.Split(f.Name(), "-")
				lf := legacyFile{rel: rel + "/" + f.Name(), table: td.Name(), version: v.Name(), component: parts[len(parts)-1]}
				if v.Name() == "ka" {
					lf.gen = parts[3]
				} else {
					lf.gen = parts[1]
				}
				out = append(out, lf)
			}
		}
	}
	return out
}

// TestRealSSTables backs up and restores every file of every real SSTable
// of Cassandra 2.1 to 5.0 and checks each is parsed into the right
// keyspace, table, version, generation and component.
// TestRealSSTables backs up and restores every real SSTable set, into a
// plaintext store and an encrypted one (validated with --checksum too).
func TestRealSSTables(t *testing.T) {
	src := sharedTestdata(t)
	data := filepath.Join(t.TempDir(), "data")
	files := placeLegacy(t, src, data)
	if len(files) < 700 {
		t.Fatalf("found only %d real SSTable files", len(files))
	}
	// validate --checksum finds the same in both stores: nothing but what
	// the files themselves hold (a Cassandra digest that does not match).
	var found [2][]string
	for i, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[encrypted], func(t *testing.T) {
			var r *Repo
			if dir := filepath.Join(t.TempDir(), "store"); encrypted {
				r = openEncrypted(t, dir, &memKeys{})
			} else {
				r = openLocal(t, dir, true)
			}
			realRoundTrip(t, data, files, r)
			rep, err := r.Validate(t.Context(), ValidateOptions{Checksum: true})
			if err != nil || len(rep.BadIndex) > 0 || len(rep.Damaged) > 0 {
				t.Fatalf("validate --checksum: %v, bad index %v, damaged %v", err, rep.BadIndex, rep.Damaged)
			}
			for _, p := range rep.Problems {
				if !strings.Contains(p.What, "Cassandra digest") {
					t.Errorf("validate --checksum: %s: %s", p.File, p.What)
				}
				found[i] = append(found[i], p.File+": "+p.What)
			}
		})
	}
	if !slices.Equal(found[0], found[1]) {
		t.Errorf("validate --checksum found %v in the plaintext store, %v in the encrypted one", found[0], found[1])
	}
	t.Logf("validate --checksum, in both stores: %v", found[0])
}

func realRoundTrip(t *testing.T, data string, files []legacyFile, r *Repo) {
	ctx := t.Context()
	s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		want = append(want, f.rel)
		p, err := sstable.ParsePath(f.rel)
		if err != nil {
			t.Errorf("%s: %v", f.rel, err)
			continue
		}
		got := fmt.Sprint(p.Keyspace, " ", p.Table, " ", p.Version, " ", p.Gen, " ", p.Component)
		exp := fmt.Sprint("legacy_tables ", f.table, " ", f.version, " ", f.gen, " ", f.component)
		if got != exp {
			t.Errorf("%s parsed as %q, want %q", f.rel, got, exp)
		}
	}
	slices.Sort(want)
	if got := manifestPathsFrom(t, r.Store, r.Chunks(), s.Manifests); !slices.Equal(got, want) {
		t.Fatalf("manifest lists %d files, want all %d real files", len(got), len(want))
	}
	ms, err := Select(ctx, r.Store, "legacy", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, data, dst, want)
}
