package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/cassback/cassback/remote"
)

// The sweep generation is one object beside the condemned sets,
//
//	gc/condemned/generation    {"format":1, "n":N, "nonce":…}
//
// that a sweep rewrites, by compare-and-swap, after its fresh mark and
// before it deletes the first pack. A writer lists it with the condemned
// sets when its session begins, so a cache that remembers the generation
// under which it saw a manifest committed can tell, without a request, that
// no pack was deleted since: if the listing shows the same object, no sweep
// has deleted a pack after marking without that manifest, so its chunks
// are still stored (docs/design.md §4.2, W1′). Each write carries a new
// random nonce, so the object's ETag never repeats even where ETags hash
// the content, and a late copy of an old write fails its If-Match. Only a
// store with atomic conditional writes has one; elsewhere the stamp is
// always empty and nothing relies on it.
const (
	generationKey    = condemnedPrefix + "generation"
	generationFormat = 1
)

type generationDoc struct {
	Format int    `json:"format"`
	N      int64  `json:"n"`
	Nonce  string `json:"nonce"`
}

// generationStamp is what a listing shows of the generation object: its
// size and ETag, or "" when it is absent or has no ETag.
func generationStamp(i remote.Info) string {
	if i.Key != generationKey || i.ETag == "" {
		return ""
	}
	return strconv.FormatInt(i.Size, 10) + ":" + i.ETag
}

// InitGeneration creates the generation object of a new store with
// conditional writes (create-only: one that exists is left alone).
func InitGeneration(ctx context.Context, st remote.Store) error {
	cs, ok := st.(remote.Conditional)
	if !ok {
		return nil
	}
	b, _ := json.Marshal(generationDoc{Format: generationFormat, Nonce: randomID()})
	_, err := cs.PutIf(ctx, generationKey, b, "")
	if errors.Is(err, remote.ErrPrecondition) || errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create sweep generation: %w", err)
	}
	return nil
}

// advanceGeneration rewrites the generation object by compare-and-swap
// (creating it if absent). It is called before a sweep deletes packs; an
// error stops the sweep before its first deletion. Without conditional
// writes (cas false) it does nothing: no writer trusts a stamp there.
func advanceGeneration(ctx context.Context, st remote.Store, cas bool) error {
	if !cas {
		return nil
	}
	for range 3 {
		old, etag, err := readBack(ctx, st, generationKey)
		var d generationDoc
		switch {
		case errors.Is(err, fs.ErrNotExist):
			etag = ""
		case err != nil:
			return fmt.Errorf("advance sweep generation: %w", err)
		default:
			// A damaged object is replaced: its successor's stamp differs,
			// which is all a reader asks.
			_ = json.Unmarshal(old, &d)
		}
		b, _ := json.Marshal(generationDoc{Format: generationFormat, N: d.N + 1, Nonce: randomID()})
		_, err = putIf(ctx, st, generationKey, b, etag, true)
		if errors.Is(err, remote.ErrPrecondition) {
			continue // written meanwhile (a late copy of an earlier write): read again
		}
		if err != nil {
			return fmt.Errorf("advance sweep generation: %w", err)
		}
		return nil
	}
	return fmt.Errorf("advance sweep generation: %s keeps changing", generationKey)
}
