package gc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// A condemned set is stored as shards of at most shardPacks packs,
//
//	gc/condemned/<set>/<n>     {"format":1, "set":…, "shard":n, "packs":[…]}
//
// and a header written after every shard,
//
//	gc/condemned/<set>/set     {"format":1, "id":…, "shards":N, "packs":P, "bytes":B}
//
// A set exists only once its header does: a writer that lists the sets
// reads only those with a header, and all of their shards, so it never
// acknowledges a set it has read in part. A sweep that has decided which of
// a set's packs to delete writes that list first,
//
//	gc/condemned/<set>/doom    {"format":1, "set":…, "packs":[…]}   create-only
//
// and then deletes them: a later purge that finds a doom list finishes it
// and never keeps, resurrects or chooses as a keeper a pack on it, so a
// delete that lands late (a purger stopped before its DELETE was sent)
// can never remove a pack that a later sweep decided to keep. A sweep
// deletes the header first, then the shards and the doom list. At about 70 bytes of JSON per pack, a shard of 50,000
// packs (1.6 TiB of 32 MiB packs) is 3.5 MB.
const (
	condemnedFormat = 1
	shardPacks      = 50_000
	headerName      = "set"
	doomName        = "doom"
)

// CondemnedSet is a set of packs no manifest referenced when a purge
// marked, to be deleted by a later sweep once every session that could
// still reference them has acknowledged the set.
type CondemnedSet struct {
	ID    string
	Time  time.Time // store time the header was written
	Packs []chunk.ID
	Bytes int64
	// Doom lists the packs a sweep decided to delete, once it has; nil
	// before (Doomed reports whether there is a list).
	Doom   []chunk.ID
	Doomed bool
	shards int
}

type setDoom struct {
	Format int        `json:"format"`
	Set    string     `json:"set"`
	Packs  []chunk.ID `json:"packs"`
}

type setHeader struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	Shards int    `json:"shards"`
	Packs  int    `json:"packs"`
	Bytes  int64  `json:"bytes"`
}

type setShard struct {
	Format int        `json:"format"`
	Set    string     `json:"set"`
	Shard  int        `json:"shard"`
	Packs  []chunk.ID `json:"packs"`
}

func setPrefix(id string) string { return condemnedPrefix + id + "/" }

// ListCondemned returns the complete condemned sets whose IDs are not in
// skip (nil reads them all), and the IDs of every complete set present. A
// set whose header or a shard vanishes while it is read was swept
// meanwhile and is left out.
//
// A set whose objects do not decode (damaged, or planted) is left out: no
// writer excludes or acknowledges it, and no sweep deletes its packs; the
// next purge removes it (DamagedSets) and condemns its packs again if they
// are still dead.
func ListCondemned(ctx context.Context, st remote.Store, skip map[string]bool) ([]CondemnedSet, map[string]bool, error) {
	sets, present, _, err := listCondemned(ctx, st, skip)
	return sets, present, err
}

// listCondemned is ListCondemned that also returns the stamp of the sweep
// generation the same listing showed: "" if none, or if the listing showed
// any set's header. A set listed is being swept or may be: its sweep may
// advance the generation and delete packs after this listing (and the set
// vanish before it is read, and be left out), so the stamp listed with it
// vouches for nothing (generation_attack_test.go).
func listCondemned(ctx context.Context, st remote.Store, skip map[string]bool) ([]CondemnedSet, map[string]bool, string, error) {
	headers, _, gen, err := listSetKeys(ctx, st)
	if err != nil {
		return nil, nil, "", err
	}
	if len(headers) > 0 {
		gen = ""
	}
	present := map[string]bool{}
	var sets []CondemnedSet
	for _, h := range headers {
		id := setID(h.Key)
		present[id] = true
		if skip[id] {
			continue
		}
		s, err := readSet(ctx, st, id)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errDamagedSet) {
			delete(present, id)
			continue
		}
		if err != nil {
			return nil, nil, "", err
		}
		sets = append(sets, s)
	}
	return sets, present, gen, nil
}

// errDamagedSet marks a condemned set whose objects do not decode.
var errDamagedSet = errors.New("damaged condemned set")

