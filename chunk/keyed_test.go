package chunk

import "testing"

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
