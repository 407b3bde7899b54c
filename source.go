package cassback

import (
	"context"
	"errors"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// lazySource reads manifest trees through an index of the store that it
// loads on first use (from cacheDir, when not empty), so that reading only
// manifest objects costs no index. With host set, it loads that host's
// index files whole and only the heads of the others' (index.Index.
// LoadOthersLazily), as a backup does: reading one host's manifests then
// costs memory for that host's chunks, not the fleet's.
type lazySource struct {
	st       remote.Store
	nm       chunk.Namer // the store's, to check the nodes
	cacheDir string
	host     string
	mu       sync.Mutex
	idx      *index.Index
}

func (s *lazySource) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	s.mu.Lock()
	if s.idx == nil {
		idx := index.New()
		if s.host != "" {
			idx.LoadOthersLazily(s.host)
		}
		if _, err := idx.Load(ctx, s.st, s.cacheDir); err != nil {
			s.mu.Unlock()
			return err
		}
		s.idx = idx
	}
	idx := s.idx
	s.mu.Unlock()
	src := index.Source{Store: s.st, Index: idx, Parallel: 1, Namer: s.nm}
	err := src.FetchChunks(ctx, ids, fn)
	if errors.Is(err, index.ErrMissing) {
		// A node in a pack no index file names (an index file was lost):
		// index the stored packs no index file names from their headers.
		if _, rerr := idx.RebuildOrphans(ctx, s.st); rerr != nil {
			return errors.Join(err, rerr)
		}
		err = src.FetchChunks(ctx, ids, fn)
	}
	return err
}

// Chunks returns a source of the store's chunks for reading manifests
// (manifest.Get), which loads the index the first time it is used.
func (r *Repo) Chunks() manifest.Chunks {
	return &lazySource{st: r.Store, nm: r.Config.Chunker.Namer, cacheDir: r.CacheDir}
}

// ChunksOf is Chunks for reading the manifests of host: its index files
// are loaded whole, the others' by their heads.
func (r *Repo) ChunksOf(host string) manifest.Chunks {
	return &lazySource{st: r.Store, nm: r.Config.Chunker.Namer, cacheDir: r.CacheDir, host: host}
}

// StoreManifest stores a manifest made outside a backup (by a tool or a
// test): the nodes of its trees in a pack named by a new index file, then
// its object, uncommitted. It names the nodes by the config st holds, so
// by plain BLAKE3: it is for unencrypted stores. Backups store theirs through their own writer
// and session.
func StoreManifest(ctx context.Context, st remote.Store, m *manifest.Manifest) error {
	_, err := storeManifest(ctx, st, m)
	return err
}

// CommitManifest stores a manifest made outside a backup, as
// StoreManifest does, and commits it alone: a commit marker of its own,
// naming session, written with no session object behind it (as a backup
// leaves its commit once it ends).
func CommitManifest(ctx context.Context, st remote.Store, m *manifest.Manifest, session string) error {
	h, err := storeManifest(ctx, st, m)
	if err != nil {
		return err
	}
	return manifest.PutCommit(ctx, st, m.Host, m.Time, []manifest.CommitEntry{{Keyspace: m.Keyspace, Hash: h}}, session)
}

// storeManifest is StoreManifest; it returns the hash of the manifest
// object, which a commit marker names.
func storeManifest(ctx context.Context, st remote.Store, m *manifest.Manifest) (manifest.Hash, error) {
	cfg, err := index.LoadConfig(ctx, st)
	if err != nil {
		return manifest.Hash{}, err
	}
	idx := index.New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		return manifest.Hash{}, err
	}
	obj, nodes, err := manifest.Encode(m, cfg.Chunker.Namer)
	if err != nil {
		return manifest.Hash{}, err
	}
	w, err := index.NewWriter(ctx, st, idx, cfg, index.WriterOptions{Host: m.Host})
	if err != nil {
		return manifest.Hash{}, err
	}
	p := w.NewPacker()
	for _, n := range nodes {
		if _, err := p.Add(ctx, n.ID, n.Data); err != nil {
			return manifest.Hash{}, err
		}
	}
	if err := w.Sync(ctx); err != nil {
		return manifest.Hash{}, err
	}
	return manifest.HashOf(obj), manifest.Put(ctx, st, m.Name, obj)
}

// ChunksOf returns a source of st's chunks for reading manifests, which
// loads the index, without a cache, the first time it is used. It checks
// nodes by plain BLAKE3: for an unencrypted store (an encrypted one's need
// its Repo's Chunks).
func ChunksOf(st remote.Store) manifest.Chunks { return &lazySource{st: st} }
