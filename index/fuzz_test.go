package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// fuzzGoldenPack returns the golden pack, its ID and its record, or nothing
// when the golden file is absent.
func fuzzGoldenPack(tb testing.TB) ([]byte, PackRecord, bool) {
	b, err := os.ReadFile("pack/testdata/pack-v2.golden")
	if err != nil {
		return nil, PackRecord{}, false
	}
	entries, err := pack.Parse(b, chunk.Namer{})
	if err != nil {
		tb.Fatal(err)
	}
	return b, PackRecord{ID: chunk.Sum(b), Size: int64(len(b)), Entries: entries}, true
}

// FuzzLoadConfig feeds LoadConfig a hostile config object: it must never
// panic, and a config it accepts must validate, name a cache folder that is
// one plain name, and load again identically after re-encoding.
func FuzzLoadConfig(f *testing.F) {
	good, err := NewConfig()
	if err != nil {
		f.Fatal(err)
	}
	b, _ := json.Marshal(good)
	f.Add(b)
	f.Add([]byte(`{"format":4,"id":"../../../../tmp/x","hash":"blake3-256","pack_size":33554432}`))
	f.Add([]byte(`{"format":4,"id":"0123456789abcdef0123456789abcdef","hash":"blake3-256","chunker":{},"pack_size":1e300}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := t.Context()
		st := remotetest.NewMemory()
		if err := st.Put(ctx, ConfigKey, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(ctx, st)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("LoadConfig accepted %q, which does not validate: %v", b, err)
		}
		if filepath.Base(c.ID) != c.ID || len(c.ID) != 32 {
			t.Fatalf("LoadConfig accepted id %q", c.ID)
		}
		again, _ := json.Marshal(c)
		if err := st.Put(ctx, ConfigKey, bytes.NewReader(again), int64(len(again))); err != nil {
			t.Fatal(err)
		}
		c2, err := LoadConfig(ctx, st)
		if err != nil || c2 != c {
			t.Fatalf("config %+v re-encoded as %s loads as %+v, %v", c, again, c2, err)
		}
	})
}

// FuzzReadIndexFile loads a hostile index file through the store, as
// Index.Load does: ReadFile must never panic, must refuse a file whose name
// is not its checksum, and must agree with DecodeFile.
func FuzzReadIndexFile(f *testing.F) {
	if b, err := os.ReadFile("testdata/index-v3.golden"); err == nil {
		f.Add(b, true)
	}
	if _, rec, ok := fuzzGoldenPack(f); ok {
		b, _ := EncodeFile([]PackRecord{rec})
		f.Add(b, true)
	}
	f.Add([]byte(idxMagic), false)
	f.Fuzz(func(t *testing.T, b []byte, named bool) {
		ctx := t.Context()
		st := remotetest.NewMemory()
		sum := chunk.Sum(b)
		if !named {
			sum[0] ^= 1
		}
		key := Key("h", sum)
		if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		packs, err := ReadFile(ctx, st, key)
		if err != nil {
			return
		}
		if !named {
			t.Fatalf("ReadFile accepted an index file under another checksum's name")
		}
		direct, err := DecodeFile(b)
		if err != nil || len(direct) != len(packs) {
			t.Fatalf("ReadFile gave %d packs, DecodeFile %d, %v", len(packs), len(direct), err)
		}
		for _, p := range packs {
			for _, e := range p.Entries {
				if int64(e.Off)+int64(e.Len) > p.Size {
					t.Fatalf("entry %+v beyond its pack of %d bytes", e, p.Size)
				}
			}
		}
	})
}

// FuzzJournal feeds a crashed writer's journal to NewWriter, which recovers
// it: a hostile or torn journal must never panic nor index a pack that is
// not in the store with its recorded size.
func FuzzJournal(f *testing.F) {
	packBytes, rec, ok := fuzzGoldenPack(f)
	if ok {
		b, _ := EncodeFile([]PackRecord{rec})
		j := append(binary.LittleEndian.AppendUint32(nil, uint32(len(b))), b...)
		f.Add(j)
		f.Add(append(bytes.Clone(j), j[:len(j)/2]...)) // a torn second record
		f.Add(append(binary.LittleEndian.AppendUint32(nil, 1<<31), j...))
	}
	f.Add([]byte{})
	// One folder for every input: t.TempDir per input makes minimizing
	// crawl (each run's folder is removed only when minimizing ends).
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, journal []byte) {
		ctx := context.Background()
		st := remotetest.NewMemory()
		if ok {
			if err := st.Put(ctx, pack.Key(rec.ID), bytes.NewReader(packBytes), int64(len(packBytes))); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "journal")
		if err := os.WriteFile(path, journal, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := Config{Format: StoreFormat, ID: "0123456789abcdef0123456789abcdef", Hash: "blake3-256",
			Chunker: chunk.DefaultParams(chunk.TestPol), PackSize: 1 << 20}
		idx := New()
		if _, err := NewWriter(ctx, st, idx, cfg, WriterOptions{Host: "h", Journal: path}); err != nil {
			return
		}
		// Whatever was recovered is in an index file of the store now;
		// every pack it names must be there, whole.
		var keys []string
		if err := st.List(ctx, "index/", func(i remote.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			packs, err := ReadFile(ctx, st, k)
			if err != nil {
				t.Fatalf("recovered index file %s: %v", k, err)
			}
			for _, p := range packs {
				if info, err := st.Stat(ctx, pack.Key(p.ID)); err != nil || info.Size != p.Size {
					t.Fatalf("recovered pack %s of %d bytes: %v (size %d)", p.ID, p.Size, err, info.Size)
				}
			}
		}
	})
}
