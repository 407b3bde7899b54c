package cassback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/remote"
)

// Repo is an opened store: its config, the index of known chunks and the
// local cache folder.
type Repo struct {
	Store    remote.Store
	Config   index.Config
	Index    *index.Index
	CacheDir string // per-store cache folder; "" disables caching
	Log      *slog.Logger
	GC       gc.Options // timings of the garbage-collection protocol
}

// Options configures Open. The zero value opens an existing store without
// a cache and without logging.
type Options struct {
	// CacheRoot is the user's cache folder; the store's cache lives in a
	// sub-folder named by the store's ID. "" disables the cache.
	CacheRoot string
	// Create initialises a store without a config (only backups create
	// stores).
	Create bool
	Log    *slog.Logger
}

// Open reads the store's config and loads its index.
func Open(ctx context.Context, st remote.Store, o Options) (*Repo, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cfg index.Config
	var err error
	if o.Create {
		var fresh index.Config
		if fresh, err = index.NewConfig(); err != nil {
			return nil, err
		}
		cfg, err = index.Init(ctx, st, fresh)
	} else {
		cfg, err = index.LoadConfig(ctx, st)
	}
	if err != nil {
		return nil, err
	}
	r := &Repo{Store: st, Config: cfg, Index: index.New(), Log: log}
	if o.CacheRoot != "" {
		r.CacheDir = filepath.Join(o.CacheRoot, cfg.ID)
		if err := os.MkdirAll(r.CacheDir, 0o755); err != nil {
			log.Warn("cache folder unusable; continuing without it", "dir", r.CacheDir, "err", err)
			r.CacheDir = ""
		}
	}
	n, err := r.Index.Load(ctx, st, r.CacheDir)
	if err != nil {
		return nil, err
	}
	log.Debug("index loaded", "chunks", r.Index.Len(), "packs", r.Index.Packs(), "fetched", n)
	return r, nil
}

// journalPath is the local journal of the writer for host.
func (r *Repo) journalPath(host string) string {
	if r.CacheDir == "" {
		return ""
	}
	return filepath.Join(r.CacheDir, "journal-"+host)
}

// IsNotStore reports the error Open gives for a folder or bucket that
// holds no cassback store.
func IsNotStore(err error) bool { return errors.Is(err, index.ErrNotStore) }

var errNoDataDir = fmt.Errorf("no data directory given")
