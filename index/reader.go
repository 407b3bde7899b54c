package index

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// ErrCorrupt reports stored bytes whose BLAKE3 (keyed, on an encrypted
// store) does not match their ID.
var ErrCorrupt = errors.New("checksum mismatch")

// ErrMissing reports a chunk the index does not know.
var ErrMissing = errors.New("chunk not in the index")

// FetchOptions tunes Fetch. Zero values mean the defaults.
type FetchOptions struct {
	Parallel int   // concurrent ranged GETs; default 8
	MaxGap   int64 // merge two chunks of a pack into one GET if at most this many bytes lie between them; default 1 MiB
	MaxRange int64 // never merge a GET beyond this many bytes; default 64 MiB
	// Namer names chunks by their bytes, to check them: the store's
	// (Config.Chunker.Namer). The zero Namer is an unencrypted store's.
	Namer chunk.Namer
}

type fetchRange struct {
	pack   chunk.ID
	off    int64
	end    int64
	chunks []Location
	ids    []chunk.ID
}

// Fetch reads the given chunks from the store and calls fn once per distinct
// ID with its bytes, after checking them against the ID (opts.Namer). Chunks are grouped
// by pack and read with ranged GETs, nearby chunks merged into one GET, up to
// opts.Parallel GETs at once, so even the chunks of one huge file arrive in
// parallel. fn is called concurrently and data is valid only during the
// call. A chunk that cannot be read or is corrupt is reported to fn with a
// non-nil err (wrapping ErrMissing, ErrCorrupt or the store's error) and nil
// data; Fetch itself fails only when ctx ends or fn returns an error.
//
// A copy that fails is not the end: a pack that has gone from the store (a
// purge swept it after repacking its chunks elsewhere) is excluded from idx;
// a merged GET that fails is split into one GET per chunk, so one bad range
// does not fail its neighbours; and a chunk whose bytes fail their check, or
// whose own range cannot be read, is read from the next copy idx knows. Only
// when no copy is left is the chunk reported failed, with its last error.
func Fetch(ctx context.Context, st remote.Store, idx *Index, ids []chunk.ID, opts FetchOptions, fn func(id chunk.ID, data []byte, err error) error) error {
	f := &fetcher{idx: idx, tried: map[chunk.ID]map[chunk.ID]bool{}, alone: map[chunk.ID]bool{}, last: map[chunk.ID]error{}}
	for round := 0; ; round++ {
		var mu sync.Mutex
		gone := map[chunk.ID]bool{}
		var retry []chunk.ID
		err := fetch(ctx, st, f, ids, opts, func(id chunk.ID, data []byte, err error) error {
			if err != nil && round < maxRounds {
				mu.Lock()
				again := f.failed(id, err, gone)
				if again {
					retry = append(retry, id)
				}
				mu.Unlock()
				if again {
					return nil
				}
			}
			return fn(id, data, err)
		})
		if err != nil || len(retry) == 0 {
			return err
		}
		idx.Exclude(slices.Collect(maps.Keys(gone)))
		ids = retry
	}
}

// maxRounds bounds Fetch's retries: each round excludes a pack, isolates a
// chunk or rules out a copy, so a few suffice; a store changing under the
// reader could otherwise keep it busy.
const maxRounds = 16

// fetcher remembers, across Fetch's rounds, what failed for each chunk.
type fetcher struct {
	idx   *Index
	tried map[chunk.ID]map[chunk.ID]bool // chunk -> packs whose copy failed
	alone map[chunk.ID]bool              // chunks to read with a GET of their own
	last  map[chunk.ID]error             // chunk -> why its last copy failed
}

// failed records a failure of id's copy and reports whether to try again.
// Called with the round's lock held.
func (f *fetcher) failed(id chunk.ID, err error, gone map[chunk.ID]bool) bool {
	var pe *packGoneError
	var ce *copyError
	switch {
	case errors.As(err, &pe):
		gone[pe.pack] = true
		return true
	case !errors.As(err, &ce):
		return false // no copy was read (ErrMissing)
	case ce.shared && !f.alone[id]:
		f.alone[id] = true
		return true
	}
	if f.tried[id] == nil {
		f.tried[id] = map[chunk.ID]bool{}
	}
	f.tried[id][ce.pack] = true
	f.last[id] = err
	_, ok := f.pick(id)
	return ok
}

// pick returns the copy of id to read: the first idx offers whose pack has
// not failed for it.
func (f *fetcher) pick(id chunk.ID) (Location, bool) {
	for _, l := range f.idx.Copies(id) {
		if !f.tried[id][l.Pack] {
			return l, true
		}
	}
	return Location{}, false
}

// missing is the error for a chunk with no copy left to read.
func (f *fetcher) missing(id chunk.ID) error {
	if err := f.last[id]; err != nil {
		return err
	}
	return fmt.Errorf("chunk %s: %w", id, ErrMissing)
}

// packGoneError reports a chunk whose pack is not in the store.
type packGoneError struct {
	pack chunk.ID
	err  error
}

func (e *packGoneError) Error() string { return e.err.Error() }
func (e *packGoneError) Unwrap() error { return e.err }

