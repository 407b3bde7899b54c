package index

import (
	"context"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// Source fetches chunks through an Index: what a manifest's tree is read
// from (it implements manifest.Chunks). Every chunk is checked against its
// ID, and read from another copy when one fails.
type Source struct {
	Store remote.Store
	Index *Index
	// Parallel is how many ranged reads run at once; 0 means 8. A tree's
	// nodes lie together in few packs, and adjacent ones are read in one
	// request, so readers of manifests use 1.
	Parallel int
	// Namer checks the chunks read: the store's (Config.Chunker.Namer).
	Namer chunk.Namer
}

// FetchChunks calls fn with each chunk of ids, from any goroutine, and
// stops at the first chunk that cannot be read.
func (s Source) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(id chunk.ID, data []byte) error) error {
	return Fetch(ctx, s.Store, s.Index, ids, FetchOptions{Parallel: s.Parallel, Namer: s.Namer}, func(id chunk.ID, data []byte, err error) error {
		if err != nil {
			return err
		}
		return fn(id, data)
	})
}