// damagedSets returns the keys of every object of the condemned sets
// that do not decode.
func damagedSets(ctx context.Context, st remote.Store) ([]string, error) {
	headers, _, _, err := listSetKeys(ctx, st)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, h := range headers {
		id := setID(h.Key)
		if _, err := readSet(ctx, st, id); errors.Is(err, errDamagedSet) {
			err := st.List(ctx, setPrefix(id), func(i remote.Info) error { keys = append(keys, i.Key); return nil })
			if err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

// listSetKeys returns the header objects of the condemned sets, the
// shards of sets that have no header (debris of a sweep or of a purge that
// crashed while writing a set), and the stamp of the sweep generation.
func listSetKeys(ctx context.Context, st remote.Store) (headers []remote.Info, debris []string, gen string, err error) {
	byset := map[string][]string{}
	err = st.List(ctx, condemnedPrefix, func(i remote.Info) error {
		if i.Key == generationKey {
			gen = generationStamp(i)
			return nil
		}
		id := setID(i.Key)
		if strings.HasSuffix(i.Key, "/"+headerName) {
			headers = append(headers, i)
		} else {
			byset[id] = append(byset[id], i.Key)
		}
		return nil
	})
	if err != nil {
		return nil, nil, "", fmt.Errorf("list condemned sets: %w", err)
	}
	has := map[string]bool{}
	for _, h := range headers {
		has[setID(h.Key)] = true
	}
	for id, keys := range byset {
		if !has[id] {
			debris = append(debris, keys...)
		}
	}
	slices.Sort(debris)
	return headers, debris, gen, nil
}

func setID(key string) string {
	id, _, _ := strings.Cut(strings.TrimPrefix(key, condemnedPrefix), "/")
	return id
}

// readSet reads a set's header and every shard.
func readSet(ctx context.Context, st remote.Store, id string) (CondemnedSet, error) {
	damaged := func(what string, err error) error {
		return fmt.Errorf("condemned set %s: %s: %w (%w)", id, what, errDamagedSet, err)
	}
	var h setHeader
	info, err := getJSON(ctx, st, setPrefix(id)+headerName, &h)
	if isDecodeError(err) {
		return CondemnedSet{}, damaged("header", err)
	}
	if err != nil {
		return CondemnedSet{}, fmt.Errorf("read condemned set %s: %w", id, err)
	}
	if h.Format != condemnedFormat || h.ID != id || h.Shards < 0 || h.Packs < 0 {
		return CondemnedSet{}, damaged("header", fmt.Errorf("format %d", h.Format))
	}
	s := CondemnedSet{ID: id, Time: info.ModTime, Bytes: h.Bytes, shards: h.Shards}
	for n := range h.Shards {
		var sh setShard
		_, err := getJSON(ctx, st, setPrefix(id)+strconv.Itoa(n), &sh)
		if isDecodeError(err) {
			return CondemnedSet{}, damaged(fmt.Sprintf("shard %d", n), err)
		}
		if err != nil {
			return CondemnedSet{}, fmt.Errorf("read condemned set %s: %w", id, err)
		}
		if sh.Format != condemnedFormat || sh.Set != id || sh.Shard != n {
			return CondemnedSet{}, damaged(fmt.Sprintf("shard %d", n), errors.New("wrong set, shard or format"))
		}
		s.Packs = append(s.Packs, sh.Packs...)
	}
	if len(s.Packs) != h.Packs {
		return CondemnedSet{}, damaged("shards", fmt.Errorf("%d packs, its header says %d", len(s.Packs), h.Packs))
	}
	var d setDoom
	_, err = getJSON(ctx, st, setPrefix(id)+doomName, &d)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case isDecodeError(err):
		return CondemnedSet{}, damaged("doom list", err)
	case err != nil:
		return CondemnedSet{}, fmt.Errorf("read condemned set %s: %w", id, err)
	case d.Format != condemnedFormat || d.Set != id:
		return CondemnedSet{}, damaged("doom list", errors.New("wrong set or format"))
	default:
		s.Doom, s.Doomed = d.Packs, true
	}
	return s, nil
}

// doomedPacks returns the packs of every doom list, as a set.
func doomedPacks(sets []CondemnedSet) map[chunk.ID]bool {
	m := map[chunk.ID]bool{}
	for _, s := range sets {
		for _, p := range s.Doom {
			m[p] = true
		}
	}
	return m
}

// writeDoom records, create-only, which of a set's packs a sweep deletes.
// If a doom list is there already (another purge got this far), that one
// is returned and must be used.
func writeDoom(ctx context.Context, st remote.Store, s CondemnedSet, packs []chunk.ID, cas bool) ([]chunk.ID, error) {
	key := setPrefix(s.ID) + doomName
	b, _ := json.Marshal(setDoom{Format: condemnedFormat, Set: s.ID, Packs: packs})
	_, err := putIf(ctx, st, key, b, "", cas)
	if errors.Is(err, remote.ErrPrecondition) {
		var d setDoom
		if _, err := getJSON(ctx, st, key, &d); err != nil {
			return nil, fmt.Errorf("read doom list of condemned set %s: %w", s.ID, err)
		}
		if !slices.Equal(d.Packs, packs) {
			// Written since this sweep listed the sets, by another purge
			// from a mark of its own (one that lost its lease, or was
			// stopped past it, after its last renewal): this sweep chose
			// its keepers without forgetting those packs.
			return nil, fmt.Errorf("condemned set %s: %w", s.ID, ErrDoomRace)
		}
	} else if err != nil {
		return nil, fmt.Errorf("write doom list of condemned set %s: %w", s.ID, err)
	}
	return packs, nil
}

// ErrDoomRace is matched (errors.Is) by a sweep that found a condemned
// set's doom list written by another purge after it listed the sets: it
// deletes nothing, and the next purge forgets that list's packs before it
// chooses keepers.
var ErrDoomRace = errors.New("another purge wrote its doom list meanwhile")

// packsOf returns the packs of every set, as a set.
func packsOf(sets []CondemnedSet) map[chunk.ID]bool {
	m := map[chunk.ID]bool{}
	for _, s := range sets {
		for _, p := range s.Packs {
			m[p] = true
		}
	}
	return m
}

// writeCondemned writes a new condemned set: its shards, then its header.
// renew is called before each write (the purge lease).
func writeCondemned(ctx context.Context, st remote.Store, packs []chunk.ID, n int64, renew func(context.Context) error) (CondemnedSet, error) {
	s := CondemnedSet{ID: randomID(), Packs: packs, Bytes: n}
	put := func(key string, v any) error {
		if err := renew(ctx); err != nil {
			return err
		}
		b, _ := json.Marshal(v)
		if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			return fmt.Errorf("write condemned set %s: %w", s.ID, err)
		}
		return nil
	}
	for start := 0; start < len(packs); start += shardPacks {
		sh := setShard{Format: condemnedFormat, Set: s.ID, Shard: s.shards, Packs: packs[start:min(start+shardPacks, len(packs))]}
		if err := put(setPrefix(s.ID)+strconv.Itoa(s.shards), sh); err != nil {
			return s, err
		}
		s.shards++
	}
	hk := setPrefix(s.ID) + headerName
	if err := put(hk, setHeader{Format: condemnedFormat, ID: s.ID, Shards: s.shards, Packs: len(packs), Bytes: n}); err != nil {
		return s, err
	}
	info, err := st.Stat(ctx, hk)
	if err != nil {
		return s, fmt.Errorf("write condemned set %s: %w", s.ID, err)
	}
	s.Time = info.ModTime
	return s, nil
}

// deleteCondemned removes a swept set: its header first, so no one reads
// it in part, then its shards.
func deleteCondemned(ctx context.Context, st remote.Store, s CondemnedSet) error {
	keys := []string{setPrefix(s.ID) + headerName}
	for n := range s.shards {
		keys = append(keys, setPrefix(s.ID)+strconv.Itoa(n))
	}
	keys = append(keys, setPrefix(s.ID)+doomName)
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil {
			return fmt.Errorf("delete condemned set %s: %w", s.ID, err)
		}
	}
	return nil
}

// isDecodeError reports an object that was read but is not valid JSON of
// its kind (including a field's own check, such as a chunk ID's), or is too
// large to be one.
func isDecodeError(err error) bool {
	var de decodeError
	return errors.As(err, &de) || errors.Is(err, errTooLarge)
}
