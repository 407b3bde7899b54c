package index

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"os"
	"slices"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// A writer keeps its host's index files few (design §1.4, "Compaction"):
// continuous backup writes one a commit, thousands a day, and every
// reader lists them and every backup probes each one's head. A file of
// fewer than compactFull entries is small, and in tier ⌊log₄ entries⌋ (as
// Cassandra's size-tiered compaction sorts SSTables). When the host has
// more than CompactAt small files that this writer knows of (those its
// Load read whole and those it wrote), Compact merges each tier that holds
// four of them or more into new files, lowest tier first, then deletes
// them (in one request where the store deletes many at once): at most 3
// small files a tier stay, 27 in all, and an entry is rewritten once a
// tier it climbs. The merged files name exactly the
// packs the old ones named: compaction changes where the index says
// things, never what it says, so a purge or reader that meets an old file
// deleted under it loses nothing (it lists again, or judges the packs
// from their headers as orphans).
const (
	defaultCompactAt = 16
	compactFanIn     = 4
	compactFull      = splitEntries / 2
)

// CompactStats says what one Compact did.
type CompactStats struct {
	Merged  int // old index files deleted
	Written int // new index files
}

// compactFile is a small index file of the writer's host.
type compactFile struct {
	key string
	n   int // entries
}

// tier is the file's size tier: ⌊log₄ n⌋.
func (f compactFile) tier() int { return (bits.Len(uint(max(f.n, 1))) - 1) / 2 }

// Compact merges the host's small index files by tier when there are
// more than CompactAt of them (see above). It writes a tier's new files
// before it deletes any of the tier's old ones, and deletes only files
// whose every pack the new ones name. A file that is gone or damaged (a
// purge merged or rewrote it meanwhile, or repair-index will deal with
// it) stops the compaction with its tier's files left; the next one tries
// again.
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
	fanIn := min(compactFanIn, at)
	small := w.smallFiles()
	if len(small) <= at {
		return cs, nil
	}
	cache := openCache(w.cacheDir)
	if cache != nil {
		defer cache.Close()
	}
	for {
		group := lowestFullTier(small, fanIn)
		if group == nil {
			return cs, nil
		}
		done, err := w.mergeFiles(ctx, cache, group, &cs)
		if err != nil || !done {
			return cs, err
		}
		small = w.smallFiles()
	}
}

// smallFiles returns the small index files of the writer's host it knows
// of, by key.
func (w *Writer) smallFiles() []compactFile {
	prefix := "index/" + w.host + "/"
	var small []compactFile
	w.idx.mu.RLock()
	for k, n := range w.idx.entries {
		if strings.HasPrefix(k, prefix) && n < compactFull {
			small = append(small, compactFile{k, n})
		}
	}
	w.idx.mu.RUnlock()
	slices.SortFunc(small, func(a, b compactFile) int { return strings.Compare(a.key, b.key) })
	return small
}

// lowestFullTier returns the files of the lowest tier that holds fanIn
// files or more, or nil.
func lowestFullTier(small []compactFile, fanIn int) []compactFile {
	byTier := map[int][]compactFile{}
	for _, f := range small {
		byTier[f.tier()] = append(byTier[f.tier()], f)
	}
	for _, t := range slices.Sorted(maps.Keys(byTier)) {
		if len(byTier[t]) >= fanIn {
			return byTier[t]
		}
	}
	return nil
}

// mergeFiles writes the packs of files as new index files, then deletes
// files. It returns false, having deleted nothing, if one of them is gone
// or damaged (it is no longer counted: the next compaction goes on
// without it).
//
// What it merges must name no pack a purge has swept: a merged file
// written after a sweep's fresh mark is not one the sweep rewrites, so a
// swept pack it named would stay in the index for good (and a check that
// trusts the index, such as continuous backup's recover, would take it
// for a stored copy). Two things keep swept packs out. A file no longer
// in the store is not merged, though the writer still holds it in its
// cache: the sweep rewrote it (or a purge or another process of the host
// merged it). And a file naming a pack this writer excludes (condemned:
// the writer learned of its set, which a sweep waits for; or found gone)
// is not merged: the sweep that may delete the pack rewrites that file
// itself. A writer whose session was revoked may still merge a file the
// sweep is rewriting (a late file, as W1's check covers).
func (w *Writer) mergeFiles(ctx context.Context, cache *os.Root, files []compactFile, cs *CompactStats) (bool, error) {
	read := make([][]PackRecord, 0, len(files))
	for _, f := range files {
		packs, _, err := readIndexFile(ctx, w.st, cache, remote.Info{Key: f.key, Size: fileSize(f.n)})
		if isNotExist(err) || errors.Is(err, ErrDamaged) {
			w.forgetFile(f.key)
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("compact index files: %w", err)
		}
		read = append(read, packs)
	}
	// The cache holds files the store may have lost since: list them.
	listed := map[string]bool{}
	if err := w.st.List(ctx, "index/"+w.host+"/", func(i remote.Info) error {
		listed[i.Key] = true
		return nil
	}); err != nil {
		return false, fmt.Errorf("compact index files: %w", err)
	}
	gone := false
	for _, f := range files {
		if !listed[f.key] {
			w.forgetFile(f.key)
			gone = true
		}
	}
	if gone {
		return false, nil
	}
	seen := map[chunk.ID]bool{}
	var recs []PackRecord
	var merged []compactFile
	for i, f := range files {
		if slices.ContainsFunc(read[i], func(p PackRecord) bool { return w.idx.Excluded(p.ID) }) {
			w.forgetFile(f.key) // left for the sweep (or found stale): not counted again
			continue
		}
		merged = append(merged, f)
		for _, p := range read[i] {
			if !seen[p.ID] {
				seen[p.ID] = true
				recs = append(recs, p)
			}
		}
	}
	if len(merged) < 2 {
		return true, nil // files forgotten: the caller looks at the tiers again
	}
	files = merged
	keys, err := w.writeIndex(ctx, recs)
	cs.Written += len(keys)
	if err != nil {
		return false, fmt.Errorf("compact index files: %w", err)
	}
	var old []string
	for _, f := range files {
		if !slices.Contains(keys, f.key) {
			old = append(old, f.key)
		}
	}
	if err := deleteKeys(ctx, w.st, old); err != nil {
		return false, fmt.Errorf("compact index files: %w", err)
	}
	for _, k := range old {
		w.forgetFile(k)
		removeCache(w.cacheDir, k)
	}
	cs.Merged += len(old)
	return true, nil
}

// deleteKeys deletes keys in one request where the store can (S3's
// DeleteObjects), else one by one; a key already gone is not an error.
func deleteKeys(ctx context.Context, st remote.Store, keys []string) error {
	if bd, ok := st.(interface {
		DeleteMany(context.Context, []string) error
	}); ok && len(keys) > 1 {
		return bd.DeleteMany(ctx, keys)
	}
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil && !isNotExist(err) {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	return nil
}

// forgetFile drops an index file from those Compact counts (it stays
// loaded: its entries are in memory, and in the files that replaced it).
func (w *Writer) forgetFile(key string) {
	w.idx.mu.Lock()
	delete(w.idx.entries, key)
	w.idx.mu.Unlock()
}
