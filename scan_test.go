package cassback

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/hole"
)

// keepOneSSTable removes every SSTable of the node at data but the first
// (by path) of each keyspace, so that most chunks of its first backup are
// referenced by that backup alone.
func keepOneSSTable(t *testing.T, data string) {
	t.Helper()
	kept := map[string]string{} // keyspace -> the SSTable kept
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		i := strings.Index(path, "-big-")
		if i < 0 {
			return nil
		}
		rel, err := filepath.Rel(data, path)
		if err != nil {
			return err
		}
		ks, _, _ := strings.Cut(rel, string(filepath.Separator))
		if kept[ks] == "" {
			kept[ks] = path[:i]
		}
		if path[:i] != kept[ks] {
			return os.Remove(path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) == 0 {
		t.Fatal("no SSTable in the node")
	}
}

// Hole 10: a purge that did not list the packs took every indexed pack as
// stored. A repack copied the live chunks of a sparse pack into a new
// pack, which the store then lost; the sweep kept the lost copy and
// deleted the sparse pack, the last copy of the chunks. The sweep must
// confirm the packs it keeps instead of the ones it deletes, and look
// again with a full listing when one is missing.
func TestHole10UnconfirmedKeepers(t *testing.T) {
	holeTest(t, hole.UnconfirmedKeepers, func(t *testing.T) error {
		rep, err := saRepackDamaged(t, saDelete, false) // the store loses the repacked pack
		if err == nil && !hole.On(hole.UnconfirmedKeepers) && rep.Resurrected == 0 {
			t.Errorf("the sweep kept no condemned pack though the repacked copy was lost: %+v", rep)
		}
		return err
	})
}
