package cassback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/internal/cachefile"
)

// A backup with Options.Location skips the GET of the store's config when
// its cache vouches for it: the cache root keeps, per store location,
//
//	configs/<BLAKE3 of the location, hex>    <generation stamp>\n<config JSON>
//
// the config with the sweep generation's stamp listed after the config was
// last read from the store. A store's config is written once, when the
// store is created; a store created again at the location has a new
// generation object (a random nonce), so a session that lists the same
// stamp is in the store whose config this is. Until that listing, a
// backup does only what a config the store no longer has cannot harm: it
// registers its session and lists the condemned sets. Then checkConfig
// reads the config from the store unless the stamp matches, and a config
// that changed stops the backup (ErrConfigChanged).

// ErrConfigChanged reports a store whose config is not the one this node's
// cache held for its location: the store was created again there.
var ErrConfigChanged = errors.New("the store's config changed since this node cached it (the store was created again at this location?)")

// ErrConfigReplaced reports a store whose config has the ID of the one
// this node's cache holds for its location, but is not that config. A
// store created again has a new random ID, and a store's config is never
// rewritten: this one was replaced (for an encrypted store, by someone
// who could make a key slot the node's key source opens, docs/design.md
// §1.6). It is refused every time, and the cached config kept, until an
// operator who knows why removes the cache entry.
var ErrConfigReplaced = errors.New("the store's config has the ID of the one this node cached but is another: refusing a replaced store (docs/design.md §1.6)")

// configCache is the cache entry of the store's config (Options.Location).
type configCache struct {
	root   string // the cache root
	name   string // configs/<hash>
	stamp  string // the stamp it was saved with; "" when it vouches for nothing
	cached bool   // the Repo's config came from this entry, not the store
}

const maxConfigFile = 64 << 10

// openConfigCache returns the cache entry of location below cacheRoot,
// with the config it holds (ok false when none is usable).
func openConfigCache(cacheRoot, location string) (*configCache, index.Config, bool) {
	c := &configCache{root: cacheRoot, name: "configs/" + chunk.Sum([]byte(location)).String()}
	root := cachefile.Open(cacheRoot)
	if root == nil {
		return c, index.Config{}, false
	}
	defer root.Close()
	b, ok := cachefile.Read(root, c.name, maxConfigFile)
	if !ok {
		return c, index.Config{}, false
	}
	stamp, obj, ok := strings.Cut(string(b), "\n")
	if !ok {
		return c, index.Config{}, false
	}
	cfg, err := index.DecodeConfig([]byte(obj))
	// Only a config of a store with conditional writes: a copy that says
	// there are none (the cache folder written by another hand) would
	// have sessions renewed by plain writes, which a revocation does not
	// stop; and only such stores have a generation to vouch for it.
	if err != nil || !cfg.Conditional {
		return c, index.Config{}, false
	}
	c.stamp, c.cached = stamp, true
	return c, cfg, true
}

// save records cfg under stamp, best effort.
func (c *configCache) save(stamp string, cfg index.Config) {
	root := cachefile.Open(c.root)
	if root == nil {
		return
	}
	defer root.Close()
	b, _ := json.Marshal(cfg)
	cachefile.Write(root, c.name, append([]byte(stamp+"\n"), b...))
}

// drop removes the entry, best effort.
func (c *configCache) drop() {
	if root := cachefile.Open(c.root); root != nil {
		_ = root.Remove(c.name)
		root.Close()
	}
}

// checkConfig is called once a backup's session has listed the sweep
// generation (stamp gen): a config taken from the cache is read from the
// store unless gen is the stamp it was saved with, and must be the one in
// use; the entry is saved with gen, the config having been read from the
// store after that listing.
func (r *Repo) checkConfig(ctx context.Context, gen string) error {
	c := r.configCache
	switch {
	case c == nil:
		return nil
	case !c.cached:
		// Read from the store when the Repo opened, before this listing:
		// kept, vouching for nothing until a run reads it after one.
		c.save("", r.Config)
		return nil
	case gen != "" && gen == c.stamp:
		return nil
	}
	cfg, err := index.LoadConfig(ctx, r.Store)
	if errors.Is(err, index.ErrNotStore) {
		c.drop() // the next run finds no store, and may create one
		return fmt.Errorf("%w: it has none now: run the backup again", ErrConfigChanged)
	}
	if err != nil {
		return err
	}
	if !cfg.SameStore(r.Config) {
		if cfg.ID == r.Config.ID {
			return fmt.Errorf("store %s: %w; if it was replaced on purpose, remove %s", cfg.ID, ErrConfigReplaced, filepath.Join(c.root, c.name))
		}
		c.save("", cfg) // the next run starts from the store's config
		return fmt.Errorf("%w: run the backup again", ErrConfigChanged)
	}
	c.save(gen, cfg)
	c.cached, c.stamp = true, gen
	return nil
}
