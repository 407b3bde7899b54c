package keyslot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/crypt/keyslot"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/s3/kmstest"
)

// The test secrets: TestNoSecretInErrors greps every error for them.
var (
	testMaster     = []byte("MASTER-KEY-0123456789abcdefghijk") // 32 bytes
	testPassphrase = "correct horse battery staple"
	testKeyFile    = []byte("KEY-FILE-BYTES-0123456789abcdefghijklmnop")
	wrongKeyFile   = []byte("WRONG-KEY-FILE-0123456789abcdefghijklmnop")
)

func newStore(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func keyFile(t *testing.T, b []byte) keyslot.Source {
	t.Helper()
	src, err := keyslot.KeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func passphrase(t *testing.T, p string) keyslot.Source {
	t.Helper()
	src, err := keyslot.Passphrase(p)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// listing returns every object of st with its bytes, to show that a
// failed operation wrote nothing.
func listing(t *testing.T, st remote.Store) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := st.List(t.Context(), "", func(info remote.Info) error {
		rc, err := st.Get(t.Context(), info.Key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		m[info.Key] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func add(t *testing.T, st remote.Store, storeID string, src keyslot.Source) keyslot.Slot {
	t.Helper()
	s, err := keyslot.Add(t.Context(), st, storeID, testMaster, src)
	if err != nil {
		t.Fatalf("Add %s: %v", src.Kind(), err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	kms := kmstest.Start(t).KMS(t, kmstest.KeyAlias)
	for _, tc := range []struct {
		name string
		src  keyslot.Source
	}{
		{"key-file", keyFile(t, testKeyFile)},
		{"passphrase", keyslot.CheapPassphrase(testPassphrase)},
		{"kms", keyslot.Wrapper(keyslot.KindKMS, kms.KeyID(), kms)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t)
			s := add(t, st, "store-1", tc.src)
			if s.Kind != tc.src.Kind() || len(s.ID) != 16 || s.Created.IsZero() {
				t.Errorf("Add = %+v", s)
			}
			for key, b := range listing(t, st) {
				if key != "keys/"+s.ID {
					t.Errorf("object %s, want only keys/%s", key, s.ID)
				}
				if strings.Contains(b, string(testMaster)) {
					t.Error("slot holds the master in clear")
				}
			}
			master, got, err := keyslot.Unlock(t.Context(), st, "store-1", tc.src)
			if err != nil {
				t.Fatalf("Unlock: %v", err)
			}
			if !bytes.Equal(master, testMaster) {
				t.Errorf("Unlock = %q, want %q", master, testMaster)
			}
			if got.ID != s.ID {
				t.Errorf("Unlock opened slot %s, want %s", got.ID, s.ID)
			}
			slots, err := keyslot.List(t.Context(), st)
			if err != nil || len(slots) != 1 || slots[0].ID != s.ID || slots[0].Kind != tc.src.Kind() {
				t.Fatalf("List = %v, %v; want [%v]", slots, err, s)
			}
			if tc.name == "kms" && slots[0].KMSKeyID != kmstest.KeyAlias {
				t.Errorf("KMSKeyID = %q, want %q", slots[0].KMSKeyID, kmstest.KeyAlias)
			}
		})
	}
}

// TestPassphraseDefaultCost adds a slot with the production Argon2id cost.
func TestPassphraseDefaultCost(t *testing.T) {
	st := newStore(t)
	src := passphrase(t, testPassphrase)
	s := add(t, st, "store-1", src)
	if s.Time != keyslot.DefaultTime || s.MemoryKiB != keyslot.DefaultMemory || s.Threads != keyslot.DefaultThreads {
		t.Errorf("cost t=%d m=%d p=%d, want %d %d %d", s.Time, s.MemoryKiB, s.Threads,
			keyslot.DefaultTime, keyslot.DefaultMemory, keyslot.DefaultThreads)
	}
	// TestGolden/passphrase unlocks a slot of the default cost.
}

func TestConstructors(t *testing.T) {
	if _, err := keyslot.KeyFile(make([]byte, 31)); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("KeyFile(31 bytes) = %v, want a one-line error", err)
	}
	if _, err := keyslot.KeyFile(make([]byte, 32)); err != nil {
		t.Errorf("KeyFile(32 bytes) = %v", err)
	}
	if _, err := keyslot.Passphrase(""); err == nil {
		t.Error("Passphrase(\"\") = nil error")
	}
	st := newStore(t)
	for _, tc := range []struct {
		name   string
		master []byte
		id     string
		src    keyslot.Source
	}{
		{"short master", testMaster[:16], "s", keyFile(t, testKeyFile)},
		{"no store id", testMaster, "", keyFile(t, testKeyFile)},
		{"no source", testMaster, "s", nil},
		{"unknown kind", testMaster, "s", keyslot.Wrapper("gcp-kms", "k", nil)},
		{"no kms client", testMaster, "s", keyslot.Wrapper(keyslot.KindKMS, "k", nil)},
		{"no kms key id", testMaster, "s", keyslot.Wrapper(keyslot.KindKMS, "", nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := keyslot.Add(t.Context(), st, tc.id, tc.master, tc.src); err == nil {
				t.Error("Add = nil error")
			}
		})
	}
	if l := listing(t, st); len(l) != 0 {
		t.Errorf("failed Adds wrote %v", l)
	}
}

// failedUnlock checks that Unlock fails with a one-line ErrNoKey error
// containing want, and writes nothing.
func failedUnlock(t *testing.T, st remote.Store, storeID, want string, srcs ...keyslot.Source) error {
	t.Helper()
	before := listing(t, st)
	master, _, err := keyslot.Unlock(t.Context(), st, storeID, srcs...)
	if !errors.Is(err, keyslot.ErrNoKey) {
		t.Fatalf("Unlock = %q, %v; want ErrNoKey", master, err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want) {
		t.Errorf("Unlock error %q: want one line containing %q", err, want)
	}
	if after := listing(t, st); !maps(before, after) {
		t.Errorf("Unlock changed the store: before %v, after %v", before, after)
	}
	return err
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestUnlockRefused(t *testing.T) {
	pass := keyslot.CheapPassphrase(testPassphrase)
	kf := keyFile(t, testKeyFile)

	t.Run("wrong keys", func(t *testing.T) {
		st := newStore(t)
		add(t, st, "store-1", pass)
		add(t, st, "store-1", kf)
		failedUnlock(t, st, "store-1",
			"no key slot of store store-1 opens with the given key (tried 2: ",
			keyslot.CheapPassphrase("wrong"), keyFile(t, wrongKeyFile))
	})
	t.Run("no matching kind", func(t *testing.T) {
		st := newStore(t)
		add(t, st, "store-1", pass)
		failedUnlock(t, st, "store-1", "(tried 0; other slots: passphrase)", kf)
	})
	t.Run("no key given", func(t *testing.T) {
		st := newStore(t)
		add(t, st, "store-1", pass)
		failedUnlock(t, st, "store-1", "no key given")
	})
	t.Run("no slot", func(t *testing.T) {
		failedUnlock(t, newStore(t), "store-1", "store store-1 has no key slot", kf)
	})
	t.Run("other store", func(t *testing.T) {
		st := newStore(t)
		add(t, st, "store-1", pass)
		add(t, st, "store-1", kf)
		failedUnlock(t, st, "store-2", "(tried 2: ", pass, kf)
	})
	t.Run("copied to another id", func(t *testing.T) {
		st := newStore(t)
		s := add(t, st, "store-1", kf)
		b := listing(t, st)["keys/"+s.ID]
		other := "0000000000000000"
		b = strings.Replace(b, s.ID, other, 1)
		if err := st.Put(t.Context(), "keys/"+other, strings.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(t.Context(), "keys/"+s.ID); err != nil {
			t.Fatal(err)
		}
		failedUnlock(t, st, "store-1", "(tried 1: key-file)", kf)
	})
	t.Run("tampered", func(t *testing.T) {
		// Flip each byte of the wrapped key, in turn, in a copy of the slot.
		st := newStore(t)
		s := add(t, st, "store-1", kf)
		key := "keys/" + s.ID
		orig := []byte(listing(t, st)[key])
		var rec map[string]any
		if err := json.Unmarshal(orig, &rec); err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			var wrapped []byte
			json.Unmarshal([]byte(`"`+rec["wrapped"].(string)+`"`), &wrapped)
			wrapped[i] ^= 0x40
			rec["wrapped"] = wrapped
			b, _ := json.Marshal(rec)
			if err := st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			failedUnlock(t, st, "store-1", "(tried 1: key-file)", kf)
			rec["wrapped"] = mustUnmarshal(t, orig)["wrapped"]
		}
		// A flipped salt derives another KEK.
		var salt []byte
		json.Unmarshal([]byte(`"`+rec["salt"].(string)+`"`), &salt)
		salt[0] ^= 1
		rec["salt"] = salt
		b, _ := json.Marshal(rec)
		st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b)))
		failedUnlock(t, st, "store-1", "(tried 1: key-file)", kf)
	})
	t.Run("tampered byte anywhere", func(t *testing.T) {
		// Flipping any one byte of the object: the slot no longer opens
		// (as unreadable, or as a slot the key does not open).
		st := newStore(t)
		s := add(t, st, "store-1", kf)
		key := "keys/" + s.ID
		orig := []byte(listing(t, st)[key])
		for i := range orig {
			b := bytes.Clone(orig)
			b[i] ^= 0x01
			if err := st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			master, _, err := keyslot.Unlock(t.Context(), st, "store-1", kf)
			if err == nil {
				// Only a change JSON ignores may leave the slot valid:
				// whitespace, or the case of a field name.
				if !bytes.Equal(master, testMaster) {
					t.Fatalf("byte %d flipped: Unlock = %q", i, master)
				}
				continue
			}
			if !errors.Is(err, keyslot.ErrNoKey) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("byte %d flipped: Unlock error %v, want a one-line ErrNoKey", i, err)
			}
		}
	})
}

func mustUnmarshal(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUnlockSkipsDamagedSlots(t *testing.T) {
	st := newStore(t)
	kf := keyFile(t, testKeyFile)
	for _, junk := range []string{"0000000000000000", "ffffffffffffffff"} {
		b := []byte(`{"format":1}`)
		st.Put(t.Context(), "keys/"+junk, bytes.NewReader(b), int64(len(b)))
	}
	s := add(t, st, "store-1", kf)
	master, got, err := keyslot.Unlock(t.Context(), st, "store-1", kf)
	if err != nil || !bytes.Equal(master, testMaster) || got.ID != s.ID {
		t.Fatalf("Unlock = %q, %v, %v", master, got, err)
	}
	failedUnlock(t, st, "store-1", "2 unreadable slot(s) skipped", keyslot.CheapPassphrase("x"))
	slots, err := keyslot.List(t.Context(), st)
	if err != nil || len(slots) != 3 {
		t.Fatalf("List = %v, %v", slots, err)
	}
	damaged := 0
	for _, s := range slots {
		if s.Err != nil {
			damaged++
			if !errors.Is(s.Err, keyslot.ErrFormat) {
				t.Errorf("slot %s: Err %v, want ErrFormat", s.ID, s.Err)
			}
		}
	}
	if damaged != 2 {
		t.Errorf("%d damaged slots listed, want 2", damaged)
	}
	// The damaged ones can go; the last readable one cannot.
	for _, id := range []string{"0000000000000000", "ffffffffffffffff"} {
		if err := keyslot.Remove(t.Context(), st, id); err != nil {
			t.Errorf("Remove damaged %s: %v", id, err)
		}
	}
	if err := keyslot.Remove(t.Context(), st, s.ID); !errors.Is(err, keyslot.ErrLastSlot) {
		t.Errorf("Remove last = %v, want ErrLastSlot", err)
	}
}

func TestUnlockTriesAtMostMaxSlots(t *testing.T) {
	st := newStore(t)
	for range keyslot.MaxSlots - 1 {
		add(t, st, "store-1", keyslot.CheapPassphrase("other"))
	}
	add(t, st, "store-1", keyFile(t, testKeyFile))
	if _, err := keyslot.Add(t.Context(), st, "store-1", testMaster, keyFile(t, testKeyFile)); err == nil {
		t.Fatal("Add beyond MaxSlots = nil error")
	}
	err := failedUnlock(t, st, "store-1", fmt.Sprintf("(tried %d: passphrase (%d); other slots: key-file)", keyslot.MaxSlots-1, keyslot.MaxSlots-1), keyslot.CheapPassphrase("x"))
	t.Log(err)
	if _, _, err := keyslot.Unlock(t.Context(), st, "store-1", keyslot.CheapPassphrase("x"), keyFile(t, testKeyFile)); err != nil {
		t.Fatalf("Unlock with the key file among 20 slots: %v", err)
	}
}

func TestHostileParams(t *testing.T) {
	st := newStore(t)
	s := add(t, st, "store-1", keyslot.CheapPassphrase(testPassphrase))
	key := "keys/" + s.ID
	orig := mustUnmarshal(t, []byte(listing(t, st)[key]))
	for _, tc := range []struct {
		field string
		value any
	}{
		{"m", 1<<20 + 1}, // more than 1 GiB
		{"m", uint64(1) << 40},
		{"t", 17},
		{"t", 0},
		{"p", 65},
		{"p", 0},
		{"m", 4}, // less than 8 per lane
		{"format", 2},
		{"kind", "rot13"},
		{"id", "0123"},
		{"created", "yesterday"},
		{"extra", 1},
		{"kms_key_id", "k"},
		{"salt", "AAAA"},
		{"wrapped", ""},
	} {
		t.Run(fmt.Sprintf("%s=%v", tc.field, tc.value), func(t *testing.T) {
			rec := map[string]any{}
			for k, v := range orig {
				rec[k] = v
			}
			rec[tc.field] = tc.value
			b, _ := json.Marshal(rec)
			if err := keyslot.Decode(b); !errors.Is(err, keyslot.ErrFormat) {
				t.Fatalf("Decode = %v, want ErrFormat", err)
			}
			st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b)))
			start := time.Now()
			failedUnlock(t, st, "store-1", "1 unreadable slot(s) skipped", keyslot.CheapPassphrase(testPassphrase))
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Unlock took %v", d)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		b := bytes.Repeat([]byte(" "), keyslot.MaxSlotSize+1)
		st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b)))
		failedUnlock(t, st, "store-1", "1 unreadable slot(s) skipped", keyslot.CheapPassphrase(testPassphrase))
	})
}

