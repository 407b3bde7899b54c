package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
)

// refSum is the keyed BLAKE3-256 of data under key from a fresh hasher,
// or the plain one when key is nil.
func refSum(key *[32]byte, data ...[]byte) ID {
	h := blake3.New()
	if key != nil {
		var err error
		if h, err = blake3.NewKeyed(key[:]); err != nil {
			panic(err)
		}
	}
	for _, d := range data {
		h.Write(d)
	}
	var id ID
	h.Sum(id[:0])
	return id
}

var errPoolRead = errors.New("disk read failed")

// failingSplit splits data keyed by nm and makes it fail one of the ways
// a Split can, after the whole-file hasher has taken part of the data.
func failingSplit(ctx context.Context, data []byte, nm Namer, par int, how int) error {
	p := tinyParams
	p.Namer = nm
	failAt := int64(len(data)) * 2 / 3
	r := io.ReaderAt(bytes.NewReader(data))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fn func(Chunk) error
	switch how % 3 {
	case 0: // the data fails to read
		r = readerAt{r: r, hook: func(p []byte, off int64) (int, error, bool) {
			if off+int64(len(p)) > failAt {
				return 0, errPoolRead, true
			}
			return 0, nil, false
		}}
	case 1: // the callback fails
		fn = func(c Chunk) error {
			if c.Off >= failAt {
				return errPoolRead
			}
			return nil
		}
	case 2: // the backup is cancelled
		fn = func(c Chunk) error {
			if c.Off >= failAt {
				cancel()
			}
			return nil
		}
	}
	_, err := Split(ctx, r, int64(len(data)), p, par, fn)
	if err == nil {
		return fmt.Errorf("split failing (%d) at %d: no error", how%3, failAt)
	}
	return nil
}

// checkSplit splits data keyed by nm (plain for the zero Namer) and
// compares the file's sum and the chunks' IDs with fresh hashers'.
func checkSplit(ctx context.Context, data []byte, nm Namer, key *[32]byte, par int) error {
	p := tinyParams
	p.Namer = nm
	f, err := Split(ctx, bytes.NewReader(data), int64(len(data)), p, par, nil)
	if err != nil {
		return err
	}
	if want := refSum(key, data); f.Sum != want {
		return fmt.Errorf("split of %d bytes (par %d, %v): sum %s, want %s", len(data), par, nm, f.Sum, want)
	}
	off := 0
	for i, c := range f.Chunks {
		if want := refSum(key, data[off:off+int(c.Len)]); c.ID != want {
			return fmt.Errorf("split of %d bytes (par %d, %v): chunk %d: %s, want %s", len(data), par, nm, i, c.ID, want)
		}
		off += int(c.Len)
	}
	return nil
}

// TestAttackKeyedPoolAfterFailedSplit: a Split that fails (a read, the
// callback, a cancel) after its whole-file hasher took part of the file
// leaves that hasher to the pool; what takes it next (KeyedSum, a keyed
// Namer's hasher, the next Split) starts empty, under its own key. A
// Namer's hasher kept across other sums is its caller's alone.
func TestAttackKeyedPoolAfterFailedSplit(t *testing.T) {
	ctx := t.Context()
	k1 := DeriveKey("cassback test v1", []byte("pool one"))
	k2 := DeriveKey("cassback test v1", []byte("pool two"))
	keys := []*[32]byte{&k1, &k2, nil}
	data := randomBytes(21, 5*int(tinyParams.Segment)+333)
	small := data[:1000]
	for i := range 24 {
		key := keys[i%3]
		nm := Namer{}
		if key != nil {
			nm = KeyedNamer(*key)
		}
		par := 1 + i%4
		if err := failingSplit(ctx, data, nm, par, i/3); err != nil {
			t.Fatal(err)
		}
		// A hasher kept while the pool serves others.
		kept := nm.NewHasher()
		kept.Write(small[:10])
		// Right after the failure, under the same key, then the other.
		for _, k := range []*[32]byte{key, keys[(i+1)%3], key} {
			if k == nil {
				continue
			}
			if got, want := KeyedSum(k, small), refSum(k, small); got != want {
				t.Fatalf("round %d: KeyedSum after a failed Split: %s, want %s", i, got, want)
			}
			h := KeyedNamer(*k).NewHasher()
			h.Write(small[:500])
			h.Write(small[500:])
			if got, want := h.Sum(), refSum(k, small); got != want {
				t.Fatalf("round %d: keyed Namer's hasher after a failed Split: %s, want %s", i, got, want)
			}
		}
		if err := checkSplit(ctx, data[:3*tinyParams.Segment+1], nm, key, par); err != nil {
			t.Fatalf("round %d: after a failed split: %v", i, err)
		}
		if err := checkSplit(ctx, nil, nm, key, par); err != nil {
			t.Fatalf("round %d: after a failed split: %v", i, err)
		}
		kept.Write(small[10:])
		if got, want := kept.Sum(), refSum(key, small); got != want {
			t.Fatalf("round %d: a Namer's hasher kept across other sums: %s, want %s", i, got, want)
		}
	}
}

// TestAttackKeyedPoolConcurrent: Splits under two keys and plain, that
// succeed and that fail, KeyedSums and keyed Namers' hashers written a
// little at a time, all at once from several goroutines; every sum is a
// fresh hasher's.
func TestAttackKeyedPoolConcurrent(t *testing.T) {
	ctx := t.Context()
	k1 := DeriveKey("cassback test v1", []byte("pool one"))
	k2 := DeriveKey("cassback test v1", []byte("pool two"))
	keys := []*[32]byte{&k1, &k2, nil}
	datas := [][]byte{
		randomBytes(31, 1),
		randomBytes(32, int(tinyParams.Segment)-1),
		randomBytes(33, 3*int(tinyParams.Segment)+17),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 6 {
		wg.Go(func() {
			for i := range 12 {
				key := keys[(g+i)%3]
				nm := Namer{}
				if key != nil {
					nm = KeyedNamer(*key)
				}
				data := datas[(g*5+i)%len(datas)]
				var err error
				switch (g + i) % 4 {
				case 0:
					err = checkSplit(ctx, data, nm, key, 1+i%3)
				case 1:
					err = failingSplit(ctx, datas[2], nm, 1+i%3, i)
				case 2:
					if key != nil {
						if got, want := KeyedSum(key, data), refSum(key, data); got != want {
							err = fmt.Errorf("KeyedSum of %d bytes: %s, want %s", len(data), got, want)
						}
					}
				case 3:
					h := nm.NewHasher()
					for d := data; len(d) > 0; d = d[min(len(d), 4099):] {
						h.Write(d[:min(len(d), 4099)])
						_ = KeyedSum(&k1, d[:min(len(d), 10)]) // others take from the pool meanwhile
					}
					if got, want := h.Sum(), refSum(key, data); got != want {
						err = fmt.Errorf("Namer's hasher (%v) of %d bytes: %s, want %s", nm, len(data), got, want)
					}
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("goroutine %d, op %d: %w", g, i, err):
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
