package remotetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
)

// Run checks that the stores newStore returns keep the remote.Store contract,
// and the remote.Conditional contract if they implement it.
//
// The longest keys it writes have remote.MaxKeyLenOf(store) bytes: a store
// that puts a prefix before every key on its server must implement
// remote.KeyPrefixer, and must refuse a key the prefix would push past
// remote.MaxKeyLen (remote.ValidKeyUnder does both checks).
//
// newStore is called once per subtest, from parallel subtests, and must
// return an empty store that no other call shares (a fresh directory, or a
// fresh bucket or key prefix). Register cleanup with t.Cleanup. A store whose
// PutIf returns errors.ErrUnsupported skips the conditional subtests.
//
// ModTime is checked against the test's clock with a 5 minute tolerance, so
// a remote server's clock may be a little off.
func Run(t *testing.T, newStore func(t *testing.T) remote.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, func(*testing.T) remote.Store)
	}{
		{"PutGet", testPutGet},
		{"PutGetKeyShapes", testKeyShapes},
		{"Overwrite", testOverwrite},
		{"GetRange", testGetRange},
		{"GetRangeEmpty", testGetRangeEmpty},
		{"Stat", testStat},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"DeleteMissing", testDeleteMissing},
		{"DeleteLeavesNoDirs", testDeleteLeavesNoDirs},
		{"List", testList},
		{"ListInfo", testListInfo},
		{"ListStop", testListStop},
		{"ListError", testListError},
		{"ListEmpty", testListEmpty},
		{"ListCallbackWrites", testListCallbackWrites},
		{"ListDirs", testListDirs},
		{"KeyTooLong", testKeyTooLong},
		{"InvalidKeys", testInvalidKeys},
		{"InvalidPrefixes", testInvalidPrefixes},
		{"PutBadData", testPutBadData},
		{"Canceled", testCanceled},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentPutDelete", testConcurrentPutDelete},
		{"AtomicPut", testAtomicPut},
		{"Conditional", testConditional},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore)
		})
	}
}

// Data returns n pseudo-random bytes that depend only on seed and n.
func Data(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(n))
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func put(t *testing.T, s remote.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func get(t *testing.T, s remote.Store, key string, offset, length int64) []byte {
	t.Helper()
	b, err := read(t.Context(), s, key, offset, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, offset, length, err)
	}
	return b
}

func read(ctx context.Context, s remote.Store, key string, offset, length int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return b, err
}

func keys(t *testing.T, s remote.Store, prefix string) []string {
	t.Helper()
	var got []string
	err := s.List(t.Context(), prefix, func(info remote.Info) error {
		got = append(got, info.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func wantBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %d bytes (%s), want %d bytes (%s)", what, len(got), head(got), len(want), head(want))
	}
}

func head(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%x...", b[:16])
	}
	return fmt.Sprintf("%x", b)
}

func wantKeys(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func testPutGet(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for _, size := range []int{0, 1, 100, 64<<10 + 3, 3<<20 + 17} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := fmt.Sprintf("obj/size-%d", size)
			data := Data(uint64(size), size)
			put(t, s, key, data)
			wantBytes(t, "Get", get(t, s, key, 0, -1), data)
			info, err := s.Stat(t.Context(), key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if info.Key != key || info.Size != int64(size) {
				t.Errorf("Stat: got key %q size %d, want %q %d", info.Key, info.Size, key, size)
			}
		})
	}
}

// LongKey returns a valid key of n bytes: segments of 200 bytes, and a
// last one of up to 201.
func LongKey(n int) string {
	b := []byte(strings.Repeat("k", n))
	for i := 200; i < n-1; i += 201 {
		b[i] = '/'
	}
	return string(b)
}

