package index

import (
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote/remotetest"
)

// TestSyncWaitsForClaimedChunks: an Add claims a chunk and, before it
// takes its Packer's lock (held meanwhile by that Packer's upload, or by
// another of the file's chunking goroutines), another Add deduplicates
// against the claim. A commit of the second file then Syncs. A Sync that
// flushed the Packers before the first Add placed its chunk returned with
// the chunk in no uploaded pack (seen in review of the five-request
// commit): the manifest it made durable named a chunk a crash would lose.
// Sync now waits for the claims made before it began.
func TestSyncWaitsForClaimedChunks(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(42, 5000)
	id := chunk.Sum(data)
	claimed, release := make(chan struct{}), make(chan struct{})
	claimedHook = func(got chunk.ID) {
		if got == id {
			close(claimed)
			<-release
		}
	}
	defer func() { claimedHook = nil }()

	pa, pb := w.NewPacker(), w.NewPacker()
	added := make(chan error, 1)
	go func() {
		_, err := pa.Add(ctx, id, data)
		added <- err
	}()
	<-claimed
	if ok, err := pb.Add(ctx, id, data); ok || err != nil {
		t.Fatalf("the second Add of a claimed chunk: %v, %v; want a dedup", ok, err)
	}
	synced := make(chan error, 1)
	go func() { synced <- w.Sync(ctx) }()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned (%v) while the chunk a deduplicated Add relies on was in no pack", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if ok, err := w.Stored(ctx, id); !ok || err != nil {
		t.Errorf("after Sync the chunk is stored: %v, %v; want true", ok, err)
	}
}
