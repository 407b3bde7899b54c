package chunk

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/restic/chunker"
)

func TestTestPol(t *testing.T) {
	pol := chunker.Pol(TestPol)
	if got := pol.Deg(); got != 53 {
		t.Errorf("TestPol degree: got %d, want 53", got)
	}
	if !pol.Irreducible() {
		t.Errorf("TestPol %#x: got reducible, want irreducible", uint64(TestPol))
	}
}

func TestDefaultParams(t *testing.T) {
	p := DefaultParams(TestPol)
	want := Params{Pol: TestPol, MinSize: 2 << 20, MaxSize: 16 << 20, AvgBits: 21, Segment: 64 << 20}
	if p != want {
		t.Errorf("DefaultParams: got %+v, want %+v", p, want)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestNewParams(t *testing.T) {
	a, err := NewParams()
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	if err := a.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if want := DefaultParams(a.Pol); a != want {
		t.Errorf("NewParams: got %+v, want the defaults %+v", a, want)
	}
	b, err := NewParams()
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	if a.Pol == b.Pol {
		t.Errorf("NewParams twice: got the same polynomial %#x, want random ones", a.Pol)
	}
}

// TestParamsJSON pins the field names: Params are stored in the store's config.
func TestParamsJSON(t *testing.T) {
	p := DefaultParams(TestPol)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	const want = `{"pol":17349423945073011,"min_size":2097152,"max_size":16777216,"avg_bits":21,"segment":67108864}`
	if string(b) != want {
		t.Errorf("Marshal: got %s, want %s", b, want)
	}
	var got Params
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if got != p {
		t.Errorf("Unmarshal: got %+v, want %+v", got, p)
	}
}

func TestValidate(t *testing.T) {
	ok := DefaultParams(TestPol)
	with := func(f func(p *Params)) Params {
		p := ok
		f(&p)
		return p
	}
	tests := []struct {
		name string
		p    Params
		want string // "" for valid
	}{
		{"defaults", ok, ""},
		{"test params", testParams, ""},
		{"tiny params", tinyParams, ""},
		{"smallest", Params{Pol: TestPol, MinSize: 64, AvgBits: 10, MaxSize: 64 + 1024, Segment: 64 + 1024}, ""},
		{"zero", Params{}, "chunk params: pol is 0"},
		{"pol degree", with(func(p *Params) { p.Pol = 0x1B }), "chunk params: pol 0x1b has degree 4, want 53"},
		{"pol too big", with(func(p *Params) { p.Pol = TestPol << 1 }), "has degree 54, want 53"},
		{"pol reducible", with(func(p *Params) { p.Pol = 1<<53 | 1<<1 }), "chunk params: pol 0x20000000000002 is not irreducible"},
		{"min zero", with(func(p *Params) { p.MinSize = 0 }), "chunk params: min_size 0 is below 64"},
		{"min below window", with(func(p *Params) { p.MinSize = 63 }), "chunk params: min_size 63 is below 64"},
		{"max below min", with(func(p *Params) { p.MaxSize = p.MinSize - 1 }), "chunk params: max_size 2097151 is below min_size 2097152"},
		{"max too big", with(func(p *Params) { p.MaxSize = 1<<30 + 1; p.Segment = 2 << 30 }), "chunk params: max_size 1073741825 is above 1073741824"},
		{"avg bits low", with(func(p *Params) { p.AvgBits = 9 }), "chunk params: avg_bits 9 is outside 10..30"},
		{"avg bits high", with(func(p *Params) { p.AvgBits = 31 }), "chunk params: avg_bits 31 is outside 10..30"},
		{"avg bits negative", with(func(p *Params) { p.AvgBits = -1 }), "avg_bits -1 is outside"},
		{"max below mean", with(func(p *Params) { p.MaxSize = 4<<20 - 1 }), "chunk params: max_size 4194303 is below the mean chunk, min_size + 2^avg_bits = 4194304"},
		{"segment below max", with(func(p *Params) { p.Segment = 16<<20 - 1 }), "chunk params: segment 16777215 is below max_size 16777216"},
		{"segment zero", with(func(p *Params) { p.Segment = 0 }), "chunk params: segment 0 is below"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