// testKeyShapes stores keys at the limits of the grammar, among them the
// longest the store takes: 1024 bytes, less the store's key prefix.
func testKeyShapes(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for _, key := range []string{
		"k",
		"A-Z_a-z.0-9",
		"a.",
		"x/" + strings.Repeat("m", remote.MaxSegmentLen),
		LongKey(remote.MaxKeyLenOf(s)),
		"d/e/f/g/h/i/j/k/l/m/n/o/p",
	} {
		data := []byte("value of " + key)
		if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
			hint := ""
			if errors.Is(err, remote.ErrInvalidKey) {
				hint = " (a store that puts a prefix before its keys must implement remote.KeyPrefixer)"
			}
			t.Fatalf("Put(%.60q) of a %d-byte key: %v%s", key, len(key), err, hint)
		}
		wantBytes(t, "Get "+head([]byte(key)), get(t, s, key, 0, -1), data)
	}
	if got := len(keys(t, s, "")); got != 6 {
		t.Errorf("List: got %d keys, want 6", got)
	}
}

func testOverwrite(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	key := "o/k"
	first, second := Data(1, 5000), Data(2, 300)
	put(t, s, key, first)
	info1, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, key, second)
	wantBytes(t, "Get after overwrite", get(t, s, key, 0, -1), second)
	info2, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if info2.Size != int64(len(second)) {
		t.Errorf("Stat size after overwrite: got %d, want %d", info2.Size, len(second))
	}
	if info2.ETag == info1.ETag {
		t.Errorf("ETag after overwrite with other bytes: got %q, want a change from %q", info2.ETag, info1.ETag)
	}
	wantKeys(t, "List", keys(t, s, ""), []string{key})
}