func TestRemove(t *testing.T) {
	st := newStore(t)
	kf := keyFile(t, testKeyFile)
	pass := keyslot.CheapPassphrase(testPassphrase)
	a := add(t, st, "store-1", kf)
	before := listing(t, st)
	err := keyslot.Remove(t.Context(), st, a.ID)
	if !errors.Is(err, keyslot.ErrLastSlot) {
		t.Fatalf("Remove of the last slot = %v, want ErrLastSlot", err)
	}
	if after := listing(t, st); !maps(before, after) {
		t.Errorf("refused Remove changed the store")
	}
	b := add(t, st, "store-1", pass)
	if err := keyslot.Remove(t.Context(), st, a.ID); err != nil {
		t.Fatalf("Remove one of two: %v", err)
	}
	failedUnlock(t, st, "store-1", "(tried 0; other slots: passphrase)", kf)
	if master, got, err := keyslot.Unlock(t.Context(), st, "store-1", pass); err != nil || got.ID != b.ID || !bytes.Equal(master, testMaster) {
		t.Fatalf("Unlock with the remaining slot = %q, %v, %v", master, got, err)
	}
	if err := keyslot.Remove(t.Context(), st, b.ID); !errors.Is(err, keyslot.ErrLastSlot) {
		t.Errorf("Remove of the new last slot = %v, want ErrLastSlot", err)
	}
	if err := keyslot.Remove(t.Context(), st, a.ID); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove of a removed slot = %v, want fs.ErrNotExist", err)
	}
	for _, id := range []string{"", "../x", "a/b", ".hidden"} {
		if err := keyslot.Remove(t.Context(), st, id); err == nil {
			t.Errorf("Remove(%q) = nil error", id)
		}
	}
}

