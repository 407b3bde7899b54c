package gc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/cachefile"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// mocGets counts the GETs of a store.
type mocGets struct {
	remote.Store
	gets int
}

func (s *mocGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.gets++
	return s.Store.Get(ctx, key, off, n)
}

// mocListed returns the listing of the manifest object of name.
func mocListed(t *testing.T, st remote.Store, name string) manifest.Object {
	t.Helper()
	var got manifest.Object
	if err := manifest.Objects(t.Context(), st, func(o manifest.Object) error {
		if o.Name == name {
			got = o
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got.Name == "" {
		t.Fatalf("manifest %s not listed", name)
	}
	return got
}

// The cache serves a committed manifest object only while its copy hashes
// to what the marker names and the listing shows the stored object as it
// was when the copy was checked; anything else is read from the store.
// The bytes are opaque here: the cache never decodes them.
func TestManifestObjectCache(t *testing.T) {
	ctx := t.Context()
	mem := remotetest.NewMemory()
	st := &mocGets{Store: mem}
	name := manifest.BackupName(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), "ks", "h1")
	key, err := manifest.Key(name)
	if err != nil {
		t.Fatal(err)
	}
	committedObj := []byte("the committed manifest object")
	put := func(b []byte) {
		t.Helper()
		if err := mem.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	put(committedObj)
	h := manifest.HashOf(committedObj)
	dir := t.TempDir()
	c := OpenCache(dir, nil)
	defer c.Close()
	cached := filepath.Join(dir, "gc", filepath.FromSlash(key))
	read := func(o manifest.Object, h manifest.Hash, committed bool, want []byte, wantGets int) {
		t.Helper()
		st.gets = 0
		got, err := c.manifestObject(ctx, st, o, h, committed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("read %q; want %q", got, want)
		}
		if st.gets != wantGets {
			t.Errorf("%d GETs; want %d", st.gets, wantGets)
		}
	}
	o := mocListed(t, mem, name)

	// Read once from the store, then from the cache.
	read(o, h, true, committedObj, 1)
	read(o, h, true, committedObj, 0)

	// A copy planted or damaged in the cache folder, under the right
	// stamp: refused, read from the store and cached again.
	b, err := os.ReadFile(cached)
	if err != nil {
		t.Fatal(err)
	}
	stamp, _, _ := bytes.Cut(b, []byte{'\n'})
	for _, forged := range [][]byte{
		[]byte("the committed manifest objecT"), // same size
		[]byte("a manifest object with fewer references"),
		nil,
	} {
		if err := os.WriteFile(cached, append(append(stamp, '\n'), forged...), 0o644); err != nil {
			t.Fatal(err)
		}
		read(o, h, true, committedObj, 1)
		read(o, h, true, committedObj, 0)
	}
	if err := os.WriteFile(cached, committedObj, 0o644); err != nil { // no stamp
		t.Fatal(err)
	}
	read(o, h, true, committedObj, 1)

	// The marker names another object (rewritten with the manifest, or
	// forged): the copy does not serve; the store's object is what the
	// mark reads, and it is not cached under the other hash.
	other := manifest.HashOf([]byte("another object"))
	read(o, other, true, committedObj, 1)
	read(o, other, true, committedObj, 1)

	// Not committed: read from the store every time, the copy unused.
	read(o, manifest.Hash{}, false, committedObj, 1)
	read(o, h, false, committedObj, 1)

	// The object replaced in the store, its marker unchanged: the listing
	// shows another stamp, so the copy does not serve (it would hide
	// what the replacement references); the replacement, not the object
	// its marker names, is read every time and never cached.
	read(o, h, true, committedObj, 1) // the copy the other hash removed
	read(o, h, true, committedObj, 0)
	replaced := []byte("a replacement with other references")
	put(replaced)
	o2 := mocListed(t, mem, name)
	read(o2, h, true, replaced, 1)
	read(o2, h, true, replaced, 1)
	if _, ok := cachefile.Read(c.root, manifestPrefix+key, maxManifest); ok {
		t.Errorf("the copy of a replaced object is kept")
	}
	// The object put back as it was (a new write, a new stamp): read
	// once, and cached again.
	put(committedObj)
	o3 := mocListed(t, mem, name)
	read(o3, h, true, committedObj, 1)
	read(o3, h, true, committedObj, 0)
	// A listing older than the copy's (the stamp of the replacement)
	// does not serve either.
	read(o2, h, true, committedObj, 1)
	read(o3, h, true, committedObj, 1)

	// A listing of another key for the name (not where Key puts it):
	// read from the store.
	odd := o3
	odd.Key = "manifests/elsewhere/" + name
	read(odd, h, true, committedObj, 1)

	// Pruned once no longer listed, with leftovers of a crash.
	read(o3, h, true, committedObj, 0)
	tmp := cached + ".tmp123"
	if err := os.WriteFile(tmp, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.pruneManifests(map[string]bool{key: true})
	if _, err := os.Stat(tmp); err == nil {
		t.Errorf("a crash's leftover %s is kept", tmp)
	}
	read(o3, h, true, committedObj, 0)
	c.pruneManifests(map[string]bool{})
	if _, err := os.Stat(cached); err == nil {
		t.Errorf("a manifest no longer listed is kept in the cache")
	}
	// A nil cache reads from the store.
	var none *Cache
	st.gets = 0
	if got, err := none.manifestObject(ctx, st, o3, h, true); err != nil || !bytes.Equal(got, committedObj) || st.gets != 1 {
		t.Errorf("a nil cache read %q, %v in %d GETs", got, err, st.gets)
	}
	none.pruneManifests(nil)
	if err := mem.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.manifestObject(ctx, st, o3, h, true); !errors.Is(err, manifest.ErrNoBackup) {
		t.Errorf("a deleted manifest read: %v", err)
	}
}