func testGetRange(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	const size = 1000
	data := Data(3, size)
	put(t, s, "r", data)
	for _, tt := range []struct {
		offset, length int64
		want           []byte // nil: error wanted
	}{
		{0, -1, data},
		{0, size, data},
		{0, 1, data[:1]},
		{10, 20, data[10:30]},
		{10, -1, data[10:]},
		{size - 1, -1, data[size-1:]},
		{size - 5, 100, data[size-5:]},      // clipped
		{0, 1 << 40, data},                  // clipped
		{size, -1, []byte{}},                // at the end: empty
		{size, 10, []byte{}},                // at the end: empty
		{7, 0, []byte{}},                    // zero length
		{size + 1, -1, nil},                 // beyond the end
		{size + 1, 0, nil},                  // beyond the end
		{1 << 40, 10, nil},                  // far beyond
		{-1, 10, nil},                       // negative
		{-1, -1, nil},                       // negative
		{size - 1, 1, data[size-1:]},        // last byte
		{size / 2, size / 2, data[size/2:]}, // exactly to the end
	} {
		t.Run(fmt.Sprintf("%d,%d", tt.offset, tt.length), func(t *testing.T) {
			got, err := read(t.Context(), s, "r", tt.offset, tt.length)
			if tt.want == nil {
				if !errors.Is(err, remote.ErrInvalidRange) {
					t.Errorf("Get: got %d bytes, error %v; want an error wrapping ErrInvalidRange", len(got), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			wantBytes(t, "Get", got, tt.want)
		})
	}
}

func testGetRangeEmpty(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	put(t, s, "empty", nil)
	for _, tt := range []struct {
		offset, length int64
		wantErr        bool
	}{
		{0, -1, false}, {0, 0, false}, {0, 10, false}, {1, -1, true}, {-1, 0, true},
	} {
		got, err := read(t.Context(), s, "empty", tt.offset, tt.length)
		switch {
		case tt.wantErr && !errors.Is(err, remote.ErrInvalidRange):
			t.Errorf("Get(%d, %d) of a 0-byte object: got error %v, want ErrInvalidRange", tt.offset, tt.length, err)
		case !tt.wantErr && (err != nil || len(got) != 0):
			t.Errorf("Get(%d, %d) of a 0-byte object: got %d bytes, error %v; want 0 bytes", tt.offset, tt.length, len(got), err)
		}
	}
}

// clockSlack is how far a store's ModTime may be from the test's clock.
const clockSlack = 5 * time.Minute

func testStat(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	before := time.Now()
	put(t, s, "st/a", Data(4, 1234))
	after := time.Now()
	info, err := s.Stat(t.Context(), "st/a")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "st/a" || info.Size != 1234 {
		t.Errorf("Stat: got key %q size %d, want %q 1234", info.Key, info.Size, "st/a")
	}
	if info.ETag == "" {
		t.Errorf("Stat: got an empty ETag")
	}
	if info.ModTime.Before(before.Add(-clockSlack)) || info.ModTime.After(after.Add(clockSlack)) {
		t.Errorf("Stat: got ModTime %v, want within %v of [%v, %v]", info.ModTime, clockSlack, before, after)
	}
	again, err := s.Stat(t.Context(), "st/a")
	if err != nil {
		t.Fatal(err)
	}
	if again.Size != info.Size || again.ETag != info.ETag || !again.ModTime.Equal(info.ModTime) {
		t.Errorf("second Stat: got %+v, want %+v", again, info)
	}
}

func testNotFound(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	put(t, s, "nf/dir/obj", []byte("x"))
	for _, key := range []string{"missing", "nf/missing", "nf/dir", "nf", "nf/dir/ob", "nf/dir/obj/below", "nf/dir/obj2"} {
		if _, err := s.Stat(t.Context(), key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q): got error %v, want one wrapping fs.ErrNotExist", key, err)
		}
		for _, r := range [][2]int64{{0, -1}, {0, 10}, {5, -1}} {
			rc, err := s.Get(t.Context(), key, r[0], r[1])
			if err == nil {
				rc.Close()
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Get(%q, %d, %d): got error %v, want one wrapping fs.ErrNotExist", key, r[0], r[1], err)
			}
		}
	}
}

func testDelete(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	put(t, s, "del/a", []byte("a"))
	put(t, s, "del/b", []byte("b"))
	if err := s.Delete(t.Context(), "del/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(t.Context(), "del/a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after Delete: got error %v, want fs.ErrNotExist", err)
	}
	if _, err := read(t.Context(), s, "del/a", 0, -1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get after Delete: got error %v, want fs.ErrNotExist", err)
	}
	wantKeys(t, "List after Delete", keys(t, s, ""), []string{"del/b"})
	if err := s.Delete(t.Context(), "del/a"); err != nil {
		t.Errorf("second Delete: got %v, want nil", err)
	}
	put(t, s, "del/a", []byte("again"))
	wantBytes(t, "Get after Put of a deleted key", get(t, s, "del/a", 0, -1), []byte("again"))
}

func testDeleteMissing(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	put(t, s, "dm/dir/obj", []byte("x"))
	// "dm/dir" is a directory, not an object; "dm/dir/obj/x" lies below an object.
	for _, key := range []string{"never", "dm/never", "dm/dir", "dm", "dm/dir/obj/x", "other/dir/k"} {
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete(%q) of a missing key: got %v, want nil", key, err)
		}
	}
	wantKeys(t, "List", keys(t, s, ""), []string{"dm/dir/obj"})
}

func testDeleteLeavesNoDirs(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	put(t, s, "d1/d2/d3/k", []byte("x"))
	put(t, s, "d1/other", []byte("y"))
	if err := s.Delete(t.Context(), "d1/d2/d3/k"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		prefix string
		want   []string
	}{{"", []string{"d1"}}, {"d1/", nil}, {"d1/d2/", nil}} {
		dirs, err := s.ListDirs(t.Context(), tt.prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(dirs) != 0 || len(tt.want) != 0 {
			wantKeys(t, fmt.Sprintf("ListDirs(%q) after deleting the only key below d1/d2/", tt.prefix), dirs, tt.want)
		}
	}
	put(t, s, "d1/d2/d3/k", []byte("z"))
	wantBytes(t, "Get after re-Put", get(t, s, "d1/d2/d3/k", 0, -1), []byte("z"))
}

// listKeys are chosen so that a directory-by-directory walk gets the order
// wrong unless a directory "a" sorts as "a/": '-' and '.' sort before '/',
// '0' and letters after it.
var listKeys = []string{
	"A",
	"a-b",
	"a.b",
	"a/b",
	"a/c/d",
	"a/c/e",
	"a/c-d",
	"a0",
	"ab/x",
	"b",
	"manifests/h/ks/2026_10_31",
	"manifests/h/ks/2026_11_01",
	"manifests/h/ks/2026_11_02/COMMIT",
	"manifests/h/ks/2026_12_01",
	"manifests/h/ks2/2026_11_01",
	"z.z/y",
	"z/y",
}

func testList(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	shuffled := slices.Clone(listKeys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled {
		put(t, s, k, []byte(k))
	}
	sorted := slices.Clone(listKeys)
	slices.Sort(sorted)
	for _, prefix := range []string{
		"", "a", "a/", "a/c", "a/c/", "a-", "a.", "ab", "ab/", "b", "c", "zz/", "z", "z/", "z.",
		"manifests/", "manifests/h/ks", "manifests/h/ks/", "manifests/h/ks/2026_11", "manifests/h/ks/2026_11_02/",
		"manifests/h/ks/2027", "manifests/h/k",
	} {
		var want []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		wantKeys(t, fmt.Sprintf("List(%q)", prefix), keys(t, s, prefix), want)
	}
}

func testListInfo(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for i := range 5 {
		put(t, s, fmt.Sprintf("li/%d", i), Data(uint64(i), 100*i))
	}
	n := 0
	err := s.List(t.Context(), "li/", func(info remote.Info) error {
		n++
		st, err := s.Stat(t.Context(), info.Key)
		if err != nil {
			return err
		}
		// S3 lists times in milliseconds but HEAD gives whole seconds.
		if info.Size != st.Size || info.ETag != st.ETag || info.ModTime.Sub(st.ModTime).Abs() >= time.Second {
			t.Errorf("List gave %+v, Stat gives %+v; want the same size, ETag and ModTime", info, st)
		}
		return nil
	})
	if err != nil || n != 5 {
		t.Errorf("List: got %d keys, error %v; want 5 keys", n, err)
	}
}

func testListStop(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for _, k := range []string{"s/1", "s/2", "s/3/x", "s/4"} {
		put(t, s, k, nil)
	}
	var got []string
	err := s.List(t.Context(), "s/", func(info remote.Info) error {
		got = append(got, info.Key)
		if len(got) == 2 {
			return remote.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Errorf("List stopped with ErrStop: got error %v, want nil", err)
	}
	wantKeys(t, "List stopped after 2", got, []string{"s/1", "s/2"})
}

func testListError(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for _, k := range []string{"e/1", "e/2/x", "e/3"} {
		put(t, s, k, nil)
	}
	boom := errors.New("boom")
	calls := 0
	err := s.List(t.Context(), "", func(info remote.Info) error {
		calls++
		if info.Key == "e/2/x" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 2 {
		t.Errorf("List with a failing callback: got error %v after %d calls, want boom after 2", err, calls)
	}
}

func testListEmpty(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for _, prefix := range []string{"", "a", "a/", "a/b/c"} {
		if got := keys(t, s, prefix); len(got) != 0 {
			t.Errorf("List(%q) of an empty store: got %q, want none", prefix, got)
		}
		if prefix == "" || strings.HasSuffix(prefix, "/") {
			dirs, err := s.ListDirs(t.Context(), prefix)
			if err != nil || len(dirs) != 0 {
				t.Errorf("ListDirs(%q) of an empty store: got %q, %v; want none", prefix, dirs, err)
			}
		}
	}
}

// testListCallbackWrites checks that the callback may use the store.
func testListCallbackWrites(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for i := range 3 {
		put(t, s, fmt.Sprintf("src/%d", i), []byte{byte(i)})
	}
	err := s.List(t.Context(), "src/", func(info remote.Info) error {
		b, err := read(t.Context(), s, info.Key, 0, -1)
		if err != nil {
			return err
		}
		if err := s.Put(t.Context(), "dst/"+strings.TrimPrefix(info.Key, "src/"), bytes.NewReader(b), int64(len(b))); err != nil {
			return err
		}
		return s.Delete(t.Context(), info.Key)
	})
	if err != nil {
		t.Fatalf("List with a callback that moves keys: %v", err)
	}
	wantKeys(t, "List after moving", keys(t, s, ""), []string{"dst/0", "dst/1", "dst/2"})
}

func testListDirs(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for _, k := range []string{"d/x/1", "d/y/2", "d/y/3", "d/z", "d/x-y/4", "d/w/deep/er/5", "e/1", "f"} {
		put(t, s, k, nil)
	}
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"d", "e"}},
		{"d/", []string{"w", "x", "x-y", "y"}},
		{"d/w/", []string{"deep"}},
		{"d/x/", nil},
		{"e/", nil},
		{"nope/", nil},
		{"f/", nil},
	} {
		got, err := s.ListDirs(t.Context(), tt.prefix)
		if err != nil {
			t.Errorf("ListDirs(%q): %v", tt.prefix, err)
			continue
		}
		if len(got) != 0 || len(tt.want) != 0 {
			wantKeys(t, fmt.Sprintf("ListDirs(%q)", tt.prefix), got, tt.want)
		}
	}
	for _, prefix := range []string{"d", "d/x", "/", "d//"} {
		if _, err := s.ListDirs(t.Context(), prefix); !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("ListDirs(%q): got error %v, want one wrapping ErrInvalidKey", prefix, err)
		}
	}
}

// BadKeys are keys every store must reject with ErrInvalidKey.
var BadKeys = []string{
	"",
	"/",
	"/a",
	"a/",
	"a//b",
	".",
	"..",
	"../x",
	"a/../b",
	"a/./b",
	"a/..",
	".hidden",
	"a/.tmp-x",
	"a b",
	"a\tb",
	"a\nb",
	"a\x00b",
	"a\\b",
	"a+b",
	"a=b",
	"a:b",
	"a*b",
	"a?b",
	"a%2Fb",
	"ü",
	strings.Repeat("x", remote.MaxSegmentLen+1),
	"a/" + strings.Repeat("x", remote.MaxSegmentLen+1),
	strings.Repeat("abcd/", 205)[:remote.MaxKeyLen+1], // 1025 bytes
}

// testKeyTooLong checks that a key one byte longer than the store takes,
// counting the prefix a remote.KeyPrefixer puts before it, is refused by
// every method with one short line that gives the lengths, before anything
// is stored; and so is a List prefix that no key could start with.
func testKeyTooLong(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	ctx := t.Context()
	root := ""
	if p, ok := s.(remote.KeyPrefixer); ok {
		root = p.KeyPrefix()
	}
	key := LongKey(remote.MaxKeyLenOf(s) + 1)
	want := fmt.Sprintf("%d bytes, more than %d", len(key), remote.MaxKeyLen)
	if root != "" {
		want = fmt.Sprintf("%d bytes, %d with the store's key prefix", len(key), len(root)+len(key))
	}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("%s of a %d-byte key under the %d-byte prefix %.40q: got error %v, want one wrapping ErrInvalidKey",
				op, len(key), len(root), root, err)
			return
		}
		msg := err.Error()
		if !strings.Contains(msg, want) || !strings.Contains(msg, fmt.Sprintf("more than %d", remote.MaxKeyLen)) {
			t.Errorf("%s: got %q, want it to say %q and \"more than %d\"", op, msg, want, remote.MaxKeyLen)
		}
		if strings.Contains(msg, "\n") || len(msg) > 300 {
			t.Errorf("%s: error %q is not one short line", op, msg)
		}
	}
	check("Put", s.Put(ctx, key, strings.NewReader("x"), 1))
	if c, ok := s.(remote.Conditional); ok {
		_, err := c.PutIf(ctx, key, []byte("x"), "")
		check("PutIf", err)
	}
	rc, err := s.Get(ctx, key, 0, -1)
	if err == nil {
		rc.Close()
	}
	check("Get", err)
	_, err = s.Stat(ctx, key)
	check("Stat", err)
	check("Delete", s.Delete(ctx, key))
	check("List", s.List(ctx, key, func(remote.Info) error { return nil }))
	if got := keys(t, s, ""); len(got) != 0 {
		t.Errorf("List after writes of a key too long: got %d keys, want none", len(got))
	}
	dirs, err := s.ListDirs(ctx, "")
	if err != nil || len(dirs) != 0 {
		t.Errorf("ListDirs after writes of a key too long: got %.60q, %v; want none", dirs, err)
	}
}

func testInvalidKeys(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	ctx := t.Context()
	c, conditional := s.(remote.Conditional)
	for _, key := range BadKeys {
		name := head([]byte(key))
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, remote.ErrInvalidKey) {
				t.Errorf("%s(%q): got error %v, want one wrapping ErrInvalidKey", op, name, err)
			}
		}
		check("Put", s.Put(ctx, key, strings.NewReader("x"), 1))
		rc, err := s.Get(ctx, key, 0, -1)
		if err == nil {
			rc.Close()
		}
		check("Get", err)
		_, err = s.Stat(ctx, key)
		check("Stat", err)
		check("Delete", s.Delete(ctx, key))
		if conditional {
			_, err = c.PutIf(ctx, key, []byte("x"), "")
			check("PutIf", err)
		}
	}
	if got := keys(t, s, ""); len(got) != 0 {
		t.Errorf("List after writes of invalid keys: got %q, want none", got)
	}
	dirs, err := s.ListDirs(ctx, "")
	if err != nil || len(dirs) != 0 {
		t.Errorf("ListDirs after writes of invalid keys: got %q, %v; want none", dirs, err)
	}
}