// racingStore deletes every other slot right after Remove deletes its own,
// as a concurrent Remove of the other slots would.
type racingStore struct {
	*local.Store
	fired bool
}

func (r *racingStore) Delete(ctx context.Context, key string) error {
	if err := r.Store.Delete(ctx, key); err != nil {
		return err
	}
	if r.fired {
		return nil
	}
	r.fired = true
	var others []string
	r.Store.List(ctx, keyslot.Prefix, func(info remote.Info) error {
		others = append(others, info.Key)
		return nil
	})
	for _, k := range others {
		r.Store.Delete(ctx, k)
	}
	return nil
}

func TestRemoveRace(t *testing.T) {
	st := &racingStore{Store: newStore(t)}
	kf := keyFile(t, testKeyFile)
	a := add(t, st, "store-1", kf)
	add(t, st, "store-1", keyslot.CheapPassphrase(testPassphrase))
	err := keyslot.Remove(t.Context(), st, a.ID)
	if !errors.Is(err, keyslot.ErrLastSlot) || !strings.Contains(err.Error(), "written back") {
		t.Fatalf("Remove racing another = %v, want ErrLastSlot saying the slot was written back", err)
	}
	if master, got, err := keyslot.Unlock(t.Context(), st, "store-1", kf); err != nil || got.ID != a.ID || !bytes.Equal(master, testMaster) {
		t.Fatalf("Unlock after the race = %q, %v, %v", master, got, err)
	}
}

