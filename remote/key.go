package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Key limits. S3 allows object names of 1024 bytes of UTF-8 and no segment
// limit (SeaweedFS refuses longer names too), but file-backed stores
// (remote/local, versitygw's posix backend) map a segment to a file name,
// which Linux caps at 255 bytes. MaxKeyLen bounds the name the server gets:
// a store that puts a prefix before every key leaves its keys less room
// (ValidKeyUnder).
const (
	MaxKeyLen     = 1024
	MaxSegmentLen = 255
)

// ErrInvalidKey is wrapped by every error that reports a key or prefix
// rejected by ValidKey or ValidPrefix. It is permanent: retrying cannot help.
var ErrInvalidKey = errors.New("invalid key")

// ValidKey reports whether key may name an object. A key is 1 to MaxKeyLen
// bytes of '/'-separated segments; each segment is 1 to MaxSegmentLen bytes of
// A-Z a-z 0-9 '.' '_' '-' and does not start with '.'.
//
// The grammar is narrow on purpose: every segment is a safe, portable file
// name, "." and ".." cannot occur (no key escapes a local store's root), names
// starting with '.' stay free for a backend's own files (temporary files,
// locks), and no character needs escaping in a URL or a shell. The error
// wraps ErrInvalidKey and names the key and the first problem found.
func ValidKey(key string) error {
	if key == "" {
		return keyError("key", key, "empty")
	}
	if len(key) > MaxKeyLen {
		return keyError("key", key, fmt.Sprintf("%d bytes, more than %d", len(key), MaxKeyLen))
	}
	if key[len(key)-1] == '/' {
		return keyError("key", key, "ends with '/'")
	}
	return checkSegments("key", key, key)
}

// ValidKeyUnder is ValidKey for a store that puts root before every key on
// its server (s3.Store puts Config.Prefix and '/'): the limit is on the name
// the server gets, so key may have at most MaxKeyLen-len(root) bytes. root
// is exactly what the store puts before the key, separator included; ""
// makes ValidKeyUnder ValidKey. The error names the key and gives its
// length, the root's and their sum.
func ValidKeyUnder(root, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	return checkRoom("key", root, key)
}

// checkRoom checks that root + s fits in MaxKeyLen.
func checkRoom(what, root, s string) error {
	if len(root)+len(s) <= MaxKeyLen {
		return nil
	}
	return keyError(what, s, fmt.Sprintf("%d bytes, %d with the store's key prefix %s (%d bytes), more than %d",
		len(s), len(root)+len(s), quoteShort(root), len(root), MaxKeyLen))
}

// KeyPrefixer is implemented by a store that puts a fixed prefix before
// every key on its server, as s3.Store does with its Config.Prefix. The
// prefix counts against MaxKeyLen (see ValidKeyUnder). The decorators in
// this package do not forward the method: ask the store itself.
type KeyPrefixer interface {
	// KeyPrefix returns what the store puts before every key, separator
	// included ("backups/db1/"), or "".
	KeyPrefix() string
}

// MaxKeyLenOf returns the length of the longest key st accepts: MaxKeyLen,
// less the prefix of a KeyPrefixer. It may be zero or negative if the
// prefix leaves no room.
func MaxKeyLenOf(st Store) int {
	if p, ok := st.(KeyPrefixer); ok {
		return MaxKeyLen - len(p.KeyPrefix())
	}
	return MaxKeyLen
}

// ValidPrefix reports whether prefix may select keys in List or ListDirs.
// "" selects every key. A prefix follows the key grammar except that it may
// end with '/' or in the middle of a segment ("manifests/h/ks/2026_11"); the
// partial last segment may be empty but not start with '.'. The error wraps
// ErrInvalidKey.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxKeyLen {
		return keyError("prefix", prefix, fmt.Sprintf("%d bytes, more than %d", len(prefix), MaxKeyLen))
	}
	// Check "a/b/" as if it were the key "a/b": the trailing '/' adds no rules.
	s := strings.TrimSuffix(prefix, "/")
	if s == "" {
		return keyError("prefix", prefix, "starts with '/'")
	}
	return checkSegments("prefix", prefix, s)
}

// checkSegments applies the segment rules to every '/'-separated segment of s,
// which is orig or a prefix of it; errors name orig.
func checkSegments(what, orig, s string) error {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '/' {
			if !isKeyByte(s[i]) {
				return keyError(what, orig, fmt.Sprintf("byte %q at offset %d is not one of A-Z a-z 0-9 . _ -", s[i:i+1], i))
			}
			continue
		}
		seg := s[start:i]
		switch {
		case seg == "" && start == 0:
			return keyError(what, orig, "starts with '/'")
		case seg == "":
			return keyError(what, orig, fmt.Sprintf("empty segment at offset %d", start))
		case len(seg) > MaxSegmentLen:
			return keyError(what, orig, fmt.Sprintf("segment at offset %d is %d bytes, more than %d", start, len(seg), MaxSegmentLen))
		case seg[0] == '.':
			return keyError(what, orig, fmt.Sprintf("segment %s starts with '.'", quote(seg)))
		}
		start = i + 1
	}
	return nil
}

func isKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

func keyError(what, s, problem string) error {
	if what == "key" {
		return fmt.Errorf("%w %s: %s", ErrInvalidKey, quote(s), problem)
	}
	return fmt.Errorf("%w %s %s: %s", ErrInvalidKey, what, quote(s), problem)
}

// quote quotes s on one line, shortening it so that a hostile 100 KB key does
// not become a 100 KB error message.
func quote(s string) string { return quoteN(s, 80) }

// quoteShort is quote for a second string in a message.
func quoteShort(s string) string { return quoteN(s, 40) }

func quoteN(s string, n int) string {
	if len(s) > n {
		return fmt.Sprintf("%q...", s[:n])
	}
	return fmt.Sprintf("%q", s)
}

// Begin checks what every Store method checks first, in this order: the
// key, so an invalid key never reaches a file system or the network, then
// the context. op names the operation in the error ("get", "put"…).
func Begin(ctx context.Context, op, key string) error { return BeginUnder(ctx, op, "", key) }

// BeginUnder is Begin for a store that puts root before every key on its
// server: it checks the key with ValidKeyUnder.
func BeginUnder(ctx context.Context, op, root, key string) error {
	if err := ValidKeyUnder(root, key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}

// BeginList is Begin for List's prefix.
func BeginList(ctx context.Context, prefix string) error { return BeginListUnder(ctx, "", prefix) }

// BeginListUnder is BeginList for a store that puts root before every key
// on its server. A prefix longer than the longest key the store takes is
// invalid: no key could start with it.
func BeginListUnder(ctx context.Context, root, prefix string) error {
	if err := validPrefixUnder(root, prefix); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

// BeginListDirs is Begin for ListDirs' prefix, which must also be empty or
// end in '/'.
func BeginListDirs(ctx context.Context, prefix string) error {
	return BeginListDirsUnder(ctx, "", prefix)
}

// BeginListDirsUnder is BeginListDirs for a store that puts root before
// every key on its server, as BeginListUnder is for BeginList.
func BeginListDirsUnder(ctx context.Context, root, prefix string) error {
	if err := validPrefixUnder(root, prefix); err != nil {
		return fmt.Errorf("list dirs: %w", err)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("list dirs: %w prefix %q: must be empty or end in '/'", ErrInvalidKey, prefix)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list dirs %s: %w", prefix, err)
	}
	return nil
}

func validPrefixUnder(root, prefix string) error {
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	return checkRoom("prefix", root, prefix)
}