func testInvalidPrefixes(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	for _, prefix := range []string{"/", "/a", "a//", "a//b", ".", ".x", "a/.", "a/.x/", "../", "a b", "a\\", "ü/"} {
		err := s.List(t.Context(), prefix, func(remote.Info) error { return nil })
		if !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("List(%q): got error %v, want one wrapping ErrInvalidKey", prefix, err)
		}
		if strings.HasSuffix(prefix, "/") {
			if _, err := s.ListDirs(t.Context(), prefix); !errors.Is(err, remote.ErrInvalidKey) {
				t.Errorf("ListDirs(%q): got error %v, want one wrapping ErrInvalidKey", prefix, err)
			}
		}
	}
}

// errReader yields n bytes, then fails.
type errReader struct {
	n   int
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

func testPutBadData(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	old := []byte("the old value")
	boom := errors.New("boom")
	for _, tt := range []struct {
		name string
		data func() io.Reader
		size int64
	}{
		{"short", func() io.Reader { return bytes.NewReader(make([]byte, 99)) }, 100},
		{"long", func() io.Reader { return bytes.NewReader(make([]byte, 101)) }, 100},
		{"empty-but-sized", func() io.Reader { return bytes.NewReader(nil) }, 1},
		{"reader-fails", func() io.Reader { return &errReader{n: 50 << 10, err: boom} }, 100 << 10},
		{"negative-size", func() io.Reader { return bytes.NewReader(nil) }, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			existing, fresh := "bad/"+tt.name, "bad/new-"+tt.name
			put(t, s, existing, old)
			if err := s.Put(t.Context(), existing, tt.data(), tt.size); err == nil {
				t.Errorf("Put over an existing key: got nil error, want one")
			}
			wantBytes(t, "Get after a failed overwrite", get(t, s, existing, 0, -1), old)
			if err := s.Put(t.Context(), fresh, tt.data(), tt.size); err == nil {
				t.Errorf("Put of a new key: got nil error, want one")
			}
			if _, err := s.Stat(t.Context(), fresh); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat after a failed Put of a new key: got %v, want fs.ErrNotExist", err)
			}
		})
	}
}

