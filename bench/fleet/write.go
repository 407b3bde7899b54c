package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// One function per kind of object, each through the project's own encoder
// where it exports one. When the format changes, these are what change.

// writeConfig creates the store's config as a first backup does: probing
// the store's conditional writes (remote/local has them), and with them
// the sweep generation.
func writeConfig(ctx context.Context, st remote.Store) (index.Config, error) {
	cfg, err := index.NewConfig()
	if err != nil {
		return index.Config{}, err
	}
	if cfg.Conditional, err = gc.ProbeConditional(ctx, st); err != nil {
		return index.Config{}, err
	}
	if cfg, err = index.Init(ctx, st, cfg); err != nil || !cfg.Conditional {
		return cfg, err
	}
	return cfg, gc.InitGeneration(ctx, st)
}

// writeIndexFile writes one index file of host naming packs.
func writeIndexFile(ctx context.Context, st remote.Store, host string, packs []index.PackRecord) (int64, error) {
	b, sum := index.EncodeFile(packs)
	if err := st.Put(ctx, index.Key(host, sum), bytes.NewReader(b), int64(len(b))); err != nil {
		return 0, fmt.Errorf("write index file: %w", err)
	}
	return int64(len(b)), nil
}

// writeManifest writes a manifest as a backup's commit leaves it: the
// nodes of its trees in a whole pack (the survey store keeps such packs
// whole) named by an index file of its own, then the manifest object. It
// returns the bytes written and the manifest's entry in its commit's
// marker (writeCommit).
func writeManifest(ctx context.Context, st remote.Store, m *manifest.Manifest, written map[chunk.ID]bool, s *Stats) (int64, manifest.CommitEntry, error) {
	obj, all, err := manifest.Encode(m, chunk.Namer{})
	if err != nil {
		return 0, manifest.CommitEntry{}, err
	}
	e := manifest.CommitEntry{Keyspace: m.Keyspace, Hash: manifest.HashOf(obj)}
	var nodes []manifest.Node // those not written for an earlier backup
	for _, n := range all {
		if !written[n.ID] {
			written[n.ID] = true
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return int64(len(obj)), e, manifest.Put(ctx, st, m.Name, obj)
	}
	s.Chunks += int64(len(nodes))
	s.Packs++
	s.IndexFiles++
	b := pack.NewBuilder(nil)
	b.SetNonce([pack.NonceSize]byte{}) // deterministic, as the generator's stores are
	b.MarkTree()
	for _, n := range nodes {
		b.Add(n.ID, n.Data)
	}
	entries := append([]pack.Entry(nil), b.Entries()...)
	data, id := b.Finish()
	whole := packStub(int64(len(data)), data) // a stub that keeps the pack whole, as the survey store does
	if err := st.Put(ctx, pack.Key(id), bytes.NewReader(whole), int64(len(whole))); err != nil {
		return 0, e, fmt.Errorf("write the pack of manifest %s: %w", m.Name, err)
	}
	ib, err := writeIndexFile(ctx, st, m.Host, []index.PackRecord{{ID: id, Size: int64(len(data)), Entries: entries}})
	if err != nil {
		return 0, e, err
	}
	if err := manifest.Put(ctx, st, m.Name, obj); err != nil {
		return 0, e, err
	}
	return int64(len(obj)+len(data)) + ib, e, nil
}

// writeCommit writes the marker of a backup's manifests, one commit of
// host at t (the session object that listed them is gone, as it is once a
// backup ends), and returns how many markers that took.
func writeCommit(ctx context.Context, st remote.Store, host string, t time.Time, entries []manifest.CommitEntry, session string) (int64, error) {
	keys, err := manifest.CommitKeys(host, t, entries, remote.MaxKeyLenOf(st))
	if err != nil {
		return 0, err
	}
	return int64(len(keys)), manifest.PutCommit(ctx, st, host, t, entries, session)
}

// writePackStub writes what the survey store keeps of a pack of size bytes
// whose chunks are entries: its stub, under the pack's own key.
func writePackStub(ctx context.Context, st remote.Store, id chunk.ID, size int64, entries []pack.Entry, nonce [pack.NonceSize]byte) (int64, error) {
	b := packStub(size, packTail(entries, nonce))
	if err := st.Put(ctx, pack.Key(id), bytes.NewReader(b), int64(len(b))); err != nil {
		return 0, fmt.Errorf("write pack stub: %w", err)
	}
	return int64(len(b)), nil
}

// packTail is a pack's header and trailer (docs/design.md §1.3), as
// pack.Writer.Finish writes them:
//
//	header:  n × { id [32]byte, len u32 LE }
//	trailer: { BLAKE3(header ‖ nonce) [32]byte, nonce [16]byte, n u32 LE, "CBPACK02" }
//
// index/pack exports no encoder of a header without the data before it;
// TestPackTail checks this one against pack.Builder byte for byte.
func packTail(entries []pack.Entry, nonce [pack.NonceSize]byte) []byte {
	b := make([]byte, 0, len(entries)*pack.EntrySize+pack.TrailerSize)
	for _, e := range entries {
		b = append(b, e.ID[:]...)
		b = binary.LittleEndian.AppendUint32(b, e.Len)
	}
	h := chunk.NewHasher()
	h.Write(b)
	h.Write(nonce[:])
	sum := h.Sum()
	b = append(b, sum[:]...)
	b = append(b, nonce[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	return append(b, pack.Magic...)
}

// The survey store's stub of a pack (remote/survey/stub.go, whose encoder
// is not exported): magic, the pack's logical size, then its last
// len(header)+stubSlack bytes — the header and trailer and the chunk data
// just before them, zeros here. TestPackStub checks packStub against what
// survey.Store.Put keeps of a real pack.
const (
	stubMagic = "CBSTUB01"
	stubSlack = 1 << 10 // survey's trailerSlack
)

func packStub(size int64, tail []byte) []byte {
	keep := min(size, int64(len(tail))-pack.TrailerSize+stubSlack)
	b := make([]byte, 0, len(stubMagic)+8+int(keep))
	b = append(b, stubMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(size))
	b = append(b, make([]byte, keep-int64(len(tail)))...)
	return append(b, tail...)
}

// dirStore is a meta store that writes fast: remote/local's layout (key
// "a/b" is the file DIR/a/b), but each Put writes its file in place, with
// no temporary file and no fsync: remote/local's two fsyncs an object
// would take hours over the three million stubs of 100 TiB. Reads go to
// remote/local. A generation that fails is generated again, never resumed.
type dirStore struct {
	root string
	rd   *local.Store
	dirs sync.Map // folders known to exist
}

var _ remote.Store = (*dirStore)(nil)

func newDirStore(root string) (*dirStore, error) {
	rd, err := local.Create(root)
	if err != nil {
		return nil, err
	}
	return &dirStore{root: rd.Dir(), rd: rd}, nil
}

// Put implements remote.Store.
func (s *dirStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if err := remote.Begin(ctx, "put", key); err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(data, size+1))
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if int64(len(b)) != size {
		return fmt.Errorf("put %s: data has %d bytes, want %d", key, len(b), size)
	}
	name := filepath.Join(s.root, filepath.FromSlash(key))
	dir := filepath.Dir(name)
	if _, ok := s.dirs.Load(dir); !ok {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		s.dirs.Store(dir, true)
	}
	if err := os.WriteFile(name, b, 0o640); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func (s *dirStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return s.rd.Get(ctx, key, off, n)
}

func (s *dirStore) Stat(ctx context.Context, key string) (remote.Info, error) {
	return s.rd.Stat(ctx, key)
}

func (s *dirStore) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	return s.rd.List(ctx, prefix, fn)
}

func (s *dirStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	return s.rd.ListDirs(ctx, prefix)
}

func (s *dirStore) Delete(ctx context.Context, key string) error {
	return s.rd.Delete(ctx, key)
}
