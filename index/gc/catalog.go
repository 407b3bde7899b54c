package gc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// PackState is one pack as the index files and the store listing see it.
type PackState struct {
	ID        chunk.ID
	Size      int64        // from the index files (-1 if no index names it)
	Entries   []pack.Entry // from the first index file naming it
	IndexKeys []string     // index files naming it
	Stored    bool         // in the store listing
	StoreSize int64
	ModTime   time.Time // store time the pack was written
	// FromHeader says Entries were read from the pack's own header: no
	// index file names it (an orphan: a crash between a pack's upload and
	// its index file, or an index file lost or damaged).
	FromHeader bool
}

// Catalog is every index file and pack of the store, with every copy of
// every chunk: what validate and repair-index work from (a purge works
// from a ledger, ledger.go). Memory is about 44 bytes per chunk copy plus
// 150 bytes per pack.
type Catalog struct {
	Files    map[string][]chunk.ID // index key -> packs it names
	Packs    map[chunk.ID]*PackState
	BadIndex map[string]error // index files that could not be read or decoded
	Orphans  []chunk.ID       // stored packs no index file names
	Missing  []chunk.ID       // indexed packs not in the store
	// BadOrphans are orphans whose header could not be read: their chunks
	// are unknown (LoadCatalog with orphans).
	BadOrphans map[chunk.ID]error
}

// LoadCatalog lists and reads every index file and lists every pack. With
// orphans, it also reads the header of every stored pack no index file
// names (two ranged reads each), so that the chunks such a pack holds are
// known copies: a collector must never judge a pack whose content it does
// not know.
func LoadCatalog(ctx context.Context, st remote.Store, orphans bool) (*Catalog, error) {
	c := &Catalog{Files: map[string][]chunk.ID{}, Packs: map[chunk.ID]*PackState{}, BadIndex: map[string]error{}}
	// A file gone between the listing and its read was replaced (a
	// writer's compaction, a purge's merge or sweep): its replacement is
	// listed next time, so list again, up to three rounds, as Index.Load
	// does; else its packs would look like orphans.
	read := map[string]bool{}
	for range 3 {
		var keys []string
		if err := st.List(ctx, "index/", func(i remote.Info) error {
			if !read[i.Key] {
				keys = append(keys, i.Key)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("list index files: %w", err)
		}
		gone := 0
		for _, key := range keys {
			read[key] = true
			recs, err := index.ReadFile(ctx, st, key)
			if errors.Is(err, fs.ErrNotExist) {
				gone++
				continue
			}
			if errors.Is(err, index.ErrDamaged) {
				c.BadIndex[key] = err
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read index file %s: %w", key, err)
			}
			for _, r := range recs {
				c.Files[key] = append(c.Files[key], r.ID)
				p := c.Packs[r.ID]
				if p == nil {
					p = &PackState{ID: r.ID, Size: r.Size, Entries: r.Entries}
					c.Packs[r.ID] = p
				}
				p.IndexKeys = append(p.IndexKeys, key)
			}
		}
		if gone == 0 {
			break
		}
	}
	err := st.List(ctx, "packs/", func(i remote.Info) error {
		id, err := chunk.ParseID(i.Key[strings.LastIndexByte(i.Key, '/')+1:])
		if err != nil || pack.Key(id) != i.Key {
			return nil // not a pack of ours
		}
		p := c.Packs[id]
		if p == nil {
			p = &PackState{ID: id, Size: -1}
			c.Packs[id] = p
			c.Orphans = append(c.Orphans, id)
		}
		p.Stored, p.StoreSize, p.ModTime = true, i.Size, i.ModTime
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	for id, p := range c.Packs {
		if !p.Stored {
			c.Missing = append(c.Missing, id)
		}
	}
	slices.SortFunc(c.Missing, chunk.Compare)
	slices.SortFunc(c.Orphans, chunk.Compare)
	if orphans {
		if err := c.readOrphans(ctx, st); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// readOrphans reads the header of every orphan pack.
func (c *Catalog) readOrphans(ctx context.Context, st remote.Store) error {
	c.BadOrphans = map[chunk.ID]error{}
	for _, id := range c.Orphans {
		entries, size, err := pack.ReadHeader(ctx, st, pack.Key(id))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.Packs[id].Stored = false // deleted meanwhile
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil:
			c.BadOrphans[id] = err
		default:
			p := c.Packs[id]
			p.Entries, p.Size, p.FromHeader = entries, size, true
		}
	}
	return nil
}
