package cassback

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// backupSmall backs up a small generated node as host h and returns its
// latest manifests.
func backupSmall(t *testing.T, r *Repo, seed uint64) []*manifest.Manifest {
	t.Helper()
	if _, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{smallNode(t, seed)}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	ms, err := Select(t.Context(), r.Store, "h", "", nil, time.Now().Add(time.Hour))
	if err != nil || len(ms) == 0 {
		t.Fatalf("select: %v", err)
	}
	return readWhole(t, r.Store, ms)
}

// A file that differs from the backup is moved aside into
// ../cassback-corrupt; a symlink planted there never sends it elsewhere.
func TestRestoreMoveAsideFollowsNoSymlink(t *testing.T) {
	r := repoOn(t, localStore(t), writerOpts)
	ms := backupSmall(t, r, 91)
	f := ms[0].Tables[0].Files[0]
	base := t.TempDir()
	data := filepath.Join(base, "data")
	target := filepath.Join(data, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte("not what was backed up"), 0o644); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(base, "elsewhere")
	os.MkdirAll(elsewhere, 0o755)
	os.MkdirAll(filepath.Join(base, "cassback-corrupt"), 0o755)
	ks := strings.SplitN(f.Path, "/", 2)[0]
	if err := os.Symlink(elsewhere, filepath.Join(base, "cassback-corrupt", ks)); err != nil {
		t.Fatal(err)
	}
	res, _ := r.Restore(t.Context(), ms, RestoreOptions{DataDir: data, NoChown: true})
	var found bool
	filepath.WalkDir(elsewhere, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = true
			t.Errorf("the differing file was moved through the symlink to %s", p)
		}
		return nil
	})
	if found {
		return
	}
	for _, o := range res.Failed {
		if o.Path == f.Path && strings.Contains(o.Reason, "not a folder") {
			return
		}
	}
	t.Errorf("restore did not report the file it could not move aside: failed %v, moved %v", res.Failed, res.Moved)
}

