package index

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
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
	"github.com/cassback/cassback/remote/crypt"
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
// sweep generation (gc/condemned/generation); format 5, encrypted stores
// (Encryption: every object but the config and key slots sealed by
// remote/crypt, chunk IDs keyed, the chunker's parameters secret). No
// store of an earlier format is read.
const StoreFormat = 5

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
	// Encryption is set when the store is encrypted (docs/design.md §5):
	// its config then holds the chunker's parameters and the pack size
	// only sealed, and they are known once Unlock opened them.
	Encryption Encryption `json:"encryption"`

	locked bool // encrypted, and Chunker and PackSize not opened yet
}

// Encryption describes an encrypted store in its config.
type Encryption struct {
	Scheme string // EncryptionScheme; "" for a store in plaintext
	// Check is 32 hex digits that only the store's master key gives
	// (crypt.Keys.CheckValue): a master key opened from a key slot is
	// checked against it before anything is read or written with it.
	Check string
	// Secrets is the base64 of the sealed JSON of the chunker's
	// parameters and the pack size (configSecrets).
	Secrets string
}

// EncryptionScheme names how an encrypted store's objects are sealed.
const EncryptionScheme = "aes256gcm-segments-v1"

// Encrypted reports whether the store is encrypted.
func (c Config) Encrypted() bool { return c.Encryption.Scheme != "" }

// Locked reports whether the config is an encrypted store's whose secrets
// are not opened yet (Unlock).
func (c Config) Locked() bool { return c.locked }

// configSecrets is what an encrypted store's config seals: its secrets,
// and a copy of its clear fields, which Unlock finds the same, so that
// no one without the key changes them (turning off conditional writes,
// which every process trusts the config for, say).
type configSecrets struct {
	Format   int          `json:"format"`
	Chunker  chunk.Params `json:"chunker"`
	PackSize int          `json:"pack_size"`
	Clear    clearFields  `json:"clear"`
}

// clearFields are the fields an encrypted store's config keeps in the
// clear besides its encryption's.
type clearFields struct {
	Format      int    `json:"format"`
	ID          string `json:"id"`
	Hash        string `json:"hash"`
	Conditional bool   `json:"conditional"`
}

// secretsFormat is configSecrets' version.
const secretsFormat = 2

func (c Config) clear() clearFields {
	return clearFields{Format: c.Format, ID: c.ID, Hash: c.Hash, Conditional: c.Conditional}
}

// secretsKey names the config's sealed secrets for crypt: not a valid
// store key, so no stored object's segments open as them.
const secretsKey = "config#secrets"

// wireConfig is the config object's JSON: an encrypted store's has no
// chunker and no pack size in the clear.
type wireConfig struct {
	Format      int           `json:"format"`
	ID          string        `json:"id"`
	Hash        string        `json:"hash"`
	Chunker     *chunk.Params `json:"chunker,omitempty"`
	PackSize    int           `json:"pack_size,omitempty"`
	Conditional bool          `json:"conditional"`
	Encryption  *wireEncrypt  `json:"encryption,omitempty"`
}

type wireEncrypt struct {
	Scheme  string `json:"scheme"`
	Check   string `json:"check"`
	Secrets string `json:"secrets"`
}

// MarshalJSON encodes the config as the store holds it.
func (c Config) MarshalJSON() ([]byte, error) {
	w := wireConfig{Format: c.Format, ID: c.ID, Hash: c.Hash, Conditional: c.Conditional}
	if c.Encrypted() {
		w.Encryption = &wireEncrypt{Scheme: c.Encryption.Scheme, Check: c.Encryption.Check, Secrets: c.Encryption.Secrets}
	} else {
		w.Chunker, w.PackSize = &c.Chunker, c.PackSize
	}
	return json.Marshal(w)
}

