package keyslot

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/crypto/argon2"
)

// Kinds of key slot.
const (
	KindKeyFile    = "key-file"
	KindPassphrase = "passphrase"
	KindKMS        = "kms"
)

// MinKeyFileSize is the smallest key file accepted, in bytes.
const MinKeyFileSize = 32

// Argon2id cost of new passphrase slots: 3 passes over 64 MiB with 4 lanes,
// about 0.2 s on one core of a 2020s server.
const (
	DefaultTime    = 3
	DefaultMemory  = 64 << 10 // KiB
	DefaultThreads = 4
)

// Most a slot may ask of Argon2id: more is refused before deriving, so a
// hostile slot cannot exhaust memory or time.
const (
	maxTime    = 16
	maxMemory  = 1 << 20 // KiB: 1 GiB
	maxThreads = 64
)

const (
	saltSize   = 16
	keySize    = 32 // master and KEK
	nonceSize  = 12
	keyFileKDF = "cassback key-file v1"
	aadLabel   = "cassback slot v1"
)

// Source is a key that can make and open slots of one kind: KeyFile,
// Passphrase or Wrapper. Its String names the kind, never the key.
type Source interface {
	// Kind is KindKeyFile, KindPassphrase or KindKMS.
	Kind() string
	// seal fills r's kind parameters and r.Wrapped.
	seal(ctx context.Context, storeID string, r *record, master []byte) error
	// open returns the master of r, or an error wrapping errNotOpened when
	// the key does not open it.
	open(ctx context.Context, storeID string, r *record) ([]byte, error)
}

// KeyWrapper encrypts and decrypts small secrets with a key held elsewhere,
// a KMS: remote/s3.KMS implements it. encCtx is authenticated with the
// ciphertext: Decrypt with another context fails.
type KeyWrapper interface {
	Encrypt(ctx context.Context, plaintext []byte, encCtx map[string]string) ([]byte, error)
	Decrypt(ctx context.Context, blob []byte, encCtx map[string]string) ([]byte, error)
}

// errNotOpened marks a slot the key does not open (authentication failed).
var errNotOpened = errors.New("key does not open the slot")

// KeyFile returns a source for a key file's contents, b, taken byte for
// byte (a trailing newline counts). b must hold at least 32 bytes; it is
// copied.
func KeyFile(b []byte) (Source, error) {
	if len(b) < MinKeyFileSize {
		return nil, fmt.Errorf("key file has %d bytes, want at least %d", len(b), MinKeyFileSize)
	}
	return keyFile{b: append([]byte(nil), b...)}, nil
}

// Passphrase returns a source for a passphrase, taken byte for byte (no
// Unicode normalisation). It must not be empty.
func Passphrase(p string) (Source, error) {
	if p == "" {
		return nil, errors.New("empty passphrase")
	}
	return passphrase{p: []byte(p), t: DefaultTime, m: DefaultMemory, par: DefaultThreads}, nil
}

// Wrapper returns a source for a KMS key: kind is KindKMS, keyID the key's
// id, alias or ARN as given to the KMS (it is recorded in the slot to tell
// the operator which key opens it), w the client.
func Wrapper(kind, keyID string, w KeyWrapper) Source {
	return wrapper{kind: kind, keyID: keyID, w: w}
}

type keyFile struct{ b []byte }

func (keyFile) Kind() string                 { return KindKeyFile }
func (keyFile) String() string               { return KindKeyFile }
func (keyFile) GoString() string             { return "keyslot.KeyFile(…)" }
func (keyFile) LogValue() slog.Value         { return slog.StringValue(KindKeyFile) }
func (k keyFile) Format(f fmt.State, _ rune) { fmt.Fprint(f, KindKeyFile) }

func (k keyFile) kek(salt []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, k.b, salt, keyFileKDF, keySize)
}

func (k keyFile) seal(_ context.Context, storeID string, r *record, master []byte) error {
	r.Salt = randomBytes(saltSize)
	kek, err := k.kek(r.Salt)
	if err != nil {
		return fmt.Errorf("derive key: %w", err)
	}
	r.Wrapped = gcmSeal(kek, master, aad(storeID, r.ID, r.Kind))
	return nil
}

func (k keyFile) open(_ context.Context, storeID string, r *record) ([]byte, error) {
	kek, err := k.kek(r.Salt)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return gcmOpen(kek, r.Wrapped, aad(storeID, r.ID, r.Kind))
}

type passphrase struct {
	p    []byte
	t, m uint32
	par  uint8
}

