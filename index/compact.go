package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// A writer keeps its host's index files few (design §1.4, "Compaction"):
// continuous backup writes one a commit, thousands a day, and every
// reader lists them and every backup probes each one's head. A file of
// fewer than compactFull entries is small; when the host has more than
// CompactAt small files that this writer knows of (those its Load read
// whole and those it wrote), Compact merges all but the CompactAt/2
// largest into new files, then deletes them. The merged files name
// exactly the packs the old ones named: compaction changes where the
// index says things, never what it says, so a purge or reader that meets
// an old file deleted under it loses nothing (it lists again, or judges
// the packs from their headers as orphans).
const (
	defaultCompactAt = 16
	compactFull      = splitEntries / 2
)

// CompactStats says what one Compact did.
type CompactStats struct {
	Merged  int // old index files deleted
	Written int // new index files
}

// Compact merges the host's small index files when there are more than
// CompactAt of them (see above). It writes the new files before it
// deletes any old one, and deletes only files whose every pack the new
// ones name. A file that is gone or damaged (a purge merged or rewrote it
// meanwhile, or repair-index will deal with it) stops this compaction
// with nothing deleted; the next one tries again.
func (w *Writer) Compact(ctx context.Context) (CompactStats, error) {
	var cs CompactStats
	if w.host == "" {
		return cs, nil
	}
	w.compactMu.Lock()
	defer w.compactMu.Unlock()
	at := w.compactAt
	if at <= 0 {
		at = defaultCompactAt
	}
	at = max(at, 2)
	type file struct {
		key string
		n   int
	}
	prefix := "index/" + w.host + "/"
	var small []file
	w.idx.mu.RLock()
	for k, n := range w.idx.entries {
		if strings.HasPrefix(k, prefix) && n < compactFull {
			small = append(small, file{k, n})
		}
	}
	w.idx.mu.RUnlock()
	if len(small) <= at {
		return cs, nil
	}
	slices.SortFunc(small, func(a, b file) int { return cmp.Or(cmp.Compare(a.n, b.n), strings.Compare(a.key, b.key)) })
	small = small[:len(small)-at/2]

	cache := openCache(w.cacheDir)
	if cache != nil {
		defer cache.Close()
	}
	seen := map[chunk.ID]bool{}
	var recs []PackRecord
	for _, f := range small {
		packs, _, err := readIndexFile(ctx, w.st, cache, remote.Info{Key: f.key, Size: fileSize(f.n)})
		if isNotExist(err) {
			w.forgetFile(f.key)
			return cs, nil
		}
		if errors.Is(err, ErrDamaged) {
			return cs, nil
		}
		if err != nil {
			return cs, fmt.Errorf("compact index files: %w", err)
		}
		for _, p := range packs {
			if !seen[p.ID] {
				seen[p.ID] = true
				recs = append(recs, p)
			}
		}
	}
	keys, err := w.writeIndex(ctx, recs)
	cs.Written = len(keys)
	if err != nil {
		return cs, fmt.Errorf("compact index files: %w", err)
	}
	for _, f := range small {
		if slices.Contains(keys, f.key) {
			continue
		}
		if err := w.st.Delete(ctx, f.key); err != nil && !isNotExist(err) {
			return cs, fmt.Errorf("compact index files: delete %s: %w", f.key, err)
		}
		w.forgetFile(f.key)
		removeCache(w.cacheDir, f.key)
		cs.Merged++
	}
	return cs, nil
}

// forgetFile drops an index file from those Compact counts (it stays
// loaded: its entries are in memory, and in the files that replaced it).
func (w *Writer) forgetFile(key string) {
	w.idx.mu.Lock()
	delete(w.idx.entries, key)
	w.idx.mu.Unlock()
}