func TestKMSSlot(t *testing.T) {
	srv := kmstest.Start(t)
	kms := srv.KMS(t, kmstest.KeyAlias)
	src := keyslot.Wrapper(keyslot.KindKMS, kms.KeyID(), kms)
	st := newStore(t)
	s := add(t, st, "store-1", src)
	pass := keyslot.CheapPassphrase(testPassphrase)
	p := add(t, st, "store-1", pass)

	other := srv.KMS(t, kmstest.OtherKeyID)
	err := failedUnlock(t, st, "store-1", "(tried 1: kms; other slots: passphrase)", keyslot.Wrapper(keyslot.KindKMS, other.KeyID(), other))
	t.Log(err)
	err = failedUnlock(t, st, "store-2", "(tried 1: kms", src)
	t.Log(err)

	if err := keyslot.Remove(t.Context(), st, p.ID); err != nil {
		t.Fatalf("Remove passphrase slot: %v", err)
	}
	master, got, err := keyslot.Unlock(t.Context(), st, "store-1", pass, src)
	if err != nil || got.ID != s.ID || !bytes.Equal(master, testMaster) {
		t.Fatalf("Unlock = %q, %v, %v", master, got, err)
	}
	if err := keyslot.Remove(t.Context(), st, s.ID); !errors.Is(err, keyslot.ErrLastSlot) {
		t.Fatalf("Remove last kms slot = %v, want ErrLastSlot", err)
	}
	add(t, st, "store-1", pass)
	if err := keyslot.Remove(t.Context(), st, s.ID); err != nil {
		t.Fatalf("Remove kms slot: %v", err)
	}
	failedUnlock(t, st, "store-1", "(tried 0; other slots: passphrase)", src)
}

