//go:build !linux

package cassback

import (
	"os"
	"time"
)

// syncFS flushes the filesystem holding dir. Without syncfs(2) it flushes
// the directory itself; the files were written through the page cache and
// are flushed by the system's own writeback.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// setMTime sets the access and modification times of the file at rel below
// root; os.Root keeps the path from leaving the data directory.
func setMTime(root *os.Root, rel string, _ *os.File, t time.Time) error {
	return root.Chtimes(rel, t, t)
}
