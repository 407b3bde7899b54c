package remote_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote"
)

// FuzzValidPrefix checks the prefix grammar of List and ListDirs, which
// purge, validate and the survey apply to hostile names: it must never
// panic, refusals wrap ErrInvalidKey, and every key that extends an
// accepted prefix by a valid character is a valid key.
func FuzzValidPrefix(f *testing.F) {
	for _, s := range []string{"", "a", "a/", "manifests/h/ks/2026_11", "a//", "/", "../", "a/.", "a/.b", "sessions/h/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		err := remote.ValidPrefix(prefix)
		if err != nil {
			if !errors.Is(err, remote.ErrInvalidKey) {
				t.Fatalf("ValidPrefix(%q): %v does not wrap ErrInvalidKey", prefix, err)
			}
			return
		}
		key := prefix + "x"
		last := key[strings.LastIndexByte(key, '/')+1:]
		if len(key) > remote.MaxKeyLen || len(last) > remote.MaxSegmentLen {
			return
		}
		if err := remote.ValidKey(key); err != nil {
			t.Fatalf("ValidPrefix accepts %q but ValidKey refuses %q: %v", prefix, key, err)
		}
	})
}