// cancelReader cancels its context after the first read.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 4096)])
	c.cancel()
	return n, err
}

func testCanceled(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	put(t, s, "c/existing", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	want := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: got error %v, want context.Canceled", op, err)
		}
	}
	want("Put", s.Put(ctx, "c/new", strings.NewReader("x"), 1))
	rc, err := s.Get(ctx, "c/existing", 0, -1)
	if err == nil {
		// A lazy body may fail on first read instead.
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	want("Get", err)
	_, err = s.Stat(ctx, "c/existing")
	want("Stat", err)
	want("List", s.List(ctx, "", func(remote.Info) error { return nil }))
	_, err = s.ListDirs(ctx, "")
	want("ListDirs", err)
	want("Delete", s.Delete(ctx, "c/existing"))
	if c, ok := s.(remote.Conditional); ok {
		_, err = c.PutIf(ctx, "c/new-if", []byte("x"), "")
		if !errors.Is(err, errors.ErrUnsupported) {
			want("PutIf", err)
		}
	}
	wantKeys(t, "List after cancelled calls", keys(t, s, ""), []string{"c/existing"})

	// Cancelled in the middle of the upload.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	data := Data(5, 1<<20)
	err = s.Put(ctx, "c/mid", &cancelReader{r: bytes.NewReader(data), cancel: cancel}, int64(len(data)))
	want("Put cancelled mid-upload", err)
	if _, err := s.Stat(t.Context(), "c/mid"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after a Put cancelled mid-upload: got %v, want fs.ErrNotExist", err)
	}

	// Cancelled while reading a body.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	put(t, s, "c/big", data)
	rc, err = s.Get(ctx, "c/big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); err == nil {
		t.Logf("a Get body read to the end after its context was cancelled (allowed: it may have been buffered)")
	}
}

