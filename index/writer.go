package index

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/internal/random"
	"github.com/cassback/cassback/remote"
)

// Writer adds chunks to the store, uploading only chunks the store has not
// seen. Chunks are gathered into packs by Packers (one per worker, so the
// chunks of one file stay together; with Spread, one per two workers); a
// full pack is uploaded by the worker that filled it. Each open pack is
// written to a temporary file as it fills and uploaded from there, so a Packer's memory is a 64 KiB buffer
// and 40 bytes a chunk, whatever the pack size; its disk is one pack.
//
// Durability order, which every reader and the garbage collector rely on:
//  1. a pack is PUT, and only once the PUT has succeeded
//  2. its chunks enter the in-memory Index and a local journal;
//  3. Sync writes an index file naming the durable packs.
//
// A caller writes a manifest only after Sync returns, so every chunk a
// manifest references is in a durable pack named by a durable index file.
// After a crash, the journal lets the next Writer index the packs that were
// uploaded but not yet indexed, so they are not uploaded again.
type Writer struct {
	st        remote.Store
	idx       *Index
	host      string
	packLen   int
	journal   string
	spoolDir  string
	cacheDir  string
	compactAt int
	pad       bool // WriterOptions.Pad
	spread    bool // WriterOptions.Spread
	compactMu sync.Mutex

	mu sync.Mutex
	// claimed are the chunks a Packer (or AddTree) is storing: false
	// while the Add that claimed one has yet to put it in a pack, true
	// once it is in an open or uploading pack. placed signals a change.
	claimed  map[chunk.ID]bool
	placed   *sync.Cond
	verified map[chunk.ID]bool // packs seen in the store by this Writer
	pending  []PackRecord      // durable, not yet in an index file
	packers  []*Packer
	// treeUploads counts AddTree's packs being filled or uploaded outside
	// any Packer; placed signals an end.
	treeUploads int
	syncMu      sync.Mutex // one Sync at a time
	err         error      // first upload failure; the Writer is unusable after it

	stats Stats
}

// Stats counts a Writer's work. Fields are updated atomically.
type Stats struct {
	ChunksNew, BytesNew atomic.Int64 // uploaded
	ChunksDup, BytesDup atomic.Int64 // already stored
	Nodes, NodeBytes    atomic.Int64 // tree nodes uploaded (AddTree)
	Packs, PackBytes    atomic.Int64
	IndexFiles          atomic.Int64
}

// WriterOptions configures a Writer. The zero value of a field means its default.
type WriterOptions struct {
	Host     string // partition of the index files this writer adds
	PackSize int    // target pack size; default from the store config
	Journal  string // local journal file; "" disables crash recovery
	// SpoolDir holds the temporary files of the packs being filled (one
	// per Packer, up to a pack each, unlinked at once). Default: the
	// journal's folder (the cache), else os.TempDir().
	SpoolDir string
	// CacheDir, if set, is the folder Load caches index files in: each
	// index file written is cached there too, so the next Load of this
	// host need not fetch it.
	CacheDir string
	// CompactAt is how many small index files of its host Compact lets
	// be before it merges some (CompactAt, default 16; tests lower it).
	CompactAt int
	// Pad and Spread are always on for an encrypted store, whose
	// Config.Chunker.Namer is keyed, and off by default otherwise.
	//
	// Pad pads every pack to its Padmé size (pack.Padme), inside the pack
	// (format 3), so that its indexed and stored size, all an observer of
	// an encrypted store sees of it, tells little of the chunks it holds.
	// It costs under 3% of a full pack, about 1.5% on average.
	Pad bool
	// Spread makes each Packer keep two packs open and put each chunk in
	// one of them at random (internal/random: crypto/rand), as restic
	// 0.18 does: a pack then holds a random subset of a file's chunks, so
	// the sizes of a known file's packs do not give its chunk boundaries.
	// When a Packer flushes two packs that fit one, they are merged, so a
	// small file still costs one pack.
	Spread bool
}

