package index

import (
	"slices"

	"github.com/cassback/cassback/chunk"
)

// Copies returns every location the index knows for the chunk outside
// excluded packs, in the order lookups prefer them: the copy Lookup
// returns first, then the others, copies in avoided packs last. A reader
// whose copy fails its check tries the next. In lazy mode the files whose
// filter may hold the chunk are read first (a bucket each), so other
// hosts' copies are among them.
func (x *Index) Copies(id chunk.ID) []Location {
	x.fault(nil, id)
	return x.copies(id)
}

func (x *Index) copies(id chunk.ID) []Location {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var first, last []Location
	seen := map[Location]bool{} // two index files may name one pack
	add := func(e entry) {
		l := Location{Pack: x.packs[e.pack].id, Off: e.off, Len: e.len}
		if x.excluded[e.pack] || seen[l] {
			return
		}
		seen[l] = true
		if x.avoided[e.pack] {
			last = append(last, l)
		} else {
			first = append(first, l)
		}
	}
	if e, ok := x.added[id]; ok {
		add(e)
	}
	i, _ := x.searchSorted(id)
	for ; i < len(x.sorted) && x.sorted[i].id == id; i++ {
		add(x.sorted[i])
	}
	for _, e := range x.found[id] {
		add(e)
	}
	return slices.Concat(first, last)
}
