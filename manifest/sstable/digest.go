package sstable

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"hash/crc32"
	"io"
	"strconv"
)

// Checksum algorithms of the Digest component, as returned by DigestAlgorithm.
const (
	DigestAdler32 = "adler32"
	DigestCRC32   = "crc32"
	DigestSHA1    = "sha1"
)

// ErrDigestMismatch is wrapped by CheckDigest when Data.db does not hash to
// the value in the Digest component.
var ErrDigestMismatch = errors.New("digest mismatch")

// DigestAlgorithm returns the checksum that a Digest component holds for the
// whole Data.db, or "" if component is not a Digest component:
//
//	Digest.crc32    3.0+ and BTI        CRC-32 (IEEE), decimal
//	Digest.adler32  2.2                 Adler-32, decimal
//	Digest.sha1     2.0, 2.1            Adler-32, decimal (the name is historical)
//	Digest.sha1     1.0 – 1.2           SHA-1, hex (CheckDigest tells by the form)
func DigestAlgorithm(component string) string {
	switch component {
	case "Digest.crc32":
		return DigestCRC32
	case "Digest.adler32", "Digest.sha1":
		return DigestAdler32
	}
	return ""
}

// maxDigestFile bounds what CheckDigest accepts as a Digest file's content.
const maxDigestFile = 4096

// CheckDigest hashes data (an SSTable's Data.db) and compares it with
// digest, the content of the same SSTable's Digest component. version picks
// the algorithm: CRC-32 for 3.0+ ("ma" …) and BTI, Adler-32 before; a
// Digest.sha1 holding 40 hex digits (≤ 1.2) is checked as SHA-1. A mismatch
// wraps ErrDigestMismatch; a read error from data is returned wrapped.
func CheckDigest(version string, digest []byte, data io.Reader) error {
	if len(digest) > maxDigestFile {
		return fmt.Errorf("digest file of %d bytes: too large", len(digest))
	}
	field := digest
	if f := bytes.Fields(digest); len(f) > 0 {
		field = f[0] // sha1sum format "<hex>  <file>"; decimal values stand alone
	}
	var h hash.Hash
	var alg, want string
	switch {
	case len(field) == 40 && isHex(field):
		h, alg, want = sha1.New(), DigestSHA1, string(bytes.ToLower(field))
	default:
		v, err := strconv.ParseUint(string(field), 10, 32)
		if err != nil {
			return fmt.Errorf("digest file %q: not a checksum", truncate(digest, 64))
		}
		want = strconv.FormatUint(v, 10)
		if version >= "ma" || isBTI(version) {
			h, alg = crc32.NewIEEE(), DigestCRC32
		} else {
			h, alg = adler32.New(), DigestAdler32
		}
	}
	if _, err := io.Copy(h, data); err != nil {
		return fmt.Errorf("hash Data.db: %w", err)
	}
	var got string
	if alg == DigestSHA1 {
		got = hex.EncodeToString(h.Sum(nil))
	} else {
		got = strconv.FormatUint(uint64(h.(hash.Hash32).Sum32()), 10)
	}
	if got != want {
		return fmt.Errorf("%w: digest file says %s, Data.db has %s %s", ErrDigestMismatch, want, alg, got)
	}
	return nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