// NewWriter returns a Writer adding to st and idx. If opts.Journal names a
// journal left by a crashed writer, its packs that are durable in the store
// are indexed first.
func NewWriter(ctx context.Context, st remote.Store, idx *Index, cfg Config, opts WriterOptions) (*Writer, error) {
	if opts.PackSize <= 0 {
		opts.PackSize = cfg.PackSize
	}
	opts.PackSize = min(opts.PackSize, MaxPackTarget) // readers refuse larger packs (MaxPackSize)
	if cfg.Chunker.Namer.Keyed() {
		// An encrypted store (its chunk IDs are keyed): every writer of
		// it, a backup's, a purge's repack or a tool's, hides its chunk
		// sizes.
		opts.Pad, opts.Spread = true, true
	}
	if opts.SpoolDir == "" && opts.Journal != "" {
		opts.SpoolDir = filepath.Dir(opts.Journal)
	}
	w := &Writer{
		st: st, idx: idx, host: opts.Host, packLen: opts.PackSize, journal: opts.Journal, spoolDir: opts.SpoolDir, cacheDir: opts.CacheDir, compactAt: opts.CompactAt,
		pad: opts.Pad, spread: opts.Spread,
		claimed: map[chunk.ID]bool{}, verified: map[chunk.ID]bool{},
	}
	w.placed = sync.NewCond(&w.mu)
	if err := w.recover(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() *Stats { return &w.stats }

// Packer collects chunks into packs for one stream of files. Its methods are
// safe for concurrent use (a file's segments are chunked in parallel, and
// with Spread two workers share one, NewPackers); a caller that fills a
// pack uploads it, off the Packer's lock, while the others go on filling
// its other pack or a new one; Flush waits for every such upload. The open
// pack is spooled to a temporary file (pack.Spool), so a Packer holds 64 KiB and
// 40 bytes a chunk in memory, not the pack. Flush (or Sync) removes the
// file; a Packer left with an open pack after a failure keeps its file open,
// unlinked, until the garbage collector closes it. With WriterOptions.Spread
// it has two open packs, each a file, and twice the disk.
type Packer struct {
	w    *Writer
	mu   sync.Mutex
	open [2]*pack.Spool // the packs being filled, nil between packs; open[1] only with Spread
	err  error
	// uploads counts the uploads of full packs running off the lock, and
	// uploaded signals an end; while flushing, full packs are uploaded
	// under the lock instead, so that a Flush's wait ends.
	uploads  int
	flushing int
	uploaded sync.Cond
}

// NewPacker returns a Packer for one worker.
func (w *Writer) NewPacker() *Packer {
	p := &Packer{w: w}
	p.uploaded.L = &p.mu
	w.mu.Lock()
	w.packers = append(w.packers, p)
	w.mu.Unlock()
	return p
}

// NewPackers returns the Packers of n workers, by worker. With Spread, two
// workers share each Packer, so that together they keep as many packs
// open as n workers without Spread (two a Packer, one a worker): a backup
// then ends with no more open pack data to seal, write and sync when
// little else runs than a plaintext one.
func (w *Writer) NewPackers(n int) []*Packer {
	ps := make([]*Packer, n)
	for i := range ps {
		if w.spread && i%2 == 1 {
			ps[i] = ps[i-1]
			continue
		}
		ps[i] = w.NewPacker()
	}
	return ps
}

// Add stores the chunk unless the store already has it or another packer is
// storing it; it reports whether this call added it. data is copied. A pack
// is closed before a chunk would take it past the target size, so a pack is
// at most max(target, one chunk) plus its header.
func (p *Packer) Add(ctx context.Context, id chunk.ID, data []byte) (bool, error) {
	w := p.w
	for {
		loc, ok := w.idx.LookupContext(ctx, id)
		if !ok {
			break
		}
		there, err := w.present(ctx, loc.Pack)
		if err != nil {
			return false, err
		}
		if there {
			w.stats.ChunksDup.Add(1)
			w.stats.BytesDup.Add(int64(len(data)))
			return false, nil
		}
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return false, err
	}
	// Claimed by another packer, or stored by one since the lookup above
	// (upload adds a pack's chunks to the index before it releases their
	// claims, so one of the two holds): otherwise two packs would hold it.
	_, claimed := w.claimed[id]
	if _, stored := w.idx.lookup(id); claimed || stored {
		w.mu.Unlock()
		w.stats.ChunksDup.Add(1)
		w.stats.BytesDup.Add(int64(len(data)))
		return false, nil
	}
	w.claimed[id] = false
	w.mu.Unlock()
	if claimedHook != nil {
		claimedHook(id)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		w.release([]pack.Entry{{ID: id}})
		return false, p.err
	}
	k := 0
	if w.spread {
		var b [1]byte
		random.Read(b[:])
		k = int(b[0] & 1)
	}
	for sp := p.open[k]; sp != nil && (sp.Len()+len(data) > w.packLen || len(sp.Entries()) == pack.MaxChunks); sp = p.open[k] {
		upload := p.uploadFull
		if p.flushing > 0 {
			upload = p.sealLocked
		}
		if err := upload(ctx, k); err != nil {
			w.release([]pack.Entry{{ID: id}})
			return false, err
		}
	}
	if p.open[k] == nil {
		sp, err := w.newSpool()
		if err != nil {
			p.fail(err)
			w.release([]pack.Entry{{ID: id}})
			return false, err
		}
		p.open[k] = sp
	}
	if err := p.open[k].Add(id, data); err != nil {
		// The pack is broken, and with it the chunks Add accepted into it.
		p.breakLocked(k, err)
		w.release([]pack.Entry{{ID: id}})
		return false, err
	}
	w.place(id)
	w.stats.ChunksNew.Add(1)
	w.stats.BytesNew.Add(int64(len(data)))
	return true, nil
}

// fail makes err the Packer's and its Writer's sticky error, unless they
// have one, and returns it.
func (p *Packer) fail(err error) error {
	if p.err == nil {
		p.err = err
	}
	return p.w.fail(err)
}

// fail makes err the Writer's sticky error, unless it has one, and
// returns it.
func (w *Writer) fail(err error) error {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	return err
}

// newSpool starts a pack, padded if the Writer pads.
func (w *Writer) newSpool() (*pack.Spool, error) {
	sp, err := pack.CreateSpool(w.spoolDir)
	if err == nil && w.pad {
		sp.Pad()
	}
	return sp, err
}

// breakLocked drops open pack k after a failure to write it: the chunks
// it accepted are released and err becomes the Packer's.
func (p *Packer) breakLocked(k int, err error) {
	sp := p.open[k]
	p.open[k] = nil
	p.fail(err)
	p.w.release(sp.Entries())
	sp.Close()
}

// mergeLocked moves the chunks of the smaller open pack into the larger
// when both are open and together fit one pack, so that a flush of a
// Spreading Packer uploads one pack where one will do. The larger is
// left in open[0].
func (p *Packer) mergeLocked() error {
	a, b := p.open[0], p.open[1]
	if a == nil || b == nil || a.Len()+b.Len() > p.w.packLen || len(a.Entries())+len(b.Entries()) > pack.MaxChunks {
		return nil
	}
	if a.Len() < b.Len() {
		a, b = b, a
	}
	p.open = [2]*pack.Spool{a, nil}
	if err := b.AppendTo(a); err != nil {
		// a may hold part of b now: both are broken.
		p.open[1] = b
		p.breakLocked(1, err)
		p.breakLocked(0, err)
		return err
	}
	b.Close()
	return nil
}

// sealLocked closes open pack k, uploads it and removes its spool. A
// failure is sticky: the Packer and its Writer refuse further work.
func (p *Packer) sealLocked(ctx context.Context, k int) error {
	sp := p.open[k]
	p.open[k] = nil
	if sp == nil {
		return p.err
	}
	defer sp.Close()
	if len(sp.Entries()) == 0 {
		return p.err
	}
	if err := p.w.upload(ctx, sp); err != nil {
		p.err = err
		return err
	}
	return nil
}

// wakeOnDone wakes c's waiters when ctx is done, so that a wait on c
// that checks ctx ends with it; the caller calls the returned stop.
func wakeOnDone(ctx context.Context, c *sync.Cond) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
}

// uploadFull takes full open pack k out of the Packer and uploads it off
// the lock, so that the Packer's other callers go on meanwhile; it returns
// with the lock held again, and the Packer's error if it has one.
func (p *Packer) uploadFull(ctx context.Context, k int) error {
	sp := p.open[k]
	p.open[k] = nil
	p.uploads++
	p.mu.Unlock()
	var err error
	if len(sp.Entries()) > 0 {
		err = p.w.upload(ctx, sp)
	}
	sp.Close()
	p.mu.Lock()
	p.uploads--
	p.uploaded.Broadcast()
	if err != nil && p.err == nil {
		p.err = err
	}
	return p.err
}

// Flush uploads the open packs, if any: one, when two fit in one. It first
// waits for every upload running off the lock, begun before it or while it
// waits: with Spread, a caller may start uploading the other open pack,
// whose chunks were accepted before the Flush, once the wait has released
// the lock. Meanwhile full packs are uploaded under the lock, so the
// uploads off it only end. A Packer that failed uploads nothing more.
func (p *Packer) Flush(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushing++
	stop := wakeOnDone(ctx, &p.uploaded)
	for p.uploads > 0 && ctx.Err() == nil {
		p.uploaded.Wait()
	}
	stop()
	p.flushing--
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.err != nil {
		return p.err
	}
	if err := p.mergeLocked(); err != nil {
		return err
	}
	if err := p.sealLocked(ctx, 0); err != nil {
		return err
	}
	return p.sealLocked(ctx, 1)
}

// upload finishes a spooled pack, PUTs it from its file and, once it is
// durable, records its chunks. A failure is the Writer's sticky error. The
// file's reader can seek and read at offsets, so a retrying store reads it
// again and S3 sends it in parts without copying it to memory.
func (w *Writer) upload(ctx context.Context, sp *pack.Spool) error {
	entries := sp.Entries()
	size, id, err := sp.Finish()
	if err != nil {
		w.fail(err)
		w.release(entries)
		return err
	}
	// Never trust an upload blindly: a pack the index names must exist with
	// its full size (a "phantom" pack would silently lose data), seen by a
	// Stat unless the store verified the write.
	if err := remote.PutDurable(ctx, w.st, pack.Key(id), sp.Reader(), size); err != nil {
		err = w.fail(fmt.Errorf("upload pack %s: %w", id, err))
		w.release(entries)
		return err
	}
	rec := PackRecord{ID: id, Size: size, Entries: entries}
	w.idx.Add(rec)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.verified[id] = true
	for _, e := range entries {
		delete(w.claimed, e.ID)
	}
	w.pending = append(w.pending, rec)
	w.stats.Packs.Add(1)
	w.stats.PackBytes.Add(size)
	if err := w.appendJournal(rec); err != nil && w.err == nil {
		w.err = err
		return err
	}
	return nil
}

// AddTree stores nodes of manifest trees (ids[i] holds data[i]) in packs
// marked as holding them (pack.TreeMark), uploaded at once and named by the
// next Sync's index file with the commit's other packs; a pack holds at
// most pack.MaxTreePack of nodes and file chunks. With beside, they go
// first after the file chunks of a Packer's open pack that is small
// enough, so that a small commit uploads one pack, not two (the mark says
// where the nodes begin: the survey store keeps them and drops the chunks;
// docs/design.md §6); without, in packs of their own, as restic keeps its
// trees apart from data, so that a lost pack costs either files or the
// listing of files, not both. A node the index or an open pack already
// holds is skipped; the caller checks what the index offers (Stored)
// before it passes a node over.
func (w *Writer) AddTree(ctx context.Context, ids []chunk.ID, data [][]byte, beside bool) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	var todo []int
	for i, id := range ids {
		_, claimed := w.claimed[id]
		if _, stored := w.idx.lookup(id); claimed || stored {
			continue
		}
		w.claimed[id] = false
		todo = append(todo, i)
	}
	packers := append([]*Packer(nil), w.packers...)
	w.mu.Unlock()

	// room reports how many of todo fit in a pack holding bytes and chunks
	// already, its header and trailer counted.
	room := func(bytes, chunks int) int {
		n := 0
		for _, i := range todo {
			bytes += len(data[i])
			chunks++
			if bytes+chunks*pack.EntrySize+pack.TrailerSize > pack.MaxTreePack || chunks > pack.MaxChunks {
				break
			}
			n++
		}
		return n
	}
	fill := func(sp *pack.Spool, n int) error {
		sp.MarkTree() // the nodes start here
		for _, i := range todo[:n] {
			if err := sp.Add(ids[i], data[i]); err != nil {
				return err
			}
			w.place(ids[i])
			w.stats.Nodes.Add(1)
			w.stats.NodeBytes.Add(int64(len(data[i])))
		}
		todo = todo[n:]
		return nil
	}
	for _, p := range packers {
		if len(todo) == 0 || !beside {
			break
		}
		p.mu.Lock()
		n, k := 0, 0
		err := p.mergeLocked() // a Spreading Packer's two packs, if they fit one
		for ; err == nil && p.err == nil && k < len(p.open); k++ {
			if p.open[k] != nil {
				if n = room(p.open[k].Len(), len(p.open[k].Entries())); n > 0 {
					break
				}
			}
		}
		if err == nil && n == 0 {
			p.mu.Unlock()
			continue
		}
		if err == nil {
			if err = fill(p.open[k], n); err == nil {
				err = p.sealLocked(ctx, k) // releases the pack's claims if it fails
			} else {
				// The pack is broken, and with it the chunks it accepted.
				p.breakLocked(k, err)
			}
		}
		p.mu.Unlock()
		if err != nil {
			w.releaseIDs(ids, todo)
			return err
		}
	}
	for len(todo) > 0 {
		n := max(1, room(0, 0)) // a node is at most a chunk: it fits alone
		w.mu.Lock()
		w.treeUploads++
		w.mu.Unlock()
		sp, err := w.newSpool()
		if err == nil {
			if err = fill(sp, n); err == nil {
				err = w.upload(ctx, sp)
			}
			sp.Close()
		}
		w.mu.Lock()
		w.treeUploads--
		w.placed.Broadcast()
		w.mu.Unlock()
		if err != nil {
			w.releaseIDs(ids, todo)
			return w.fail(fmt.Errorf("store the manifests' trees: %w", err))
		}
	}
	return nil
}

