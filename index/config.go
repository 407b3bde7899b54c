package index

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// ConfigKey is the key of the store's config object, written once when the
// store is created and never changed.
const ConfigKey = "config"

// StoreFormat is the storage-format version this code reads and writes.
// Format 2 added commit markers, session-tagged manifests, sharded
// condemned sets and the config's record of conditional writes
// (docs/design.md §4); format 3, packs of format CBPACK02, whose tree
// mark says where the nodes begin (pack.TreeStart); format 4, one commit
// marker a commit (commits/<host>/<time>/<keyspace>-<hash>…) and the
// sweep generation (gc/condemned/generation). No store of an earlier
// format is read.
const StoreFormat = 4

// DefaultPackSize is the target pack size. Packs close once they reach it,
// so a pack is at most PackSize plus one maximal chunk.
const DefaultPackSize = 32 << 20

// A store's pack_size lies within MinPackSize..MaxPackTarget: a writer
// buffers a whole pack per worker, so a config read from the store must not
// ask for more than the default. A Writer never makes packs larger either.
const (
	MinPackSize   = 1 << 20
	MaxPackTarget = DefaultPackSize
)

// MaxPackSize bounds the size of any pack an index file may name: the
// largest target, one chunk of the largest size, the header of the most
// chunks a pack may hold and the trailer.
const MaxPackSize = pack.MaxSize

// A pack of the largest target plus one chunk fits pack.MaxData (a
// compile-time check: the constant would overflow uint).
const _ = uint(pack.MaxData - MaxPackTarget - chunk.StoreMaxMaxSize)

// maxConfig bounds the config object (a few hundred bytes).
const maxConfig = 64 << 10

// ErrNotStore reports a location that holds data but no cassback config.
var ErrNotStore = errors.New("not a cassback store (no config object)")

// Config is the store-wide configuration. Everything that must never drift
// between the nodes sharing a store lives here.
type Config struct {
	Format   int          `json:"format"`
	ID       string       `json:"id"`   // random, names the local cache
	Hash     string       `json:"hash"` // always "blake3-256"
	Chunker  chunk.Params `json:"chunker"`
	PackSize int          `json:"pack_size"`
	// Conditional records whether the store honoured conditional writes
	// when it was created. Every process relies on this record, never on
	// a probe of its own, so that all writers and purgers agree on how
	// sessions are written (docs/design.md §4.6).
	Conditional bool `json:"conditional"`
}

// NewConfig returns a config with a fresh random ID and chunker polynomial.
func NewConfig() (Config, error) {
	p, err := chunk.NewParams()
	if err != nil {
		return Config{}, err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Config{}, err
	}
	return Config{Format: StoreFormat, ID: hex.EncodeToString(id[:]), Hash: "blake3-256", Chunker: p, PackSize: DefaultPackSize}, nil
}

// Validate checks every field of a config read from a store, which whoever
// can write the store controls: the ID becomes a folder name, and the sizes
// what every node buffers (chunk.Params.ValidateStore).
func (c Config) Validate() error {
	if c.Format != StoreFormat {
		return fmt.Errorf("store format %d not supported (this cassback reads format %d)", c.Format, StoreFormat)
	}
	if c.Hash != "blake3-256" {
		return fmt.Errorf("store hash %q not supported", c.Hash)
	}
	if len(c.ID) != 32 || strings.Trim(c.ID, "0123456789abcdef") != "" {
		// The ID names the local cache folder: it must be a name, and one.
		return fmt.Errorf("store id %.100q: want 32 lowercase hex digits", c.ID)
	}
	if c.PackSize < MinPackSize || c.PackSize > MaxPackTarget {
		return fmt.Errorf("store pack size %d: want %d to %d", c.PackSize, MinPackSize, MaxPackTarget)
	}
	return c.Chunker.ValidateStore()
}

// LoadConfig reads the store's config. A store without one gives an error
// wrapping ErrNotStore.
func LoadConfig(ctx context.Context, st remote.Store) (Config, error) {
	rc, err := st.Get(ctx, ConfigKey, 0, -1)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, ErrNotStore
	}
	if err != nil {
		return Config{}, fmt.Errorf("read store config: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfig+1))
	if err != nil {
		return Config{}, fmt.Errorf("read store config: %w", err)
	}
	return DecodeConfig(b)
}

// DecodeConfig decodes and checks a config object's bytes.
func DecodeConfig(b []byte) (Config, error) {
	if len(b) > maxConfig {
		return Config{}, fmt.Errorf("store config: more than %d bytes", maxConfig)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("store config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("store config: %w", err)
	}
	return c, nil
}

// Init creates the store's config if there is none and returns the config in
// force. When two nodes initialise one store at once, the conditional create
// makes exactly one config win and both use it.
func Init(ctx context.Context, st remote.Store, c Config) (Config, error) {
	got, err := LoadConfig(ctx, st)
	if err == nil {
		return got, nil
	}
	if !errors.Is(err, ErrNotStore) {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return Config{}, err
	}
	put := func() error { return st.Put(ctx, ConfigKey, bytes.NewReader(b), int64(len(b))) }
	if cs, ok := st.(remote.Conditional); ok {
		put = func() error {
			_, err := cs.PutIf(ctx, ConfigKey, b, "")
			if errors.Is(err, remote.ErrPrecondition) {
				return nil // another node created it first; use theirs
			}
			if errors.Is(err, errors.ErrUnsupported) {
				return st.Put(ctx, ConfigKey, bytes.NewReader(b), int64(len(b)))
			}
			return err
		}
	}
	if err := put(); err != nil {
		return Config{}, fmt.Errorf("create store config: %w", err)
	}
	return LoadConfig(ctx, st)
}
