package local

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestPutRacesDirCleanup removes empty directories as fast as it can while
// Puts create them, as Deletes on other hosts would if there were enough of
// them: every Put must still succeed. It calls removeEmptyDirs directly
// because Deletes alone hit the window between mkdir and the temporary file
// too rarely to test.
func TestPutRacesDirCleanup(t *testing.T) {
	s, err := Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.removeEmptyDirs(t.Context(), "x/y/z")
		}
	})
	n := 30
	if testing.Short() {
		n = 10
	}
	for i := range n {
		key := fmt.Sprintf("x/y/z/%d", i)
		if err := s.Put(t.Context(), key, strings.NewReader("v"), 1); err != nil {
			t.Errorf("Put %d racing directory cleanup: %v", i, err)
			break
		}
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete %d: %v", i, err)
			break
		}
	}
	close(stop)
	wg.Wait()
}
