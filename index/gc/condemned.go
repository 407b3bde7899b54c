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
// acknowledges a set it has read in part. A sweep deletes the header first,
// then the shards. At about 70 bytes of JSON per pack, a shard of 50,000
// packs (1.6 TiB of 32 MiB packs) is 3.5 MB.
const (
	condemnedFormat = 1
	shardPacks      = 50_000
	headerName      = "set"
)

// CondemnedSet is a set of packs no manifest referenced when a purge
// marked, to be deleted by a later sweep once every session that could
// still reference them has acknowledged the set.
type CondemnedSet struct {
	ID     string
	Time   time.Time // store time the header was written
	Packs  []chunk.ID
	Bytes  int64
	shards int
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
func ListCondemned(ctx context.Context, st remote.Store, skip map[string]bool) ([]CondemnedSet, map[string]bool, error) {
	headers, _, err := listSetKeys(ctx, st)
	if err != nil {
		return nil, nil, err
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
		if errors.Is(err, fs.ErrNotExist) {
			delete(present, id)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		sets = append(sets, s)
	}
	return sets, present, nil
}

// listSetKeys returns the header objects of the condemned sets, and the
// shards of sets that have no header: debris of a sweep or of a purge that
// crashed while writing a set.
func listSetKeys(ctx context.Context, st remote.Store) (headers []remote.Info, debris []string, err error) {
	byset := map[string][]string{}
	err = st.List(ctx, condemnedPrefix, func(i remote.Info) error {
		id := setID(i.Key)
		if strings.HasSuffix(i.Key, "/"+headerName) {
			headers = append(headers, i)
		} else {
			byset[id] = append(byset[id], i.Key)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list condemned sets: %w", err)
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
	return headers, debris, nil
}

func setID(key string) string {
	id, _, _ := strings.Cut(strings.TrimPrefix(key, condemnedPrefix), "/")
	return id
}

// readSet reads a set's header and every shard.
func readSet(ctx context.Context, st remote.Store, id string) (CondemnedSet, error) {
	var h setHeader
	info, err := getJSON(ctx, st, setPrefix(id)+headerName, &h)
	if err != nil {
		return CondemnedSet{}, fmt.Errorf("read condemned set %s: %w", id, err)
	}
	if h.Format != condemnedFormat || h.ID != id || h.Shards < 0 || h.Packs < 0 {
		return CondemnedSet{}, fmt.Errorf("condemned set %s: header does not decode (format %d)", id, h.Format)
	}
	s := CondemnedSet{ID: id, Time: info.ModTime, Bytes: h.Bytes, shards: h.Shards}
	for n := range h.Shards {
		var sh setShard
		if _, err := getJSON(ctx, st, setPrefix(id)+strconv.Itoa(n), &sh); err != nil {
			return CondemnedSet{}, fmt.Errorf("read condemned set %s: %w", id, err)
		}
		if sh.Format != condemnedFormat || sh.Set != id || sh.Shard != n {
			return CondemnedSet{}, fmt.Errorf("condemned set %s: shard %d does not decode", id, n)
		}
		s.Packs = append(s.Packs, sh.Packs...)
	}
	if len(s.Packs) != h.Packs {
		return CondemnedSet{}, fmt.Errorf("condemned set %s: %d packs in its shards, its header says %d", id, len(s.Packs), h.Packs)
	}
	return s, nil
}

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
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil {
			return fmt.Errorf("delete condemned set %s: %w", s.ID, err)
		}
	}
	return nil
}
