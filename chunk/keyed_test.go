package chunk

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestKeyedSum(t *testing.T) {
	k1 := DeriveKey("cassback test v1", []byte("master one"))
	k2 := DeriveKey("cassback test v1", []byte("master two"))
	k3 := DeriveKey("cassback other v1", []byte("master one"))
	if k1 == k2 || k1 == k3 {
		t.Fatalf("derived keys collide: %x %x %x", k1, k2, k3)
	}
	data := []byte("some chunk")
	a, b := KeyedSum(&k1, data), KeyedSum(&k2, data)
	if a == b || a == Sum(data) {
		t.Fatalf("keyed sums: %v under one key, %v under another, plain %v: want all different", a, b, Sum(data))
	}
	if KeyedSum(&k1, data) != a {
		t.Fatal("keyed sum not deterministic")
	}
}

func TestNamer(t *testing.T) {
	k1 := DeriveKey("cassback test v1", []byte("master one"))
	k2 := DeriveKey("cassback test v1", []byte("master two"))
	data := []byte("some chunk")
	if got, want := (Namer{}).Sum(data), Sum(data); got != want {
		t.Errorf("zero Namer: got %s, want plain BLAKE3 %s", got, want)
	}
	if got, want := KeyedNamer(k1).Sum(data), KeyedSum(&k1, data); got != want {
		t.Errorf("keyed Namer: got %s, want KeyedSum %s", got, want)
	}
	if KeyedNamer(k1) != KeyedNamer(k1) || KeyedNamer(k1) == KeyedNamer(k2) || KeyedNamer(k1) == (Namer{}) {
		t.Error("Namers compare by kind and key: want equal for one key, unequal otherwise")
	}
	if (Namer{}).Keyed() || !KeyedNamer(k1).Keyed() {
		t.Error("Keyed: want false for the zero Namer, true for KeyedNamer")
	}
	// Printing Params, whatever the verb, never shows the key.
	p := testParams
	p.Namer = KeyedNamer(k1)
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		s := fmt.Sprintf(verb, p)
		if strings.Contains(s, hex.EncodeToString(k1[:4])) || strings.Contains(s, strings.Trim(fmt.Sprint(k1[:4]), "[]")) || !strings.Contains(s, "keyed-blake3-256") {
			t.Errorf("%s of Params shows the key: %s", verb, s)
		}
	}
	// Nor is the Namer stored with the Params.
	b, err := json.Marshal(p)
	if err != nil || strings.Contains(strings.ToLower(string(b)), "namer") {
		t.Errorf("Params JSON: %s, %v; want no namer", b, err)
	}
}

// A keyed Namer changes the chunks' IDs and the whole-file sum (keyed
// too, so that a file's sum in a node's cache confirms no guess), and
// nothing else: the same cuts.
func TestSplitKeyed(t *testing.T) {
	data := randomBytes(3, 3<<20)
	plain, _ := splitAll(t, data, testParams, 2)
	p := testParams
	p.Namer = KeyedNamer(DeriveKey("cassback test v1", []byte("master")))
	keyed, chunks := splitAll(t, data, p, 2)
	checkFile(t, keyed, data, p)
	if keyed.Sum != p.Namer.Sum(data) || keyed.Sum == plain.Sum || len(keyed.Chunks) != len(plain.Chunks) {
		t.Fatalf("keyed split: sum %s and %d chunks, want the keyed sum %s and the plain split's %d", keyed.Sum, len(keyed.Chunks), p.Namer.Sum(data), len(plain.Chunks))
	}
	for i := range keyed.Chunks {
		if keyed.Chunks[i].Len != plain.Chunks[i].Len || keyed.Chunks[i].ID == plain.Chunks[i].ID || chunks[i].ID != keyed.Chunks[i].ID {
			t.Errorf("chunk %d: keyed %v, plain %v, handed to fn %s: want the same length and another ID", i, keyed.Chunks[i], plain.Chunks[i], chunks[i].ID)
		}
	}
}
