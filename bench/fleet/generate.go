package fleet

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
)

// splitEntries is index.splitEntries: a writer starts a new index file
// before one would name more than this many chunks.
const splitEntries = 1 << 18

// The fields of every file record that the model does not vary.
const (
	dataRoot         = "/var/lib/cassandra/data"
	cassandraVersion = "4.1.7"
	cassandraID      = 999
)

// Generate writes a store of cfg.Hosts hosts into dir, which must not hold
// a store already (it may exist, empty). See the package documentation for
// what it holds. It returns what it wrote.
func Generate(dir string, cfg Config) (Stats, error) {
	began := time.Now()
	c, err := cfg.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return Stats{}, fmt.Errorf("fleet: %s is not empty", dir)
	}
	ctx := context.Background()
	st, err := newDirStore(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("fleet: %w", err)
	}
	scfg, err := writeConfig(ctx, st.rd)
	if err != nil {
		return Stats{}, fmt.Errorf("fleet: %w", err)
	}
	g := &generator{c: c, st: st, params: scfg.Chunker, packSize: int64(scfg.PackSize)}

	var (
		mu  sync.Mutex
		all = Stats{Hosts: c.Hosts}
	)
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(c.Workers)
	for i := range c.Hosts {
		eg.Go(func() error {
			s, err := g.host(ctx, i)
			if err != nil {
				return fmt.Errorf("fleet: host %s: %w", HostName(i), err)
			}
			mu.Lock()
			all.add(s)
			mu.Unlock()
			return nil
		})
	}
	err = eg.Wait()
	all.Elapsed = time.Since(began)
	return all, err
}

type generator struct {
	c        Config
	st       *dirStore
	params   chunk.Params
	packSize int64
}

// host writes every backup of host i.
func (g *generator) host(ctx context.Context, i int) (Stats, error) {
	var s Stats
	h := g.c.plan(i)
	pk := &packer{g: g, host: h.name, r: newStream(derive(g.c.Seed, "packs", uint64(i))), stats: &s}
	for b := range g.c.BackupsPerHost {
		var fresh [][2]int // (table, SSTable) uploaded by this backup
		if b == 0 {
			for ti, tb := range h.tables {
				for si := range tb.live {
					if !tb.shared || g.owner(tb, tb.live[si]) == i {
						fresh = append(fresh, [2]int{ti, si})
					}
				}
			}
		} else {
			fresh = g.c.churn(h, b)
		}
		for _, ts := range fresh {
			tb := h.tables[ts[0]]
			sst := tb.live[ts[1]]
			meta := g.c.meta(h, tb, sst)
			for ci, size := range componentSizes(sst.data, meta.stats) {
				fileChunks(g.c.fileSeed(h, tb, sst.gen, ci), size, g.params, func(r chunk.Ref) {
					pk.add(ctx, r, tb.shared)
				})
			}
		}
		if err := pk.flush(ctx); err != nil {
			return s, err
		}
		if err := g.manifests(ctx, h, b, &s); err != nil {
			return s, err
		}
		s.Backups++
	}
	for _, tb := range h.tables {
		s.SSTables += int64(len(tb.live))
	}
	s.Files = s.SSTables * int64(len(components))
	return s, nil
}

// owner is the host that stored a fleet_shared SSTable's chunks: they
// are spread over the hosts, and every other host's backups found them.
func (g *generator) owner(tb *table, s sstable) int {
	return ((s.gen-1)*sharedTables + tb.t) % g.c.Hosts
}

