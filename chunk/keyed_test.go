package chunk

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
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

// Keyed hashers are pooled: one left by a sum under one key never
// serves another key, nor keeps the last data it hashed.
func TestKeyedSumPooled(t *testing.T) {
	keys := [][32]byte{
		DeriveKey("cassback test v1", []byte("master one")),
		DeriveKey("cassback test v1", []byte("master two")),
	}
	want := func(k [32]byte, data []byte) ID {
		h, err := blake3.NewKeyed(k[:])
		if err != nil {
			t.Fatal(err)
		}
		h.Write(data)
		var id ID
		h.Sum(id[:0])
		return id
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				k := keys[(g+i)%2]
				data := []byte(fmt.Sprintf("chunk %d of %d", i, g))
				if got := KeyedSum(&k, data); got != want(k, data) {
					t.Errorf("KeyedSum under key %d: %s, want %s", (g+i)%2, got, want(k, data))
					return
				}
				h := KeyedNamer(k).NewHasher()
				h.Write(data)
				if got := h.Sum(); got != want(k, data) {
					t.Errorf("keyed Namer's hasher under key %d: %s, want %s", (g+i)%2, got, want(k, data))
					return
				}
				putHasher(h)
			}
		})
	}
	wg.Wait()
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
