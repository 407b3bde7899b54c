package keyslot_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote/crypt/keyslot"
	"github.com/cassback/cassback/remote/s3/kmstest"
)

var update = flag.Bool("update", false, "rewrite the golden slots in testdata/")

const goldenStore = "golden-store"

// goldenSources are the keys of the golden slots; the kms one needs the
// emulator, whose seeded key is fixed.
func goldenSources(t *testing.T, withKMS bool) map[string]keyslot.Source {
	t.Helper()
	m := map[string]keyslot.Source{
		"key-file":   keyFile(t, testKeyFile),
		"passphrase": passphrase(t, testPassphrase),
	}
	if withKMS {
		k := kmstest.Start(t).KMS(t, kmstest.KeyAlias)
		m["kms"] = keyslot.Wrapper(keyslot.KindKMS, k.KeyID(), k)
	}
	return m
}

// TestGolden pins the slot format: the slots in testdata/, written by an
// earlier version, still decode and open to the test master key with the
// test keys, so the KDFs, the additional data and the JSON are unchanged.
func TestGolden(t *testing.T) {
	if *update {
		for kind, src := range goldenSources(t, true) {
			st := newStore(t)
			s := add(t, st, goldenStore, src)
			b := listing(t, st)["keys/"+s.ID]
			if err := os.WriteFile(filepath.Join("testdata", "slot-"+kind+".json"), []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "slot-*.json"))
	if len(files) != 3 {
		t.Fatalf("%d golden slots, want 3 (run go test -run TestGolden -update)", len(files))
	}
	srcs := goldenSources(t, !testing.Short())
	for _, f := range files {
		kind := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "slot-"), ".json")
		t.Run(kind, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := keyslot.Decode(b); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			src, ok := srcs[kind]
			if !ok {
				t.Skip("no KMS emulator in -short mode")
			}
			st := newStore(t)
			id := mustUnmarshal(t, b)["id"].(string)
			if err := st.Put(t.Context(), "keys/"+id, bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			master, _, err := keyslot.Unlock(t.Context(), st, goldenStore, src)
			if err != nil || !bytes.Equal(master, testMaster) {
				t.Fatalf("Unlock = %q, %v; want the test master", master, err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "slot-*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"id":"0123456789abcdef","kind":"passphrase","created":"2026-01-01T00:00:00Z","salt":"AAAAAAAAAAAAAAAAAAAAAA==","t":16,"m":1048576,"p":64,"wrapped":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := keyslot.Decode(b)
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("error has more than one line: %q", err)
		}
	})
}