// releaseIDs releases the claims of ids[i] for each i in todo.
func (w *Writer) releaseIDs(ids []chunk.ID, todo []int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, i := range todo {
		delete(w.claimed, ids[i])
	}
	w.placed.Broadcast()
}

// present reports whether a pack the index offers is in the store, with a
// Stat the first time this Writer relies on it. An index file can name a
// pack that is gone — one written late by a writer a purge had revoked, or
// a crashed writer's journal recovered during a sweep — and a writer that
// deduplicated against it would commit a reference to nothing. A pack seen
// in the store after the writer's session began can be deleted later only
// by a sweep that waits for the session (docs/design.md §4.4). A missing
// pack is excluded, so the chunk is looked up again or uploaded.
func (w *Writer) present(ctx context.Context, id chunk.ID) (bool, error) {
	if hole.On(hole.IndexBeforeSession) {
		return true, nil // the hole: an index read at open is trusted blindly
	}
	w.mu.Lock()
	ok := w.verified[id]
	w.mu.Unlock()
	if ok {
		return true, nil
	}
	info, err := w.st.Stat(ctx, pack.Key(id))
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && info.Size != w.idx.PackSize(id):
		w.idx.Exclude([]chunk.ID{id})
		return false, nil
	case err != nil:
		return false, fmt.Errorf("check pack %s: %w", id, err)
	}
	w.mu.Lock()
	w.verified[id] = true
	w.mu.Unlock()
	return true, nil
}