func testConcurrentPuts(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	const workers, perWorker = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Workers share directories, so mkdir races too.
				key := fmt.Sprintf("cp/%d/%d-%d", i%3, w, i)
				data := Data(uint64(w*perWorker+i), 1000+i)
				if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put: %v", err)
	}
	got := keys(t, s, "cp/")
	if len(got) != workers*perWorker {
		t.Fatalf("List after concurrent Puts: got %d keys, want %d", len(got), workers*perWorker)
	}
	for w := range workers {
		for i := range perWorker {
			key := fmt.Sprintf("cp/%d/%d-%d", i%3, w, i)
			wantBytes(t, "Get "+key, get(t, s, key, 0, -1), Data(uint64(w*perWorker+i), 1000+i))
		}
	}
}

// testConcurrentPutDelete races Puts against Deletes that empty the same
// directories: a file store that removes empty directories must not lose a
// Put whose directory vanished under it.
func testConcurrentPutDelete(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	const workers, rounds = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*2)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("pd/shared/deep/%d-%d", w, i)
				if err := s.Put(t.Context(), key, strings.NewReader("x"), 1); err != nil {
					errs <- err
				}
				if err := s.Delete(t.Context(), key); err != nil {
					errs <- err
				}
			}
			key := fmt.Sprintf("pd/shared/deep/%d-final", w)
			if err := s.Put(t.Context(), key, strings.NewReader("y"), 1); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put and Delete: %v", err)
	}
	var want []string
	for w := range workers {
		want = append(want, fmt.Sprintf("pd/shared/deep/%d-final", w))
	}
	slices.Sort(want)
	wantKeys(t, "List after racing Puts and Deletes", keys(t, s, ""), want)
}

// testAtomicPut overwrites a key while readers check that they only ever see
// a whole version. Best effort: a store that writes in place fails it often,
// not always.
func testAtomicPut(t *testing.T, newStore func(*testing.T) remote.Store) {
	s := newStore(t)
	versions := [][]byte{bytes.Repeat([]byte{'a'}, 300<<10), bytes.Repeat([]byte{'b'}, 200<<10)}
	put(t, s, "atomic", versions[0])
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				b, err := read(ctx, s, "atomic", 0, -1)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("Get during overwrites: %v", err)
					return
				}
				if !bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1]) {
					t.Errorf("Get during overwrites: got %d bytes (%s), want a whole version", len(b), head(b))
					return
				}
			}
		})
	}
	for i := range 30 {
		v := versions[(i+1)%2]
		if err := s.Put(t.Context(), "atomic", bytes.NewReader(v), int64(len(v))); err != nil {
			t.Errorf("Put: %v", err)
		}
	}
	cancel()
	wg.Wait()
}
