package keyslot

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Format is the version of the slot format this package writes and reads.
const Format = 1

// MaxSlotSize bounds a slot object; a larger one is refused unread.
const MaxSlotSize = 64 << 10

// maxKMSBlob is the largest KMS ciphertext (AWS KMS's CiphertextBlob limit).
const maxKMSBlob = 6144

// maxKMSKeyID bounds a KMS key id (AWS allows 2,048 characters).
const maxKMSKeyID = 2048

// ErrFormat marks a slot object that is not a valid slot.
var ErrFormat = errors.New("not a valid key slot")

// record is a slot object as stored. Wrapped and Salt are base64 in JSON.
type record struct {
	Format   int       `json:"format"`
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Created  time.Time `json:"created"`
	Salt     []byte    `json:"salt,omitempty"`
	T        uint32    `json:"t,omitempty"`
	M        uint32    `json:"m,omitempty"`
	P        uint32    `json:"p,omitempty"`
	KMSKeyID string    `json:"kms_key_id,omitempty"`
	Wrapped  []byte    `json:"wrapped"`
}

// encode returns r's JSON; r must pass check.
func (r *record) encode() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode key slot %s: %w", r.ID, err)
	}
	return append(b, '\n'), nil
}

// decode parses a slot object strictly: one JSON object, no unknown field,
// every field present and in range for its kind.
func decode(b []byte) (*record, error) {
	if len(b) > MaxSlotSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrFormat, len(b), MaxSlotSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrFormat, oneLine(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrFormat)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// oneLine shortens a JSON error (which may quote hostile input) to one
// bounded line.
func oneLine(err error) string {
	s := []rune(err.Error())
	if len(s) > 200 {
		s = append(s[:200], '…')
	}
	for i, c := range s {
		if c < ' ' || c == 0x7f {
			s[i] = '?'
		}
	}
	return string(s)
}

// check verifies every field of r.
func (r *record) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, a...)...)
	}
	if r.Format != Format {
		return bad("format %d, want %d", r.Format, Format)
	}
	if !validID(r.ID) {
		return bad("id %.40q is not 16 lowercase hex digits", r.ID)
	}
	if r.Created.IsZero() {
		return bad("no creation time")
	}
	gcmWrapped := nonceSize + keySize + 16
	switch r.Kind {
	case KindKeyFile, KindPassphrase:
		if len(r.Salt) != saltSize {
			return bad("salt of %d bytes, want %d", len(r.Salt), saltSize)
		}
		if r.KMSKeyID != "" {
			return bad("kms_key_id in a %s slot", r.Kind)
		}
		if len(r.Wrapped) != gcmWrapped {
			return bad("wrapped key of %d bytes, want %d", len(r.Wrapped), gcmWrapped)
		}
		if r.Kind == KindKeyFile {
			if r.T != 0 || r.M != 0 || r.P != 0 {
				return bad("argon2 parameters in a key-file slot")
			}
			return nil
		}
		switch {
		case r.T < 1 || r.T > maxTime:
			return bad("argon2 time %d, want 1 to %d", r.T, maxTime)
		case r.P < 1 || r.P > maxThreads:
			return bad("argon2 threads %d, want 1 to %d", r.P, maxThreads)
		case r.M < 8*r.P || r.M > maxMemory:
			return bad("argon2 memory %d KiB, want %d to %d (1 GiB)", r.M, 8*r.P, maxMemory)
		}
	case KindKMS:
		if r.Salt != nil || r.T != 0 || r.M != 0 || r.P != 0 {
			return bad("salt or argon2 parameters in a kms slot")
		}
		if err := checkKMSKeyID(r.KMSKeyID); err != nil {
			return bad("%v", err)
		}
		if len(r.Wrapped) == 0 || len(r.Wrapped) > maxKMSBlob {
			return bad("wrapped key of %d bytes, want 1 to %d", len(r.Wrapped), maxKMSBlob)
		}
	default:
		return bad("kind %.40q, want %q, %q or %q", r.Kind, KindKeyFile, KindPassphrase, KindKMS)
	}
	return nil
}

func checkKMSKeyID(id string) error {
	if id == "" || len(id) > maxKMSKeyID {
		return fmt.Errorf("KMS key id of %d bytes, want 1 to %d", len(id), maxKMSKeyID)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("KMS key id %.40q: want printable ASCII without spaces", id)
		}
	}
	return nil
}

// validID reports whether id is 16 lowercase hex digits.
func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func newID() string { return hex.EncodeToString(randomBytes(8)) }
