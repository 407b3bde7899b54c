package gc

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote/local"
)

// The protocol's JSON objects are read within maxObject (issue 11, item 2):
// a sparse 4 GiB object planted as the lease or a session costs nothing.
func TestGetJSONBounded(t *testing.T) {
	for _, key := range []string{leaseKey, sessionPrefix + "h/0123456789abcdef01234567", condemnedPrefix + "x/set"} {
		t.Run(key, func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, filepath.FromSlash(key))
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(name, 4<<30); err != nil {
				t.Fatal(err)
			}
			st, err := local.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			var a, b runtime.MemStats
			runtime.ReadMemStats(&a)
			var v map[string]any
			_, err = getJSON(t.Context(), st, key, &v)
			runtime.ReadMemStats(&b)
			if n := b.TotalAlloc - a.TotalAlloc; n > 1<<20 {
				t.Errorf("getJSON allocated %d KiB, want at most 1 MiB", n>>10)
			}
			if !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), key) {
				t.Errorf("getJSON = %v, want errTooLarge naming %s", err, key)
			}
		})
	}
}
