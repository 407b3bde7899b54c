package fleet

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cassback/cassback"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/survey"
)

// tiny is the store the unit tests generate: 2 hosts × 64 MiB, small
// enough for CI, with every kind of object and some shared chunks.
var tiny = Config{Hosts: 2, BytesPerHost: 64 << 20, Keyspaces: 2, TablesPerKeyspace: 3, SSTablesPerTable: 6,
	BackupsPerHost: 3, Churn: 0.2, SharedFraction: 0.05, Seed: 7}

func openSurvey(t *testing.T, dir string) *survey.Store {
	t.Helper()
	sv, err := survey.Open(filepath.Join(t.TempDir(), "survey.log"), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sv.Close() })
	return sv
}

func keys(t *testing.T, st remote.Store, prefix string) []string {
	t.Helper()
	var ks []string
	if err := st.List(t.Context(), prefix, func(i remote.Info) error {
		ks = append(ks, i.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestGenerate generates the tiny store and reads it back through a
// survey store, as cassback would: the config loads, every index file
// decodes and names packs whose stubs Stat at their size and whose headers
// pack.ReadHeader reads and matches, every manifest decodes and is
// committed, and every chunk a manifest references is indexed, some of
// them by another host.
func TestGenerate(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	stats, err := Generate(dir, tiny)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", stats)
	sv := openSurvey(t, dir)
	if _, err := index.LoadConfig(ctx, sv); err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}

	owner := map[chunk.ID]string{} // chunk -> host whose index names it
	var packs, files int64
	for _, key := range keys(t, sv, "index/") {
		host := strings.Split(key, "/")[1]
		recs, err := index.ReadFile(ctx, sv, key)
		if err != nil {
			t.Fatalf("index file %s: %v", key, err)
		}
		files++
		for _, rec := range recs {
			packs++
			info, err := sv.Stat(ctx, pack.Key(rec.ID))
			if err != nil || info.Size != rec.Size {
				t.Fatalf("pack %s: Stat = %d, %v; want size %d", rec.ID, info.Size, err, rec.Size)
			}
			ents, size, err := pack.ReadHeader(ctx, sv, pack.Key(rec.ID))
			if err != nil || size != rec.Size || !slices.Equal(ents, rec.Entries) {
				t.Fatalf("pack %s: ReadHeader = %d entries, size %d, %v; want the index's %d, %d",
					rec.ID, len(ents), size, err, len(rec.Entries), rec.Size)
			}
			for _, e := range rec.Entries {
				if h, dup := owner[e.ID]; dup {
					t.Fatalf("chunk %s indexed by %s and %s", e.ID, h, host)
				}
				owner[e.ID] = host
			}
		}
	}
	if files != stats.IndexFiles || packs != stats.Packs || int64(len(owner)) != stats.Chunks {
		t.Errorf("store has %d index files, %d packs, %d chunks; Stats say %d, %d, %d",
			files, packs, len(owner), stats.IndexFiles, stats.Packs, stats.Chunks)
	}

	hosts, err := manifest.Hosts(ctx, sv)
	if err != nil || !slices.Equal(hosts, []string{"host000", "host001"}) {
		t.Fatalf("manifest.Hosts = %q, %v; want host000 host001", hosts, err)
	}
	var manifests, refs, foreign int64
	for _, host := range hosts {
		kss, err := manifest.Keyspaces(ctx, sv, host)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"fleet_shared", "ks00", "ks01"}; !slices.Equal(kss, want) {
			t.Errorf("host %s: keyspaces %q, want %q", host, kss, want)
		}
		for _, ks := range kss {
			err := manifest.List(ctx, sv, host, ks, "", func(name string) error {
				m, err := manifest.Get(ctx, sv, name, cassback.ChunksOf(sv))
				if err != nil {
					return err
				}
				manifests++
				for r := range m.Refs() {
					refs++
					h, ok := owner[r.ID]
					if !ok {
						t.Fatalf("manifest %s: chunk %s is in no index file", name, r.ID)
					}
					if h != host {
						foreign++
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// One marker a backup: its three keyspaces fit one key.
	if commits := int64(len(keys(t, sv, "commits/"))); manifests != stats.Manifests || commits != stats.Commits || commits != int64(tiny.Hosts*tiny.BackupsPerHost) || refs != stats.Refs {
		t.Errorf("%d manifests (%d commit markers), %d refs; Stats say %d manifests, %d markers, %d refs; want a marker a backup", manifests, commits, refs, stats.Manifests, stats.Commits, stats.Refs)
	}
	if want := int64(tiny.Hosts * tiny.BackupsPerHost * (tiny.Keyspaces + 1)); manifests != want {
		t.Errorf("%d manifests, want %d", manifests, want)
	}
	if foreign == 0 || stats.SharedChunks == 0 {
		t.Errorf("no host references another's chunks (%d shared chunks)", stats.SharedChunks)
	}
	// Churn makes later backups upload something, but far less than the
	// first: the chunks of all backups are mostly the same.
	if stats.Chunks >= stats.Refs/2 {
		t.Errorf("%d chunks stored for %d references: backups share too little", stats.Chunks, stats.Refs)
	}
	if b := stats.LogicalBytes / int64(tiny.Hosts*tiny.BackupsPerHost); b < tiny.BytesPerHost*9/10 || b > tiny.BytesPerHost*11/10 {
		t.Errorf("a backup holds %d bytes, want about %d", b, tiny.BytesPerHost)
	}
}

// TestGenerateDeterministic checks that the seed alone decides the chunks,
// packs and index files, whatever the number of workers.
func TestGenerateDeterministic(t *testing.T) {
	var names [2][]string
	for i, workers := range []int{1, 3} {
		c := tiny
		c.Workers = workers
		c.BackupsPerHost = 2
		dir := t.TempDir()
		if _, err := Generate(dir, c); err != nil {
			t.Fatal(err)
		}
		names[i] = append(keys(t, openSurvey(t, dir), "index/"), keys(t, openSurvey(t, dir), "manifests/")...)
	}
	if !slices.Equal(names[0], names[1]) {
		t.Errorf("index files and manifests differ between 1 and 3 workers:\n%q\n%q", names[0], names[1])
	}
}

// testPack builds a real pack of zero-filled chunks with pack.Builder.
func testPack(t *testing.T, lens ...int) ([]byte, []pack.Entry, [pack.NonceSize]byte) {
	t.Helper()
	nonce := [pack.NonceSize]byte{1, 2, 3}
	b := pack.NewBuilder(nil)
	b.SetNonce(nonce)
	for i, n := range lens {
		b.Add(chunk.ID{byte(i), 0xaa}, make([]byte, n))
	}
	ents := slices.Clone(b.Entries())
	p, _ := b.Finish()
	return p, ents, nonce
}

// TestPackTail pins packTail to the pack format: the same bytes
// pack.Builder ends a pack with.
func TestPackTail(t *testing.T) {
	for _, lens := range [][]int{{1}, {100, 5000, 3}, {2 << 20, 3 << 20}} {
		p, ents, nonce := testPack(t, lens...)
		tail := packTail(ents, nonce)
		if !bytes.HasSuffix(p, tail) {
			t.Errorf("chunks %v: packTail is not the end of the Builder's pack", lens)
		}
		if n, ok := pack.HeaderLen(tail); !ok || n != int64(len(tail)) {
			t.Errorf("chunks %v: pack.HeaderLen = %d, %v; want %d", lens, n, ok, len(tail))
		}
	}
}

// TestPackStub pins packStub to what survey.Store keeps of a real pack
// whose chunk data is zeros (the data a stub keeps before the header),
// including packs shorter than the stub's slack.
func TestPackStub(t *testing.T) {
	ctx := context.Background()
	meta := t.TempDir()
	sv := openSurvey(t, meta)
	for _, lens := range [][]int{{1}, {100, 5000, 3}, {2 << 20, 3 << 20}} {
		p, ents, nonce := testPack(t, lens...)
		id := chunk.Sum(p)
		if err := sv.Put(ctx, pack.Key(id), bytes.NewReader(p), int64(len(p))); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(meta, filepath.FromSlash(pack.Key(id))))
		if err != nil {
			t.Fatal(err)
		}
		if want := packStub(int64(len(p)), packTail(ents, nonce)); !bytes.Equal(got, want) {
			t.Errorf("chunks %v: survey keeps %d bytes, packStub makes %d (or they differ)", lens, len(got), len(want))
		}
	}
}

// TestListHosts runs the real binary's list --hosts on the tiny store
// through the harness.
func TestListHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/cassback")
	}
	ctx := t.Context()
	c := tiny
	c.BackupsPerHost = 1
	dir := t.TempDir()
	if _, err := Generate(dir, c); err != nil {
		t.Fatal(err)
	}
	bin, err := Build(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := Env{Bin: bin, MetaDir: dir, CacheDir: t.TempDir(), Scratch: t.TempDir()}
	r, err := Measure(ctx, e, "list", "--hosts")
	if err != nil {
		t.Fatal(err)
	}
	if r.Exit != 0 || !strings.Contains(r.Stdout, "host000") || !strings.Contains(r.Stdout, "host001") {
		t.Fatalf("list --hosts: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if r.MaxRSS <= 0 || r.Ops[survey.OpListed].Requests+r.Ops[survey.OpListedDirs].Requests == 0 {
		t.Errorf("list --hosts: max RSS %d, requests %s; want both counted", r.MaxRSS, r.Requests())
	}
	t.Logf("list --hosts: %s, %v (CPU %v), %s", MB(r.MaxRSS), r.Wall, r.CPU, r.Requests())
}

func TestRemoveHost(t *testing.T) {
	ctx := t.Context()
	c := tiny
	c.BackupsPerHost = 1
	dir := t.TempDir()
	if _, err := Generate(dir, c); err != nil {
		t.Fatal(err)
	}
	sv := openSurvey(t, dir)
	before := len(keys(t, sv, ""))
	n, err := RemoveHost(ctx, dir, "host001")
	if err != nil {
		t.Fatal(err)
	}
	if after := len(keys(t, sv, "")); n == 0 || after != before-n {
		t.Errorf("RemoveHost deleted %d objects; the store went from %d to %d", n, before, after)
	}
	for _, p := range []string{"index/host001/", "manifests/host001/", "commits/host001/"} {
		if ks := keys(t, sv, p); len(ks) != 0 {
			t.Errorf("%s still holds %d objects", p, len(ks))
		}
	}
	if hosts, err := manifest.Hosts(ctx, sv); err != nil || !slices.Equal(hosts, []string{"host000"}) {
		t.Errorf("hosts after RemoveHost: %q, %v", hosts, err)
	}
}

// TestWatchRSS checks that a command past Env.KillRSS is killed.
func TestWatchRSS(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	var killed atomic.Bool
	watchRSS(cmd.Process.Pid, 1, make(chan struct{}), &killed)
	err := cmd.Wait()
	if !killed.Load() || err == nil {
		t.Errorf("sleep over a 1-byte limit: killed %v, wait %v; want killed", killed.Load(), err)
	}
}
