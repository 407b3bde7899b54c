package remote_test

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

func TestValidKey(t *testing.T) {
	seg255 := strings.Repeat("s", 255)
	seg204 := strings.Repeat("s", 204)
	for _, tt := range []struct {
		key     string
		problem string // "" if valid; else a substring of the error
	}{
		{"k", ""},
		{"packs/3f/3fa2b4", ""},
		{"manifests/c1/dc1/node-1.example.com/01HZX3/ks_1.mf", ""},
		{"index/n/d-01HZX3.idx", ""},
		{"COMMIT", ""},
		{"a.", ""},
		{"a..b", ""},
		{"-", ""},
		{"_", ""},
		{seg255, ""},
		{strings.Join([]string{seg204, seg204, seg204, seg204, seg204}, "/"), ""}, // 1024 bytes

		{"", "empty"},
		{"/", "ends with '/'"},
		{"/a", "starts with '/'"},
		{"a/", "ends with '/'"},
		{"a//b", "empty segment at offset 2"},
		{".", "starts with '.'"},
		{"..", "starts with '.'"},
		{"../x", "starts with '.'"},
		{"a/../b", `segment ".." starts with '.'`},
		{"a/.tmp-1", `segment ".tmp-1" starts with '.'`},
		{"a b", `byte " " at offset 1`},
		{"a\nb", `byte "\n" at offset 1`},
		{"a\x00b", `byte "\x00" at offset 1`},
		{"a\\b", `byte "\\" at offset 1`},
		{"a+b", `byte "+"`},
		{"a:b", `byte ":"`},
		{"ü", `byte "\xc3" at offset 0`},
		{seg255 + "s", "segment at offset 0 is 256 bytes, more than 255"},
		{"a/" + seg255 + "s", "segment at offset 2 is 256 bytes"},
		{strings.Repeat("abcd/", 205)[:1025], "1025 bytes, more than 1024"},
	} {
		err := remote.ValidKey(tt.key)
		switch {
		case tt.problem == "" && err != nil:
			t.Errorf("ValidKey(%.40q): got %v, want nil", tt.key, err)
		case tt.problem != "" && err == nil:
			t.Errorf("ValidKey(%.40q): got nil, want an error about %q", tt.key, tt.problem)
		case tt.problem != "":
			if !errors.Is(err, remote.ErrInvalidKey) || !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("ValidKey(%.40q): got %q, want ErrInvalidKey about %q", tt.key, err, tt.problem)
			}
			if strings.Contains(err.Error(), "\n") || len(err.Error()) > 200 {
				t.Errorf("ValidKey(%.40q): error %q is not one short line", tt.key, err)
			}
		}
	}
}