// Encrypt makes the config an encrypted store's, sealing its chunker's
// parameters and pack size with keys.
func (c *Config) Encrypt(keys *crypt.Keys) error {
	b, err := json.Marshal(configSecrets{Format: secretsFormat, Chunker: c.Chunker, PackSize: c.PackSize, Clear: c.clear()})
	if err != nil {
		return err
	}
	sealed, err := keys.Seal(secretsKey, b)
	if err != nil {
		return err
	}
	c.Encryption = Encryption{Scheme: EncryptionScheme, Check: hex.EncodeToString(keys.CheckValue(c.ID)), Secrets: base64.StdEncoding.EncodeToString(sealed)}
	return nil
}

// ErrWrongKey reports a master key that is not the store's.
var ErrWrongKey = errors.New("the key is not this store's")

// Unlock checks keys against an encrypted store's config and opens its
// secrets. A config already unlocked, or a plaintext store's, is left as
// it is.
func (c *Config) Unlock(keys *crypt.Keys) error {
	if !c.locked {
		return nil
	}
	want, err := hex.DecodeString(c.Encryption.Check)
	if err != nil || subtle.ConstantTimeCompare(want, keys.CheckValue(c.ID)) != 1 {
		return fmt.Errorf("store %s: %w", c.ID, ErrWrongKey)
	}
	sealed, err := base64.StdEncoding.DecodeString(c.Encryption.Secrets)
	if err != nil {
		return fmt.Errorf("store config: secrets: %w", err)
	}
	b, err := keys.Open(secretsKey, sealed)
	if err != nil {
		return fmt.Errorf("store config: secrets: %w", err)
	}
	var sec configSecrets
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sec); err != nil {
		return fmt.Errorf("store config: secrets: %w", err)
	}
	if sec.Format != secretsFormat {
		return fmt.Errorf("store config: secrets of format %d, want %d", sec.Format, secretsFormat)
	}
	if sec.Clear != c.clear() {
		return fmt.Errorf("store %s: config: its clear fields %+v are not those sealed with it, %+v: changed without the key", c.ID, c.clear(), sec.Clear)
	}
	u := *c
	u.Chunker, u.PackSize, u.locked = sec.Chunker, sec.PackSize, false
	if err := u.Validate(); err != nil {
		return fmt.Errorf("store config: %w", err)
	}
	*c = u
	return nil
}

// SameStore reports whether c and o are the same stored config, whether
// or not either is unlocked.
func (c Config) SameStore(o Config) bool {
	a, err1 := json.Marshal(c)
	b, err2 := json.Marshal(o)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
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
	if c.Encrypted() {
		if c.Encryption.Scheme != EncryptionScheme {
			return fmt.Errorf("store encryption %.100q not supported (this cassback reads %s)", c.Encryption.Scheme, EncryptionScheme)
		}
		if len(c.Encryption.Check) != 32 || strings.Trim(c.Encryption.Check, "0123456789abcdef") != "" {
			return fmt.Errorf("store encryption check %.100q: want 32 lowercase hex digits", c.Encryption.Check)
		}
		if c.Encryption.Secrets == "" || len(c.Encryption.Secrets) > 4096 {
			return fmt.Errorf("store encryption secrets: %d bytes, want 1 to 4096", len(c.Encryption.Secrets))
		}
		if c.locked {
			return nil
		}
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
	var w wireConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Config{}, fmt.Errorf("store config: %w", err)
	}
	c := Config{Format: w.Format, ID: w.ID, Hash: w.Hash, PackSize: w.PackSize, Conditional: w.Conditional}
	switch {
	case w.Encryption != nil && (w.Chunker != nil || w.PackSize != 0):
		return Config{}, errors.New("store config: an encrypted store's with its chunker in the clear")
	case w.Encryption != nil:
		c.Encryption = Encryption{Scheme: w.Encryption.Scheme, Check: w.Encryption.Check, Secrets: w.Encryption.Secrets}
		c.locked = true
		if c.Encryption.Scheme == "" {
			return Config{}, errors.New("store config: encryption without a scheme")
		}
	case w.Chunker == nil:
		return Config{}, errors.New("store config: no chunker")
	default:
		c.Chunker = *w.Chunker
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