// Stored reports whether the chunk is in a pack the store holds, by the
// index and a Stat of each pack the first time this Writer relies on it
// (present): an index file can name a pack that is gone (a late file of
// a revoked writer, a merged file a stopped compaction wrote), and a copy
// found gone is excluded, so the next one is tried.
func (w *Writer) Stored(ctx context.Context, id chunk.ID) (bool, error) {
	for {
		loc, ok := w.idx.LookupContext(ctx, id)
		if !ok {
			return false, nil
		}
		there, err := w.present(ctx, loc.Pack)
		if err != nil || there {
			return there, err
		}
	}
}

func (w *Writer) release(entries []pack.Entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range entries {
		delete(w.claimed, e.ID)
	}
	w.placed.Broadcast()
}

// place notes that a claimed chunk is in a pack (a Sync waits for it).
func (w *Writer) place(id chunk.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.claimed[id]; ok {
		w.claimed[id] = true
	}
	w.placed.Broadcast()
}

// claimedHook, if set (by tests), runs after an Add claims a chunk and
// before it takes its Packer's lock.
var claimedHook func(chunk.ID)

// waitPlaced waits until every chunk claimed now and not yet in a pack is
// in one, or released: another Add deduplicated against such a chunk, and
// a Sync that flushed the Packers before it got there would leave it out
// of the commit it makes durable. Chunks claimed later do not hold it up.
func (w *Writer) waitPlaced(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer wakeOnDone(ctx, w.placed)()
	var wait []chunk.ID
	for id, in := range w.claimed {
		if !in {
			wait = append(wait, id)
		}
	}
	for {
		wait = slices.DeleteFunc(wait, func(id chunk.ID) bool {
			in, ok := w.claimed[id]
			return !ok || in
		})
		if len(wait) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		w.placed.Wait()
	}
}