func TestValidKeyErrorText(t *testing.T) {
	err := remote.ValidKey("a//b")
	if got, want := err.Error(), `invalid key "a//b": empty segment at offset 2`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	err = remote.ValidPrefix("a/.x")
	if got, want := err.Error(), `invalid key prefix "a/.x": segment ".x" starts with '.'`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidKeyUnder(t *testing.T) {
	root := "stores/one/" // 11 bytes
	for _, tt := range []struct {
		root, key string
		problem   string // "" if valid; else a substring of the error
	}{
		{"", remotetest.LongKey(1024), ""},
		{root, remotetest.LongKey(1013), ""},
		{root, "k", ""},
		{root, remotetest.LongKey(1014), `1014 bytes, 1025 with the store's key prefix "stores/one/" (11 bytes), more than 1024`},
		{root, remotetest.LongKey(1025), "1025 bytes, more than 1024"},
		{root, "a//b", "empty segment"},
		{strings.Repeat("r", 1023) + "/", "k", `1 bytes, 1025 with the store's key prefix "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"... (1024 bytes)`},
	} {
		err := remote.ValidKeyUnder(tt.root, tt.key)
		switch {
		case tt.problem == "" && err != nil:
			t.Errorf("ValidKeyUnder(%.20q, %d bytes): got %v, want nil", tt.root, len(tt.key), err)
		case tt.problem != "" && (!errors.Is(err, remote.ErrInvalidKey) || !strings.Contains(fmt.Sprint(err), tt.problem)):
			t.Errorf("ValidKeyUnder(%.20q, %d bytes): got %v, want ErrInvalidKey about %q", tt.root, len(tt.key), err, tt.problem)
		case err != nil && (strings.Contains(err.Error(), "\n") || len(err.Error()) > 300):
			t.Errorf("ValidKeyUnder(%.20q, %d bytes): error %q is not one short line", tt.root, len(tt.key), err)
		}
	}
}

// prefixed is a store that says it puts a prefix before its keys.
type prefixed struct {
	remote.Store
	prefix string
}

func (p prefixed) KeyPrefix() string { return p.prefix }

func TestMaxKeyLenOf(t *testing.T) {
	mem := remotetest.NewMemory()
	if got := remote.MaxKeyLenOf(mem); got != 1024 {
		t.Errorf("MaxKeyLenOf(Memory): got %d, want 1024", got)
	}
	if got := remote.MaxKeyLenOf(prefixed{mem, "stores/one/"}); got != 1013 {
		t.Errorf("MaxKeyLenOf(under %q): got %d, want 1013", "stores/one/", got)
	}
}

func TestBeginUnder(t *testing.T) {
	ctx := t.Context()
	root := "stores/one/"
	if err := remote.BeginUnder(ctx, "put", root, remotetest.LongKey(1013)); err != nil {
		t.Errorf("BeginUnder of a key that fits: %v", err)
	}
	err := remote.BeginUnder(ctx, "put", root, "kkkkkkkkkk/"+remotetest.LongKey(1003))
	want := `put: invalid key "kkkkkkkkkk/` + strings.Repeat("k", 69) + `"...: ` +
		`1014 bytes, 1025 with the store's key prefix "stores/one/" (11 bytes), more than 1024`
	if err == nil || err.Error() != want {
		t.Errorf("BeginUnder of a key too long:\n got %v\nwant %s", err, want)
	}
	for _, prefix := range []string{remotetest.LongKey(1013), remotetest.LongKey(1012) + "/"} {
		if err := remote.BeginListUnder(ctx, root, prefix); err != nil {
			t.Errorf("BeginListUnder(%d bytes): %v", len(prefix), err)
		}
	}
	if err := remote.BeginListUnder(ctx, root, remotetest.LongKey(1014)); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("BeginListUnder of a prefix no key can have: got %v, want ErrInvalidKey", err)
	}
	if err := remote.BeginListDirsUnder(ctx, root, remotetest.LongKey(1013)+"/"); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("BeginListDirsUnder of a prefix no key can have: got %v, want ErrInvalidKey", err)
	}
	if err := remote.BeginListDirsUnder(ctx, root, ""); err != nil {
		t.Errorf("BeginListDirsUnder of the empty prefix: %v", err)
	}
}

func TestValidPrefix(t *testing.T) {
	for _, tt := range []struct {
		prefix string
		ok     bool
	}{
		{"", true},
		{"a", true},
		{"a/", true},
		{"manifests/h/ks/2026_11", true},
		{"manifests/h/ks/", true},
		{"packs/3", true},
		{strings.Repeat("s", 255) + "/", true},

		{"/", false},
		{"/a", false},
		{"a//", false},
		{"a//b", false},
		{".", false},
		{".x", false},
		{"a/.", false},
		{"a/.x/", false},
		{"../", false},
		{"a b", false},
		{strings.Repeat("s", 256), false},
		{strings.Repeat("s/", 513), false},
	} {
		err := remote.ValidPrefix(tt.prefix)
		if (err == nil) != tt.ok {
			t.Errorf("ValidPrefix(%.40q): got %v, want ok %v", tt.prefix, err, tt.ok)
		}
		if err != nil && !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("ValidPrefix(%.40q): got %v, want ErrInvalidKey", tt.prefix, err)
		}
	}
}

// FuzzValidKey checks that an accepted key is a clean relative path that
// stays below its root, and that every key is also a valid prefix.
func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "a/./b", "a//b", ".a", "a/", "packs/3f/3fa2", "a-b.c_d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := remote.ValidKey(key)
		if err != nil {
			if !errors.Is(err, remote.ErrInvalidKey) {
				t.Fatalf("ValidKey(%q): %v does not wrap ErrInvalidKey", key, err)
			}
			return
		}
		if path.Clean(key) != key || path.IsAbs(key) || key == ".." || strings.HasPrefix(key, "../") {
			t.Fatalf("ValidKey accepted %q, which is not a clean relative path", key)
		}
		for seg := range strings.SplitSeq(key, "/") {
			if seg == "" || seg[0] == '.' || len(seg) > remote.MaxSegmentLen {
				t.Fatalf("ValidKey accepted %q with segment %q", key, seg)
			}
		}
		if err := remote.ValidPrefix(key); err != nil {
			t.Fatalf("ValidKey accepted %q but ValidPrefix rejects it: %v", key, err)
		}
	})
}
