package cassback

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/remote/local"
)

// Attacks through the store's config (issue 11, item 3): its ID names the
// cache folder, so one that climbs out of the cache root must be refused
// before any folder is made.
func TestOpenRefusesConfigIDOutsideCache(t *testing.T) {
	base := t.TempDir()
	cacheRoot := filepath.Join(base, "1", "2", "3", "4", "5", "6", "7", "8")
	escaped := filepath.Join(base, "escaped1")
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("../", 8) + "escaped1" // 32 characters, as a real ID
	b := fmt.Appendf(nil, `{"format":%d,"id":%q,"hash":"blake3-256","chunker":{"pol":%d,"min_size":2097152,"max_size":16777216,"avg_bits":21,"segment":67108864},"pack_size":33554432,"conditional":true}`,
		index.StoreFormat, id, uint64(chunk.TestPol))
	if err := st.Put(t.Context(), index.ConfigKey, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), st, Options{CacheRoot: cacheRoot})
	if err == nil || !strings.Contains(err.Error(), "id") {
		t.Errorf("Open = %v, want an error about the store id", err)
	}
	if _, err := os.Stat(escaped); err == nil {
		t.Errorf("Open made %s, outside the cache root %s", escaped, cacheRoot)
	}
}
