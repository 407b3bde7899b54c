package cassback

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/internal/cachefile"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/crypt"
	"github.com/cassback/cassback/remote/crypt/keyslot"
)

// Repo is an opened store: its config and the local cache folder. Each
// operation builds its own index of known chunks once its session is
// registered (docs/design.md §4.2).
type Repo struct {
	Store    remote.Store
	Config   index.Config
	CacheDir string // per-store cache folder; "" disables caching
	Log      *slog.Logger
	GC       gc.Options // timings of the garbage-collection protocol
	// Stats, if set, is updated as operations run (see Stats); nil
	// counts nothing.
	Stats *Stats

	// early is the index loaded at Open when the hole it closes is put
	// back for a test (hole.IndexBeforeSession).
	early *index.Index
	// configCache is the cache entry of the store's config, for a backup
	// that named its location (nil: none; configcache.go).
	configCache *configCache
	// spawn starts a background task (a session heartbeat, the purge
	// lease's keep-alive) and returns a function that stops it (cancels
	// its context) and waits for it to return; the simulator runs it as an
	// actor of its own.
	spawn func(ctx context.Context, name string, fn func(context.Context)) (stop func())
	// observe, when set, hears of every file record a backup makes, with
	// its session, and (f nil) of every Sync after which those records'
	// chunks are all durable: the simulator checks that what a live
	// session references is never deleted.
	observe func(session string, f *manifest.File)
	// inode, in the simulator, maps the inode numbers backups record to
	// the same numbers in every run of a schedule (its trees' IDs depend
	// on them).
	inode func(uint64) uint64
	// keys are an encrypted store's (nil: a plaintext store), master its
	// master key (for key add), raw the store beneath the sealing one.
	keys   *crypt.Keys
	master []byte
	raw    remote.Store
	// compactAt, if set, is how many small index files of its host a
	// writer lets be before it compacts them (index.WriterOptions).
	compactAt int
	// hideSizes makes the writers of a plaintext store pad and spread
	// their packs (index.WriterOptions Pad and Spread), as an encrypted
	// store's always do: the simulator sets it, so that its schedules run
	// those paths too.
	hideSizes bool
}

// goSpawn runs fn in a goroutine.
func goSpawn(ctx context.Context, _ string, fn func(context.Context)) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
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
	// ReadOnly skips the probe of conditional writes, which writes: for
	// commands that only read (list, show).
	ReadOnly bool
	// Location names the store (its URL or folder) for the config cache:
	// a backup then reads the config from the cache folder, and from the
	// store only when its session's listing does not vouch for the cached
	// copy (configcache.go). "" reads it from the store.
	Location string
	Log      *slog.Logger
	// Keys opens an encrypted store (its key slots), and with Create makes
	// a new store encrypted; nil opens plaintext stores only.
	Keys Keys
}

// Keys are the key sources an operator gave a command (a key file, a
// passphrase, a KMS key): KeySlots makes them from remote/crypt/keyslot's.
type Keys interface {
	// Unlock returns the master key of the store whose ID is given, from
	// one of its key slots in st that a source opens, passing over a slot
	// whose master check refuses (a slot left by a creator whose config
	// lost, or planted).
	Unlock(ctx context.Context, st remote.Store, storeID string, check func(master []byte) bool) (master []byte, err error)
	// Create writes a key slot of master for each source.
	Create(ctx context.Context, st remote.Store, storeID string, master []byte) error
}

// ExemptKeys are the keys an encrypted store keeps unsealed: the config,
// read before a key is known, and the key slots, which seal the master
// key themselves.
var ExemptKeys = []string{index.ConfigKey, keyslot.Prefix}

// ErrNeedKey reports an encrypted store opened without a key source.
var ErrNeedKey = errors.New("the store is encrypted: give its key with --key-file, CASSBACK_PASSPHRASE or --kms-key-id")