// Sync flushes every Packer, waits for all uploads and writes one index file
// naming every pack made durable since the last Sync. When it returns nil,
// every chunk any Add has accepted or deduplicated is durable and indexed:
// it first waits for the Adds that claimed a chunk to put it in a pack.
func (w *Writer) Sync(ctx context.Context) error {
	// One Sync at a time: each drops the records it indexed from the head
	// of pending, counted from its own snapshot.
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if err := w.waitPlaced(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	// AddTree's packs outside any Packer: a chunk deduplicated against a
	// node in one is placed, but durable only once its upload ends.
	for w.treeUploads > 0 {
		w.placed.Wait()
	}
	packers := append([]*Packer(nil), w.packers...)
	w.mu.Unlock()
	var errs []error
	for _, p := range packers {
		errs = append(errs, p.Flush(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	pending := w.pending
	w.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	if _, err := w.writeIndex(ctx, pending); err != nil {
		return err
	}
	// Under the lock: a pack made durable meanwhile (by an upload of
	// another Packer's, or off a Packer's lock) appends its record under
	// it too, and is neither left out of the journal rewritten nor
	// appended to the one the rewrite replaces.
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = w.pending[len(pending):]
	return w.rewriteJournal(w.pending)
}

// writeIndex writes index files naming packs: one, unless they hold more
// than splitEntries entries, so that no index file comes near the
// MaxFileSize readers accept. It returns their keys.
func (w *Writer) writeIndex(ctx context.Context, packs []PackRecord) (keys []string, err error) {
	for len(packs) > 0 {
		n, entries := 1, len(packs[0].Entries)
		for n < len(packs) && entries+len(packs[n].Entries) <= splitEntries {
			entries += len(packs[n].Entries)
			n++
		}
		key, err := w.writeIndexFile(ctx, packs[:n])
		if err != nil {
			return keys, err
		}
		keys = append(keys, key)
		packs = packs[n:]
	}
	return keys, nil
}

func (w *Writer) writeIndexFile(ctx context.Context, packs []PackRecord) (string, error) {
	b, sum := EncodeFile(packs)
	key := Key(w.host, sum)
	if err := w.st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return "", fmt.Errorf("write index file: %w", err)
	}
	if cache := openCache(w.cacheDir); cache != nil {
		writeCache(cache, key, b)
		cache.Close()
	}
	n := 0
	for _, p := range packs {
		n += len(p.Entries)
	}
	w.idx.mu.Lock()
	w.idx.loaded[key] = true
	w.idx.entries[key] = n
	w.idx.mu.Unlock()
	w.stats.IndexFiles.Add(1)
	return key, nil
}

// The journal is a local file of records, each an index file body for one
// pack: u32 length, then the encoded record. A torn last record (crash while
// appending) is ignored. It lives in the cache folder, and is opened below
// its folder only (os.Root), never through a symlink or a FIFO.
func (w *Writer) appendJournal(rec PackRecord) error {
	if w.journal == "" {
		return nil
	}
	return appendJournalTo(w.journal, rec)
}

// appendJournalTo appends rec to the journal file path, synced.
func appendJournalTo(path string, recs ...PackRecord) error {
	dir, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer dir.Close()
	f, err := dir.OpenFile(filepath.Base(path), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	// Only its owner reads the journal (pack names, chunk IDs), even one
	// an older version created 0644.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	var buf []byte
	for _, rec := range recs {
		b, _ := EncodeFile([]PackRecord{rec})
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(b)))
		buf = append(buf, b...)
	}
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return f.Sync()
}

// rewriteJournal replaces the journal by one of rest's records. The
// caller holds w.mu.
func (w *Writer) rewriteJournal(rest []PackRecord) error {
	if w.journal == "" {
		return nil
	}
	dir, err := os.OpenRoot(filepath.Dir(w.journal))
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer dir.Close()
	name := filepath.Base(w.journal)
	if len(rest) == 0 {
		if err := dir.Remove(name); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("journal: %w", err)
		}
		return nil
	}
	tmp := w.journal + ".new"
	if err := dir.Remove(filepath.Base(tmp)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("journal: %w", err)
	}
	if err := appendJournalTo(tmp, rest...); err != nil { // one write, one fsync
		return err
	}
	return dir.Rename(filepath.Base(tmp), name)
}

// maxJournalRecord bounds one journal record: the index file of one pack
// of pack.MaxChunks chunks. A longer length is garbage, and ends the
// journal as a torn record does.
var maxJournalRecord = fileSize(pack.MaxChunks)

// recover indexes the packs a crashed writer recorded in the journal, after
// checking that each is in the store with its full size. It reads one
// record at a time, so memory is one record plus the packs recovered.
func (w *Writer) recover(ctx context.Context) error {
	if w.journal == "" {
		return nil
	}
	dir, err := os.OpenRoot(filepath.Dir(w.journal))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	defer dir.Close()
	f, err := dir.OpenFile(filepath.Base(w.journal), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	recs, err := w.readJournal(ctx, f)
	f.Close()
	if err != nil {
		return err
	}
	for _, r := range recs {
		w.idx.Add(r)
	}
	if len(recs) > 0 {
		if _, err := w.writeIndex(ctx, recs); err != nil {
			return err
		}
	}
	return dir.Remove(filepath.Base(w.journal))
}

// readJournal returns the journal's records whose packs are durable.
func (w *Writer) readJournal(ctx context.Context, f *os.File) ([]PackRecord, error) {
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read journal %s: not a regular file", w.journal)
	}
	r := bufio.NewReader(f)
	var recs []PackRecord
	var head [4]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return recs, nil // the end, or a torn length
		}
		n := int64(binary.LittleEndian.Uint32(head[:]))
		if n < 16+32 || n > maxJournalRecord {
			return recs, nil // garbage: nothing after it can be trusted
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return recs, nil // torn
		}
		packs, err := DecodeFile(b)
		if err != nil || len(packs) != 1 {
			continue
		}
		if w.idx.Excluded(packs[0].ID) {
			continue // condemned: a sweep may delete it; never index it again
		}
		info, err := w.st.Stat(ctx, pack.Key(packs[0].ID))
		if err != nil || info.Size != packs[0].Size {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue // not durable: its chunks will be uploaded again
		}
		recs = append(recs, packs[0])
	}
}
