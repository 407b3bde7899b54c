package gc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// CondemnedSet is a set of packs no manifest referenced when a purge
// marked, to be deleted by a later sweep once every session that could
// still reference them has acknowledged the set.
type CondemnedSet struct {
	ID    string     `json:"id"`
	Time  time.Time  `json:"time"` // store time the set was written
	Packs []chunk.ID `json:"packs"`
	Bytes int64      `json:"bytes"`
}

// ListCondemned returns the open condemned sets.
func ListCondemned(ctx context.Context, st remote.Store) ([]CondemnedSet, error) {
	var keys []remote.Info
	if err := st.List(ctx, condemnedPrefix, func(i remote.Info) error { keys = append(keys, i); return nil }); err != nil {
		return nil, fmt.Errorf("list condemned packs: %w", err)
	}
	var sets []CondemnedSet
	for _, k := range keys {
		var s CondemnedSet
		if _, err := getJSON(ctx, st, k.Key, &s); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // swept meanwhile
			}
			return nil, fmt.Errorf("read condemned set %s: %w", k.Key, err)
		}
		if s.Time.IsZero() {
			s.Time = k.ModTime
		}
		sets = append(sets, s)
	}
	return sets, nil
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

// writeCondemned writes a new condemned set. Its time is the store time
// of the write; it is recorded in the object by a second write.
func writeCondemned(ctx context.Context, st remote.Store, packs []chunk.ID, n int64) (CondemnedSet, error) {
	s := CondemnedSet{ID: randomID(), Packs: packs, Bytes: n}
	key := condemnedPrefix + s.ID
	b, _ := json.Marshal(s)
	if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return s, fmt.Errorf("write condemned set: %w", err)
	}
	info, err := st.Stat(ctx, key)
	if err != nil {
		return s, fmt.Errorf("write condemned set: %w", err)
	}
	s.Time = info.ModTime
	b, _ = json.Marshal(s)
	if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return s, fmt.Errorf("write condemned set: %w", err)
	}
	return s, nil
}

// deleteCondemned removes a swept set.
func deleteCondemned(ctx context.Context, st remote.Store, id string) error {
	if err := st.Delete(ctx, condemnedPrefix+id); err != nil {
		return fmt.Errorf("delete condemned set %s: %w", id, err)
	}
	return nil
}