func (passphrase) Kind() string               { return KindPassphrase }
func (passphrase) String() string             { return KindPassphrase }
func (passphrase) GoString() string           { return "keyslot.Passphrase(…)" }
func (passphrase) LogValue() slog.Value       { return slog.StringValue(KindPassphrase) }
func (passphrase) Format(f fmt.State, _ rune) { fmt.Fprint(f, KindPassphrase) }

func (p passphrase) seal(_ context.Context, storeID string, r *record, master []byte) error {
	r.Salt = randomBytes(saltSize)
	r.T, r.M, r.P = p.t, p.m, uint32(p.par)
	kek := argon2.IDKey(p.p, r.Salt, r.T, r.M, p.par, keySize)
	r.Wrapped = gcmSeal(kek, master, aad(storeID, r.ID, r.Kind))
	return nil
}

func (p passphrase) open(_ context.Context, storeID string, r *record) ([]byte, error) {
	// r passed check: the cost is within bounds.
	kek := argon2.IDKey(p.p, r.Salt, r.T, r.M, uint8(r.P), keySize)
	return gcmOpen(kek, r.Wrapped, aad(storeID, r.ID, r.Kind))
}

type wrapper struct {
	kind, keyID string
	w           KeyWrapper
}

func (w wrapper) Kind() string   { return w.kind }
func (w wrapper) String() string { return w.kind + " key " + w.keyID }
func (w wrapper) GoString() string {
	return fmt.Sprintf("keyslot.Wrapper(%q, %q, …)", w.kind, w.keyID)
}
func (w wrapper) LogValue() slog.Value       { return slog.StringValue(w.String()) }
func (w wrapper) Format(f fmt.State, _ rune) { fmt.Fprint(f, w.String()) }

func encryptionContext(storeID, slotID string) map[string]string {
	return map[string]string{"cassback-store": storeID, "slot": slotID}
}

func (w wrapper) seal(ctx context.Context, storeID string, r *record, master []byte) error {
	if w.kind != KindKMS {
		return fmt.Errorf("key slot kind %q: unsupported (want %q)", w.kind, KindKMS)
	}
	if err := checkKMSKeyID(w.keyID); err != nil {
		return err
	}
	if w.w == nil {
		return errors.New("no KMS client given")
	}
	blob, err := w.w.Encrypt(ctx, master, encryptionContext(storeID, r.ID))
	if err != nil {
		return fmt.Errorf("wrap with KMS key %s: %w", w.keyID, err)
	}
	if len(blob) == 0 || len(blob) > maxKMSBlob {
		return fmt.Errorf("wrap with KMS key %s: KMS returned %d bytes of ciphertext, want 1 to %d", w.keyID, len(blob), maxKMSBlob)
	}
	r.KMSKeyID, r.Wrapped = w.keyID, blob
	return nil
}

func (w wrapper) open(ctx context.Context, storeID string, r *record) ([]byte, error) {
	if w.w == nil {
		return nil, errors.New("no KMS client given")
	}
	master, err := w.w.Decrypt(ctx, r.Wrapped, encryptionContext(storeID, r.ID))
	if err != nil {
		return nil, err // it names the key
	}
	return master, nil
}

// aad is the additional data of a slot's AES-GCM: the label, then the
// store ID, slot ID and kind, each preceded by its length, so that no two
// triples give the same bytes.
func aad(storeID, slotID, kind string) []byte {
	b := []byte(aadLabel)
	for _, s := range []string{storeID, slotID, kind} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func gcmSeal(kek, master, ad []byte) []byte {
	g := newGCM(kek)
	nonce := randomBytes(nonceSize)
	return g.Seal(nonce, nonce, master, ad)
}

func gcmOpen(kek, wrapped, ad []byte) ([]byte, error) {
	g := newGCM(kek)
	if len(wrapped) < nonceSize+g.Overhead() {
		return nil, errNotOpened
	}
	master, err := g.Open(nil, wrapped[:nonceSize], wrapped[nonceSize:], ad)
	if err != nil {
		return nil, errNotOpened
	}
	return master, nil
}

func newGCM(kek []byte) cipher.AEAD {
	b, err := aes.NewCipher(kek)
	if err != nil {
		panic("keyslot: AES key of wrong size") // kek is always 32 bytes
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("keyslot: " + err.Error()) // never fails for AES
	}
	return g
}

// randomBytes returns n bytes from crypto/rand, which never fails (Go 1.24+).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
