package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Key limits. Real S3 allows 1024 bytes of UTF-8 and no segment limit, but
// file-backed stores (remote/local, versitygw's posix backend) map a segment
// to a file name, which Linux caps at 255 bytes.
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
func quote(s string) string {
	const maxLen = 80
	if len(s) > maxLen {
		return fmt.Sprintf("%q...", s[:maxLen])
	}
	return fmt.Sprintf("%q", s)
}

// Begin checks what every Store method checks first, in this order: the
// key, so an invalid key never reaches a file system or the network, then
// the context. op names the operation in the error ("get", "put"…).
func Begin(ctx context.Context, op, key string) error {
	if err := ValidKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}

// BeginList is Begin for List's prefix.
func BeginList(ctx context.Context, prefix string) error {
	if err := ValidPrefix(prefix); err != nil {
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
	if err := ValidPrefix(prefix); err != nil {
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
