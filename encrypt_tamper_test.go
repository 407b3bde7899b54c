package cassback

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/local"
)

// TestEncryptedTamper flips one byte in one object of each kind of an
// encrypted store: reading it is an authentication failure that names
// it, and a restore of the files that do not use it still succeeds.
func TestEncryptedTamper(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 5, TotalBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(t.TempDir(), "store")
	keys := &memKeys{}
	r := openEncrypted(t, storeDir, keys)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1"}); err != nil {
		t.Fatal(err)
	}
	want := notSystem(node.LiveFiles)
	first := map[string]string{} // kind -> an object of that kind
	sizes := map[string]int64{}
	err = filepath.WalkDir(storeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(storeDir, p)
		key := filepath.ToSlash(rel)
		kind := strings.SplitN(key, "/", 2)[0]
		// The largest pack, whose first half holds file data (tree nodes
		// come last, and a pack of them fails every table it lists).
		if info, err := d.Info(); first[kind] == "" || kind == "packs" && err == nil && info.Size() > sizes[kind] {
			first[kind] = key
			if err == nil {
				sizes[kind] = info.Size()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const auth = "authentication failed"
	for _, kind := range []string{"packs", "index", "manifests", "commits", "gc", "config"} {
		key := first[kind]
		if key == "" {
			t.Fatalf("no object of kind %s", kind)
		}
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(storeDir, filepath.FromSlash(key))
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(path, orig, 0o644) })
			b := append([]byte(nil), orig...)
			if kind == "config" {
				i := strings.Index(string(b), `"secrets"`) + len(`"secrets"`)
				i += strings.IndexByte(string(b[i:]), '"') + 20
				b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A'] // a base64 letter of the sealed secrets
			} else {
				b[len(b)/4] ^= 1
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := local.Open(storeDir)
			if err != nil {
				t.Fatal(err)
			}
			r2, err := Open(ctx, st, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Log: quietLog(), Keys: keys})
			if kind == "config" {
				if err == nil || !strings.Contains(err.Error(), "secrets") || !strings.Contains(err.Error(), auth) {
					t.Fatalf("open with damaged config secrets: %v, want an authentication failure of the config's secrets", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "restored")
			ms, serr := Select(ctx, r2.Store, "node1", "", nil, time.Now())
			res, rerr := r2.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
			rep, verr := r2.Validate(ctx, ValidateOptions{Checksum: true})
			if verr != nil {
				t.Fatalf("validate: %v", verr)
			}
			report := fmt.Sprint(rep.Problems, rep.BadIndex, rep.Damaged)
			names := func(s string) bool { return strings.Contains(s, key) && strings.Contains(s, auth) }
			switch kind {
			case "packs":
				if len(res.Failed) == 0 || len(res.Restored) == 0 || !names(fmt.Sprint(res.Failed[0].Err)) || !errors.Is(rerr, ErrRestoreFailed) {
					t.Errorf("restore: %d restored, %d failed (%v), err %v; want some of each, failures naming %s", len(res.Restored), len(res.Failed), res.Failed, rerr, key)
				}
				if rep.OK() || !strings.Contains(report, filepath.Base(key)) {
					t.Errorf("validate: %s; want the pack named", report)
				}
			case "index":
				if rerr != nil || len(res.Restored) != len(want) {
					t.Errorf("restore with a damaged index file: %d of %d restored, err %v", len(res.Restored), len(want), rerr)
				}
				if !names(fmt.Sprint(rep.BadIndex)) {
					t.Errorf("validate: bad index %v; want %s named", rep.BadIndex, key)
				}
			case "manifests":
				var de *DamagedError
				if !errors.As(serr, &de) || !names(serr.Error()) {
					t.Errorf("select: %v; want a DamagedError naming %s", serr, key)
				}
				ks := strings.Split(key, "/")[2]
				others := 0
				for _, f := range want {
					if !strings.HasPrefix(f, ks+"/") {
						others++
					}
				}
				if rerr != nil || len(res.Restored) != others || others == 0 {
					t.Errorf("restore of the other keyspaces: %d restored, err %v; want %d", len(res.Restored), rerr, others)
				}
				if rep.OK() || !names(report) {
					t.Errorf("validate: %s; want %s named", report, key)
				}
			default: // commit markers, the collector's objects
				if serr != nil || rerr != nil || len(res.Restored) != len(want) {
					t.Errorf("restore: %d of %d restored, select %v, restore %v", len(res.Restored), len(want), serr, rerr)
				}
				if !names(fmt.Sprint(rep.Damaged)) {
					t.Errorf("validate: damaged %v; want %s named", rep.Damaged, key)
				}
			}
		})
	}
}