// TestNoSecretInErrors drives every error path it can reach and formats
// the errors, the sources and the slots with every verb, looking for the
// test secrets in any encoding.
func TestNoSecretInErrors(t *testing.T) {
	srv := kmstest.Start(t)
	kms := srv.KMS(t, kmstest.KeyAlias)
	kmsSrc := keyslot.Wrapper(keyslot.KindKMS, kms.KeyID(), kms)
	kf := keyFile(t, testKeyFile)
	pass := keyslot.CheapPassphrase(testPassphrase)
	realPass := passphrase(t, testPassphrase)
	var things []any
	note := func(v ...any) { things = append(things, v...) }

	st := newStore(t)
	for _, src := range []keyslot.Source{kf, pass, kmsSrc} {
		s, err := keyslot.Add(t.Context(), st, "store-1", testMaster, src)
		note(s, err)
	}
	for _, srcs := range [][]keyslot.Source{
		{keyFile(t, wrongKeyFile)}, {keyslot.CheapPassphrase("nope")}, {keyslot.Wrapper(keyslot.KindKMS, kmstest.OtherKeyID, srv.KMS(t, kmstest.OtherKeyID))},
		{kf, pass, kmsSrc}, nil,
	} {
		_, s, err := keyslot.Unlock(t.Context(), st, "store-1", srcs...)
		note(s, err)
		_, s, err = keyslot.Unlock(t.Context(), st, "store-2", srcs...)
		note(s, err)
	}
	slots, err := keyslot.List(t.Context(), st)
	note(err)
	for _, s := range slots {
		note(s, keyslot.Remove(t.Context(), st, s.ID))
	}
	_, err = keyslot.KeyFile(testKeyFile[:20])
	note(err)
	for _, c := range []struct {
		master []byte
		id     string
	}{{testMaster[:31], "s"}, {testMaster, ""}} {
		_, err = keyslot.Add(t.Context(), st, c.id, c.master, kf)
		note(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err = keyslot.Unlock(ctx, st, "store-1", kmsSrc)
	note(err)
	// Hostile slots.
	for _, b := range []string{`{`, `{"format":1,"id":"` + strings.Repeat("MASTER", 10) + `"}`, strings.Repeat("x", 70000)} {
		st.Put(t.Context(), "keys/0123456789abcdef", strings.NewReader(b), int64(len(b)))
		_, _, err = keyslot.Unlock(t.Context(), st, "store-1", kf)
		note(err)
	}
	note(kf, pass, realPass, kmsSrc, kms)

	secrets := [][]byte{testMaster, []byte(testPassphrase), testKeyFile}
	var forms []string
	for _, s := range secrets {
		forms = append(forms, string(s), fmt.Sprintf("%x", s), fmt.Sprintf("%X", s), fmt.Sprint([]byte(s)),
			strings.Trim(fmt.Sprint([]byte(s)), "[]"), b64(s))
	}
	n := 0
	for _, v := range things {
		if v == nil {
			continue
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			out := fmt.Sprintf(verb, v)
			n++
			for _, f := range forms {
				if strings.Contains(out, f) {
					t.Errorf("%T formatted with %s holds a secret: %s", v, verb, out)
				}
			}
		}
	}
	t.Logf("%d formatted values checked", n)
	// And the store never holds one in clear.
	for key, b := range listing(t, st) {
		for _, f := range forms {
			if strings.Contains(b, f) {
				t.Errorf("object %s holds a secret", key)
			}
		}
	}
}

func b64(b []byte) string {
	s, _ := json.Marshal(b)
	return strings.Trim(string(s), `"`)
}

func TestSlotObjectsAreCreateOnly(t *testing.T) {
	// Add on a store without Conditional still works (Put).
	st := plainStore{newStore(t)}
	s := add(t, st, "store-1", keyFile(t, testKeyFile))
	if _, _, err := keyslot.Unlock(t.Context(), st, "store-1", keyFile(t, testKeyFile)); err != nil {
		t.Fatalf("Unlock on a store without PutIf: %v (slot %v)", err, s)
	}
}

// plainStore hides local.Store's PutIf.
type plainStore struct{ remote.Store }
