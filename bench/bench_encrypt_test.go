package bench

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/remote/crypt/keyslot"
)

// encKeys is a key-file source of the benchmark's encrypted stores.
func encKeys(b *testing.B) cassback.Keys {
	k := make([]byte, 32)
	rand.Read(k)
	src, err := keyslot.KeyFile(k)
	if err != nil {
		b.Fatal(err)
	}
	return cassback.KeySlots(src)
}

// BenchmarkEncryption measures a first backup of the generated node, and a
// restore of it, into a plaintext store and an encrypted one, in the same
// run (the budget: each at most 10% slower encrypted). Run with
// -benchtime 4x -count 2 and compare the pairs.
func BenchmarkEncryption(b *testing.B) {
	n := genNode(b)
	for _, mode := range []string{"plain", "encrypted"} {
		keys := cassback.Keys(nil)
		if mode == "encrypted" {
			keys = encKeys(b)
		}
		b.Run("backup/"+mode, func(b *testing.B) {
			b.SetBytes(n.Bytes)
			i := 0
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(tmpRoot, "store-enc-"+mode+strconv.Itoa(i))
				r := newRepoKeys(b, dir, true, keys)
				b.StartTimer()
				if _, err := r.Backup(context.Background(), cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench", IncludeSystem: true}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				i++
				b.StartTimer()
			}
		})
		b.Run("restore/"+mode, func(b *testing.B) {
			dir := filepath.Join(tmpRoot, "store-enc-restore-"+mode)
			defer os.RemoveAll(dir)
			benchRestore(b, newRepoKeys(b, dir, true, keys), "restore-enc-"+mode)
		})
	}
}
