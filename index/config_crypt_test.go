package index

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote/crypt"
)

// TestConfigClearFieldsSealed: an encrypted store's config keeps its ID,
// format, hash and conditional flag in the clear; a copy is sealed with
// its secrets, and a config whose clear fields were changed without the
// key (conditional writes turned off, say: every process trusts the
// config for them) does not unlock.
func TestConfigClearFieldsSealed(t *testing.T) {
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := crypt.NewKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	c.Conditional = true
	if err := c.Encrypt(keys); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	unlock := func(b []byte) error {
		t.Helper()
		d, err := DecodeConfig(b)
		if err != nil {
			return err
		}
		if !d.Locked() {
			t.Fatalf("an encrypted config decodes unlocked")
		}
		return d.Unlock(keys)
	}
	if err := unlock(b); err != nil {
		t.Fatalf("the config as written: %v", err)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"conditional turned off", `"conditional":true`, `"conditional":false`},
		{"another hash", `"hash":"blake3-256"`, `"hash":"blake3-255"`},
	} {
		if !bytes.Contains(b, []byte(tc.from)) {
			t.Fatalf("%s: the config %s has no %s", tc.name, b, tc.from)
		}
		err := unlock(bytes.Replace(b, []byte(tc.from), []byte(tc.to), 1))
		if err == nil {
			t.Errorf("%s: unlocked", tc.name)
		} else if tc.name == "conditional turned off" && !strings.Contains(err.Error(), "changed without the key") {
			t.Errorf("%s: %v; want the clear fields named changed", tc.name, err)
		}
	}
}