// ErrNotEncrypted reports a key source given for a plaintext store.
var ErrNotEncrypted = errors.New("a key was given but the store is not encrypted (it was created without one)")

// Open reads the store's config, creating it with o.Create. A new store's
// config records whether the store honours conditional writes, probed once
// then; every process after follows that record.
func Open(ctx context.Context, st remote.Store, o Options) (*Repo, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cc *configCache
	var cfg index.Config
	var err error
	cached, created := false, false
	if o.Location != "" && o.CacheRoot != "" {
		cc, cfg, cached = openConfigCache(o.CacheRoot, o.Location)
	}
	if !cached {
		cfg, err = index.LoadConfig(ctx, st)
		if errors.Is(err, index.ErrNotStore) && o.Create {
			cfg, err = create(ctx, st, o.Keys, log)
			created = true
		}
		if err != nil {
			return nil, err
		}
	}
	r := &Repo{Store: st, Config: cfg, Log: log, spawn: goSpawn, configCache: cc}
	if err := r.unlock(ctx, o.Keys); err != nil {
		return nil, err
	}
	if created && r.Config.Conditional {
		if err := gc.InitGeneration(ctx, r.Store); err != nil {
			return nil, err
		}
	}
	if o.CacheRoot != "" {
		r.CacheDir = filepath.Join(o.CacheRoot, cfg.ID)
		tightened, err := makeCacheDir(o.CacheRoot, cfg.ID)
		if err != nil {
			log.Warn("cache folder unusable; continuing without it", "dir", r.CacheDir, "err", err)
			r.CacheDir = ""
		}
		for dir, was := range tightened {
			log.Warn("cache folder was open to other users; made private (0700)", "dir", dir, "mode", was)
		}
	}
	r.GC.NoConditional = !cfg.Conditional
	if hole.On(hole.IndexBeforeSession) {
		if r.early, err = r.loadIndex(ctx); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// unlock opens an encrypted store with keys: its master key from a key
// slot, checked against the config, its config's secrets; from then on
// r.Store seals and opens every object but ExemptKeys.
func (r *Repo) unlock(ctx context.Context, keys Keys) error {
	switch {
	case !r.Config.Encrypted() && keys != nil:
		return ErrNotEncrypted
	case !r.Config.Encrypted():
		return nil
	case keys == nil:
		return fmt.Errorf("store %s: %w", r.Config.ID, ErrNeedKey)
	}
	// The first slot whose master key opens the config's secrets wins;
	// check keeps what it opened.
	var k *crypt.Keys
	var cfg index.Config
	check := func(m []byte) bool {
		mk, err := crypt.NewKeys(m)
		if err != nil {
			return false
		}
		c := r.Config
		if c.Unlock(mk) != nil {
			return false
		}
		k, cfg = mk, c
		return true
	}
	master, err := keys.Unlock(ctx, r.Store, r.Config.ID, check)
	if err != nil {
		return err
	}
	if k == nil { // a Keys that does not check: say why the master fails
		if k, err = crypt.NewKeys(master); err != nil {
			return err
		}
		cfg = r.Config
		if err := cfg.Unlock(k); err != nil {
			return err
		}
	}
	r.Config = cfg
	r.keys, r.master, r.raw = k, master, r.Store
	r.Config.Chunker.Namer = chunk.KeyedNamer(k.ChunkIDKey())
	r.Store = crypt.NewStore(r.Store, k, ExemptKeys...)
	return nil
}

// Encrypted reports whether the store is encrypted.
func (r *Repo) Encrypted() bool { return r.Config.Encrypted() }

// create initialises a store, recording whether it honours conditional
// writes, encrypted when keys are given. Of two nodes creating one store
// at once, one config wins and both use it.
func create(ctx context.Context, st remote.Store, keys Keys, log *slog.Logger) (index.Config, error) {
	fresh, err := index.NewConfig()
	if err != nil {
		return index.Config{}, err
	}
	if fresh.Conditional, err = gc.ProbeConditional(ctx, st); err != nil {
		return index.Config{}, err
	}
	if !fresh.Conditional {
		log.Warn("the store has no conditional writes: purge will need --exclusive (see cassback check-store)")
	}
	if keys != nil {
		// The key slots first: a config whose master key no slot holds
		// would make the store unusable for good.
		master := make([]byte, 32)
		if _, err := rand.Read(master); err != nil {
			return index.Config{}, err
		}
		defer clear(master)
		k, err := crypt.NewKeys(master)
		if err != nil {
			return index.Config{}, err
		}
		if err := fresh.Encrypt(k); err != nil {
			return index.Config{}, err
		}
		if err := keys.Create(ctx, st, fresh.ID, master); err != nil {
			return index.Config{}, fmt.Errorf("create key slot: %w", err)
		}
	}
	return index.Init(ctx, st, fresh)
}

// loadIndex builds an index of the chunks stored now, from the cache and
// the index files listed now.
func (r *Repo) loadIndex(ctx context.Context) (*index.Index, error) {
	idx := index.New()
	return r.loadIndexInto(ctx, idx)
}

// loadIndexInto adds to idx the index files listed now.
func (r *Repo) loadIndexInto(ctx context.Context, idx *index.Index) (*index.Index, error) {
	return r.loadWith(ctx, idx, idx.Load)
}

// loadWith adds to idx the index files load lists now (Index.Load or
// Index.LoadOwn), and logs those it could not read.
func (r *Repo) loadWith(ctx context.Context, idx *index.Index, load func(context.Context, remote.Store, string) (index.LoadStats, error)) (*index.Index, error) {
	ls, err := load(ctx, r.Store, r.CacheDir)
	if err != nil {
		return nil, err
	}
	for k, e := range ls.Damaged {
		r.Log.Warn("index file unreadable; its packs are indexed from their headers (run cassback repair-index)", "index", k, "err", e)
	}
	r.Log.Debug("index loaded", "chunks", idx.Len(), "packs", idx.Packs(), "fetched", ls.Fetched, "rebuilt", ls.Rebuilt)
	return idx, nil
}

// makeCacheDir makes the store's cache folder, named by the store's ID,
// below the cache root only: the ID comes from the store (Config.Validate
// has made it 32 hex digits; os.Root makes sure). Folders are made 0700,
// and the store's folder and configs/, when older versions made them
// wider, are made 0700 (returned with their modes before): what they hold
// is then for the owner only, whatever the modes inside. The cache root
// itself is made 0700 only when new: the user names it, and it may be a
// shared folder (--cache-dir /var/tmp) whose mode is not cassback's to
// change.
func makeCacheDir(cacheRoot, id string) (map[string]fs.FileMode, error) {
	if err := os.MkdirAll(cacheRoot, 0o700); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(cacheRoot)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if err := root.Mkdir(id, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	fi, err := root.Lstat(id)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a folder", filepath.Join(cacheRoot, id))
	}
	var tightened map[string]fs.FileMode
	for _, name := range []string{id, "configs"} {
		was, err := cachefile.Tighten(root, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(cacheRoot, name), err)
		}
		if was != 0 {
			if tightened == nil {
				tightened = map[string]fs.FileMode{}
			}
			tightened[filepath.Join(cacheRoot, name)] = was
		}
	}
	return tightened, nil
}

// journalPath is the local journal of the writer for host, in the cache
// folder; the Writer opens it below that folder only.
func (r *Repo) journalPath(host string) string {
	name := "journal-" + host
	if r.CacheDir == "" || filepath.Base(name) != name {
		return ""
	}
	return filepath.Join(r.CacheDir, name)
}

// IsNotStore reports the error Open gives for a folder or bucket that
// holds no cassback store.
func IsNotStore(err error) bool { return errors.Is(err, index.ErrNotStore) }

var errNoDataDir = fmt.Errorf("no data directory given")