// manifests writes the manifests of backup b of h, one per keyspace, and
// the marker of their commit.
func (g *generator) manifests(ctx context.Context, h *host, b int, s *Stats) error {
	t := g.c.Start.Add(time.Duration(b)*24*time.Hour + time.Duration(h.i)*time.Second)
	session := newStream(derive(g.c.Seed, "session", uint64(h.i), uint64(b))).id().String()[:24]
	var m *manifest.Manifest
	var entries []manifest.CommitEntry
	put := func() error {
		if m == nil {
			return nil
		}
		m.Sort()
		if h.nodes == nil {
			h.nodes = map[chunk.ID]bool{}
		}
		n, e, err := writeManifest(ctx, g.st, m, h.nodes, s)
		if err != nil {
			return err
		}
		entries = append(entries, e)
		s.Manifests++
		s.ManifestBytes += n
		s.LogicalBytes += m.TotalSize()
		for range m.Refs() {
			s.Refs++
		}
		return nil
	}
	for _, tb := range h.tables {
		if m == nil || m.Keyspace != tb.ks {
			if err := put(); err != nil {
				return err
			}
			m = &manifest.Manifest{Format: manifest.FormatVersion, Name: manifest.BackupName(t, tb.ks, h.name),
				Host: h.name, Keyspace: tb.ks, Time: t, CassandraVersion: cassandraVersion, Session: session}
		}
		mt := manifest.Table{Name: tb.name, ID: tb.id}
		for _, sst := range tb.live {
			meta := g.c.meta(h, tb, sst)
			for ci, size := range componentSizes(sst.data, meta.stats) {
				f := manifest.File{
					Path: fmt.Sprintf("%s/%s-%s/nb-%d-big-%s", tb.ks, tb.name, tb.id, sst.gen, components[ci]),
					Root: dataRoot, Size: size, Mode: 0o644, UID: cassandraID, GID: cassandraID,
					User: "cassandra", Group: "cassandra", MTime: meta.mtime, Inode: meta.inode + uint64(ci),
				}
				f.Sum = fileChunks(g.c.fileSeed(h, tb, sst.gen, ci), size, g.params, func(r chunk.Ref) {
					f.Chunks = append(f.Chunks, r)
				})
				mt.Files = append(mt.Files, f)
			}
		}
		m.Tables = append(m.Tables, mt)
	}
	if err := put(); err != nil {
		return err
	}
	markers, err := writeCommit(ctx, g.st, h.name, t, entries, session)
	s.Commits += markers
	return err
}

// packer fills packs with a host's new chunks, in the order a backup
// worker meets them, writes each pack's stub when it closes, and the
// host's index files as the packs of a backup add up, split as
// index.Writer splits them.
type packer struct {
	g     *generator
	host  string
	r     stream // pack IDs and nonces
	stats *Stats

	entries []pack.Entry // the open pack
	data    int64

	packs []index.PackRecord // closed packs not yet in an index file
	n     int                // their entries
	err   error
}

// add puts a chunk into the open pack, closing it first when the chunk
// would take it past the store's pack size, as index.Packer does.
func (p *packer) add(ctx context.Context, r chunk.Ref, shared bool) {
	if p.err != nil {
		return
	}
	if len(p.entries) > 0 && (p.data+int64(r.Len) > p.g.packSize || len(p.entries) == pack.MaxChunks) {
		if p.err = p.seal(ctx); p.err != nil {
			return
		}
	}
	p.entries = append(p.entries, pack.Entry{ID: r.ID, Off: uint32(p.data), Len: r.Len})
	p.data += int64(r.Len)
	p.stats.Chunks++
	p.stats.ChunkBytes += int64(r.Len)
	if shared {
		p.stats.SharedChunks++
	}
}

// seal closes the open pack: its stub, then its record, writing the
// pending index file first if the pack would take it past splitEntries.
func (p *packer) seal(ctx context.Context) error {
	id := p.r.id()
	var nonce [pack.NonceSize]byte
	_, _ = p.r.src.Read(nonce[:])
	size := p.data + int64(len(p.entries))*pack.EntrySize + pack.TrailerSize
	n, err := writePackStub(ctx, p.g.st, id, size, p.entries, nonce)
	if err != nil {
		return err
	}
	p.stats.Packs++
	p.stats.PackBytes += size
	p.stats.StubBytes += n
	if p.n > 0 && p.n+len(p.entries) > splitEntries {
		if err := p.writeIndex(ctx); err != nil {
			return err
		}
	}
	p.packs = append(p.packs, index.PackRecord{ID: id, Size: size, Entries: p.entries})
	p.n += len(p.entries)
	p.entries, p.data = nil, 0
	return nil
}

func (p *packer) writeIndex(ctx context.Context) error {
	n, err := writeIndexFile(ctx, p.g.st, p.host, p.packs)
	if err != nil {
		return err
	}
	p.stats.IndexFiles++
	p.stats.IndexBytes += n
	p.packs, p.n = nil, 0
	return nil
}

// flush ends a backup's uploads: it closes the open pack and writes the
// index files of every pack not yet in one.
func (p *packer) flush(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	if len(p.entries) > 0 {
		if err := p.seal(ctx); err != nil {
			return err
		}
	}
	if len(p.packs) > 0 {
		return p.writeIndex(ctx)
	}
	return nil
}
