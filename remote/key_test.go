package remote_test

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote"
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