// copyError reports a copy of a chunk that could not be read or failed its
// check. shared says the failure was of a GET that merged other chunks too,
// so it need not be this chunk's fault.
type copyError struct {
	pack   chunk.ID
	shared bool
	err    error
}

func (e *copyError) Error() string { return e.err.Error() }
func (e *copyError) Unwrap() error { return e.err }

func fetch(ctx context.Context, st remote.Store, f *fetcher, ids []chunk.ID, opts FetchOptions, fn func(id chunk.ID, data []byte, err error) error) error {
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.MaxGap <= 0 {
		opts.MaxGap = 1 << 20
	}
	if opts.MaxRange <= 0 {
		opts.MaxRange = 64 << 20
	}
	byPack := map[chunk.ID][]Location{}
	idOf := map[Location]chunk.ID{}
	seen := map[chunk.ID]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		loc, ok := f.pick(id)
		if !ok {
			if err := fn(id, nil, f.missing(id)); err != nil {
				return err
			}
			continue
		}
		byPack[loc.Pack] = append(byPack[loc.Pack], loc)
		idOf[loc] = id
	}
	var ranges []*fetchRange
	for pack, locs := range byPack {
		slices.SortFunc(locs, func(a, b Location) int { return int(a.Off) - int(b.Off) })
		var r *fetchRange
		for _, l := range locs {
			off, end := int64(l.Off), int64(l.Off)+int64(l.Len)
			if r == nil || off-r.end > opts.MaxGap || end-r.off > opts.MaxRange || f.alone[idOf[l]] || f.alone[r.ids[0]] {
				r = &fetchRange{pack: pack, off: off, end: end}
				ranges = append(ranges, r)
			}
			r.end = max(r.end, end)
			r.chunks = append(r.chunks, l)
			r.ids = append(r.ids, idOf[l])
		}
	}
	// Largest ranges first keeps the tail of a restore short; ties in
	// pack and offset order, so one run reads as another does (the
	// simulator replays a seed request for request).
	slices.SortFunc(ranges, func(a, b *fetchRange) int {
		if c := cmp.Compare(b.end-b.off, a.end-a.off); c != 0 {
			return c
		}
		if c := bytes.Compare(a.pack[:], b.pack[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.off, b.off)
	})

	g, gctx := errgroup.WithContext(ctx)
	work := make(chan *fetchRange)
	for range min(opts.Parallel, max(len(ranges), 1)) {
		g.Go(func() error {
			var buf []byte // reused: ranges are up to MaxRange bytes
			for r := range work {
				var err error
				if buf, err = fetchOne(gctx, st, r, opts.Namer, buf, fn); err != nil {
					return err
				}
			}
			return nil
		})
	}
send:
	for _, r := range ranges {
		select {
		case work <- r:
		case <-gctx.Done():
			break send
		}
	}
	close(work)
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// fetchOne reads one merged range and hands each chunk in it to fn.
func fetchOne(ctx context.Context, st remote.Store, r *fetchRange, nm chunk.Namer, buf []byte, fn func(chunk.ID, []byte, error) error) ([]byte, error) {
	key := pack.Key(r.pack)
	fail := func(from int, err error) error {
		for i := from; i < len(r.chunks); i++ {
			cerr := fmt.Errorf("chunk %s in pack %s: %w", r.ids[i], r.pack, err)
			var pe *packGoneError
			if errors.As(err, &pe) {
				cerr = &packGoneError{pack: pe.pack, err: cerr}
			} else {
				cerr = &copyError{pack: r.pack, shared: len(r.chunks) > 1, err: cerr}
			}
			if ferr := fn(r.ids[i], nil, cerr); ferr != nil {
				return ferr
			}
		}
		return nil
	}
	if ctx.Err() != nil {
		return buf, context.Cause(ctx)
	}
	rc, err := st.Get(ctx, key, r.off, r.end-r.off)
	if err != nil {
		if ctx.Err() != nil {
			return buf, context.Cause(ctx)
		}
		if isNotExist(err) {
			err = &packGoneError{pack: r.pack, err: err}
		}
		return buf, fail(0, err)
	}
	defer rc.Close()
	pos := r.off
	for i, l := range r.chunks {
		if gap := int64(l.Off) - pos; gap > 0 {
			if _, err := io.CopyN(io.Discard, rc, gap); err != nil {
				return buf, fail(i, fmt.Errorf("read: %w", err))
			}
			pos += gap
		}
		if cap(buf) < int(l.Len) {
			buf = make([]byte, l.Len)
		}
		b := buf[:l.Len]
		if _, err := io.ReadFull(rc, b); err != nil {
			if ctx.Err() != nil {
				return buf, context.Cause(ctx)
			}
			return buf, fail(i, fmt.Errorf("read: %w", err))
		}
		pos += int64(l.Len)
		var cerr error
		if nm.Sum(b) != r.ids[i] {
			b, cerr = nil, &copyError{pack: r.pack, err: fmt.Errorf("chunk %s in pack %s: %w", r.ids[i], r.pack, ErrCorrupt)}
		}
		if err := fn(r.ids[i], b, cerr); err != nil {
			return buf, err
		}
	}
	return buf, nil
}