// A manifest whose file size and chunk list disagree (damaged or forged in
// the bucket) is never restored as a file of the wrong size: it does not
// decode, restore of it fails, and validate reports it. (This held before
// the hardening issue: manifest.Decode checks every record.)
func TestRestoreChecksChunkLengths(t *testing.T) {
	ctx := t.Context()
	r := repoOn(t, localStore(t), writerOpts)
	m := backupSmall(t, r, 92)[0]
	m.Tables[0].Files[0].Size++ // what the forger writes
	m.Time = m.Time.Add(time.Second)
	m.Name = manifest.BackupName(m.Time, m.Keyspace, m.Host)
	forgeManifest(t, r, m)
	commitStored(t, r.Store, m.Name, m.Session)
	data := t.TempDir()
	ms, err := Select(ctx, r.Store, "h", m.Name, nil, time.Now().Add(time.Hour))
	if err == nil {
		_, err = r.Restore(ctx, ms, RestoreOptions{DataDir: data, NoChown: true})
	}
	if err == nil || !strings.Contains(err.Error(), "chunk lengths add up") {
		t.Errorf("restore of an inconsistent manifest: %v, want an error naming the mismatch", err)
	}
	// The table's files are not restored (its other tables may be).
	for _, f := range m.Tables[0].Files {
		if _, err := os.Lstat(filepath.Join(data, filepath.FromSlash(f.Path))); err == nil {
			t.Errorf("restore wrote %s of an inconsistent table", f.Path)
		}
	}
	// Built in memory by a caller of the library, it is refused too.
	if _, err := r.Restore(ctx, []*manifest.Manifest{m}, RestoreOptions{DataDir: data, NoChown: true}); err == nil {
		t.Error("Restore took an inconsistent manifest from its caller")
	}
	rep, err := r.Validate(ctx, ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var reported bool
	for _, p := range rep.Problems {
		reported = reported || (p.Backup == m.Name && p.Kind == Corrupt)
	}
	if !reported {
		t.Errorf("validate did not report the inconsistent manifest: %+v", rep.Problems)
	}
}

// A batch is fetched a window of chunk references at a time, so a file
// whose chunks span many windows is written piece by piece; windows of one
// and of three references restore every file byte-identical.
func TestRestoreInWindows(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 5, TotalBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// The smallest chunks a store may have, so that small files have many.
	dir := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(dir, 0o755)
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := index.NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Chunker.MinSize, cfg.Chunker.AvgBits = chunk.StoreMinMinSize, chunk.StoreMinAvgBits
	if _, err := index.Init(ctx, st, cfg); err != nil {
		t.Fatal(err)
	}
	r := openLocal(t, dir, false)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"}); err != nil {
		t.Fatal(err)
	}
	ms, err := Select(ctx, r.Store, "n1", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	multi := 0
	for _, m := range readWhole(t, r.Store, ms) {
		for _, tb := range m.Tables {
			for _, f := range tb.Files {
				if len(f.Chunks) > 1 {
					multi++
				}
			}
		}
	}
	if multi == 0 {
		t.Fatal("no file of the generated node has more than one chunk")
	}
	defer func(w int) { restoreWindow = w }(restoreWindow)
	for _, w := range []int{1, 3} {
		restoreWindow = w
		dst := filepath.Join(t.TempDir(), "restored")
		res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
		if err != nil {
			t.Fatalf("window %d: %v", w, err)
		}
		want := notSystem(node.LiveFiles)
		sameFiles(t, data, dst, want)
		if len(res.Restored) != len(want) {
			t.Errorf("window %d: restored %d files, want %d", w, len(res.Restored), len(want))
		}
	}
}

// forgeManifest stores m as a forger with write access to the bucket would,
// without the checks Encode makes: each table's files in one leaf (the
// canonical JSON of a flat manifest dated 1970), in a pack named by an
// index file, and a manifest object naming the leaves.
func forgeManifest(t *testing.T, r *Repo, m *manifest.Manifest) {
	t.Helper()
	ctx := t.Context()
	w, err := index.NewWriter(ctx, r.Store, index.New(), r.Config, index.WriterOptions{Host: m.Host})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	var tables []string
	for _, tb := range m.Tables {
		data := manifest.EncodeLeaf(m.Host, m.Keyspace, &tb)
		id := chunk.Sum(data)
		if _, err := p.Add(ctx, id, data); err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, f := range tb.Files {
			size += f.Size
		}
		tables = append(tables, fmt.Sprintf(`{"name":%q,"id":%q,"files":%d,"bytes":%d,"height":0,"root":{"id":"%s","len":%d}}`,
			tb.Name, tb.ID, len(tb.Files), size, id, len(data)))
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	obj := gzipOf(fmt.Appendf(nil, `{"format":%d,"name":%q,"host":%q,"keyspace":%q,"time":%q,"session":%q,"tables":[%s]}`,
		manifest.FormatVersion, m.Name, m.Host, m.Keyspace, m.Time.Format(time.RFC3339Nano), m.Session, strings.Join(tables, ",")))
	if err := manifest.Put(ctx, r.Store, m.Name, obj); err != nil {
		t.Fatal(err)
	}
}

func gzipOf(b []byte) []byte {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b)
	zw.Close()
	return gz.Bytes()
}

// sessionFailStore fails every conditional write of a session object.
type sessionFailStore struct {
	remote.Store
	err error
}

func (s sessionFailStore) PutIf(ctx context.Context, key string, b []byte, etag string) (string, error) {
	if strings.HasPrefix(key, "sessions/") {
		return "", s.err
	}
	return s.Store.(remote.Conditional).PutIf(ctx, key, b, etag)
}

// A reader runs without a session only when the store refuses it the
// right to write one (read-only credentials). A session that could not
// start for any other reason — revoked while it was starting (stopped past
// the lease: long-mode seed 83863, whose restore then read packs a purge
// deleted), or a store failing — stops the restore before it reads a
// chunk.
func TestRestoreNeedsItsSession(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	ms := backupSmall(t, r, 93)
	for _, tc := range []struct {
		err     error
		proceed bool
	}{
		{fmt.Errorf("put session: %w", remote.ErrPrecondition), false},
		{errors.New("put session: connection reset"), false},
		{fmt.Errorf("put session: access denied: %w", fs.ErrPermission), true},
		{fmt.Errorf("put session: %w", syscall.EROFS), true},
		{fmt.Errorf("put session: %w", errors.ErrUnsupported), true}, // conditional writes lost: no purge but --exclusive
	} {
		ro := repoOn(t, sessionFailStore{Store: st, err: tc.err}, writerOpts)
		data := t.TempDir()
		res, err := ro.Restore(ctx, ms, RestoreOptions{DataDir: data, NoChown: true})
		switch {
		case tc.proceed && (err != nil || len(res.Restored) == 0):
			t.Errorf("%v: restore without a session: %v, %d files; want it to run, with a warning", tc.err, err, len(res.Restored))
		case !tc.proceed && (err == nil || len(res.Restored) > 0):
			t.Errorf("%v: restore = %v, %d files restored; want an error and nothing read", tc.err, err, len(res.Restored))
		}
	}
}
