package nodegen

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Node is a generated data directory and the ground truth about it: what a
// correct backup of it must contain. Its exported fields are recomputed
// after every operation. A Node is not safe for concurrent use.
//
// All paths in a Node are slash-separated and relative to Dir.
type Node struct {
	Dir     string // absolute path of the data directory (one data_file_directories entry)
	Version string // SSTable version

	Tables    []TableInfo   // every table directory, with or without SSTables, sorted by Dir
	SSTables  []SSTableInfo // the complete, live SSTables, sorted by Prefix
	LiveFiles []string      // every component of every live SSTable, sorted
	Bytes     int64         // total size of LiveFiles

	Snapshots   []SnapshotInfo // sorted by Tag
	BackupFiles []string       // files below <table>/backups/, sorted

	// InFlight lists the files in live table directories (outside
	// snapshots/ and backups/) that are not part of any live SSTable:
	// unfinished SSTables, tmp-marked and .tmp files, transaction logs.
	// LiveFiles and InFlight together are every file in those directories.
	InFlight []string

	cfg      Config
	canon    string // Dir without symlinks, slash-separated, for transaction logs
	t        *traits
	toc      []string
	chunk    int
	workers  int
	clock    clock
	rng      *rng // ids and tags, drawn in operation order
	hostID   [16]byte
	tables   []*table
	byName   map[string]*table // "ks/table" and "ks/table.index"
	inflight map[string]bool
	backups  map[string]bool
	snaps    map[string]*SnapshotInfo

	workerPool, jobPool sync.Pool
}

// TableInfo is one table directory.
type TableInfo struct {
	Keyspace string
	Name     string   // CQL table name
	ID       string   // 32 lowercase hex digits
	Dir      string   // "<ks>/<name>-<id>"
	Indexes  []string // secondary-index names
	System   bool     // in a system keyspace
}

// SSTableInfo is one complete SSTable.
type SSTableInfo struct {
	Keyspace string
	Table    string // CQL table name (the base table for an index SSTable)
	Index    string // secondary-index name; "" for the table's own SSTables
	TableID  string
	Version  string
	Format   string // "big" or "bti"
	Gen      string // generation, as in the file names

	Dir    string // directory holding the files
	Prefix string // Dir + "/" + the file-name prefix without its last '-', e.g. "ks/t-<id>/nb-7-big"

	Components []Component // in TOC.txt order
	Bytes      int64       // sum of component sizes
	DataLength int64       // uncompressed length of Data.db (as in CompressionInfo.db)
	Partitions int64
	Rows       int64

	// Flushed is true for SSTables written by a flush (hard-linked into
	// backups/ with incremental backups) and false for compaction outputs.
	Flushed bool
}

// Component is one file of an SSTable.
type Component struct {
	Name string // e.g. "Data.db", "TOC.txt"
	Path string
	Size int64
}

// SnapshotInfo is one snapshot tag across the node.
type SnapshotInfo struct {
	Tag       string
	Keyspaces []string // keyspaces snapshotted, sorted
	Files     []string // every file below */snapshots/<tag>/, incl. manifest.json and schema.cql, sorted
}

// table is one table or secondary index with its live SSTables.
type table struct {
	ks, name, index string // index != "" for a secondary index
	id              string
	system          bool
	weight          float64
	prof            profile
	schema          *schema
	seed            uint64
	dir             string // directory holding the SSTables
	baseDir         string // the table directory (snapshots/ and backups/ live here)
	nextGen         int
	live            []*sstable // by generation
	sizes           *sizeModel // cached by Node.model
	indexes         []*table
}

func (tb *table) key() string {
	if tb.index != "" {
		return tb.ks + "/" + tb.name + "." + tb.index
	}
	return tb.ks + "/" + tb.name
}

// cf is the column-family name in legacy (2.1) file names.
func (tb *table) cf() string {
	if tb.index != "" {
		return tb.name + "." + tb.index
	}
	return tb.name
}

// sstable is a live SSTable and what it takes to regenerate or rewrite it.
type sstable struct {
	info   SSTableInfo
	gen    int
	pieces []piece
	stats  statsParams
}

// clock is the node's time source; simulated unless Config.Now is set.
type clock struct {
	now func() time.Time
	sim time.Time
}

func (c *clock) simulated() bool { return c.now == nil }

// tick returns the time for the next step and advances the simulated clock.
func (c *clock) tick() time.Time {
	if c.now != nil {
		return c.now()
	}
	c.sim = c.sim.Add(time.Second)
	return c.sim
}

// Generate writes a Cassandra data directory below dir (created if missing)
// and returns what it wrote. Files are created exclusively: Generate fails
// rather than overwrite, so dir should be empty. On error, dir may hold a
// partial tree.
func Generate(dir string, cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t, err := lookupVersion(cfg.Version)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	canon, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	if cfg.TotalBytes == 0 {
		cfg.TotalBytes = defaultTotalBytes
	}
	n := &Node{
		Dir: abs, Version: t.name, cfg: cfg, t: t, canon: filepath.ToSlash(canon),
		chunk: cfg.ChunkLength, workers: cfg.Workers,
		rng:      newRng(derive(cfg.Seed, "node")),
		byName:   map[string]*table{},
		inflight: map[string]bool{},
		backups:  map[string]bool{},
		snaps:    map[string]*SnapshotInfo{},
	}
	if n.chunk == 0 {
		n.chunk = t.chunk
	}
	if n.workers == 0 {
		n.workers = runtime.GOMAXPROCS(0)
	}
	n.clock = clock{now: cfg.Now, sim: time.Date(2024, 11, 26, 0, 0, 0, 0, time.UTC).Add(time.Duration(cfg.Seed%86400) * time.Second)}
	n.toc = t.tocOrders[n.rng.intn(len(t.tocOrders))]
	n.hostID = timeUUID(n.clock.tick(), n.rng)

	specs := cfg.Keyspaces
	if len(specs) == 0 {
		specs = defaultKeyspaces(t)
	}
	if err := n.addTables(specs); err != nil {
		return nil, err
	}
	if err := n.populate(); err != nil {
		return nil, err
	}
	if cfg.Snapshots {
		// "nodetool snapshot <user keyspaces>", tagged like nodetool's
		// default (epoch milliseconds); all keyspaces if none is a user's.
		var user []string
		for _, ks := range n.keyspaces() {
			if !isSystemKeyspace(ks) {
				user = append(user, ks)
			}
		}
		if len(user) == 0 {
			user = n.keyspaces()
		}
		if err := n.snapshot(strconv.FormatInt(n.clock.tick().UnixMilli(), 10), user); err != nil {
			return nil, err
		}
	}
	if err := n.activity(); err != nil {
		return nil, err
	}
	if cfg.InFlight {
		if err := n.leaveInFlight(); err != nil {
			return nil, err
		}
	}
	n.refresh()
	return n, nil
}

// addTables creates the table directories.
func (n *Node) addTables(specs []KeyspaceSpec) error {
	for _, ks := range specs {
		for _, ts := range ks.Tables {
			tb := &table{ks: ks.Name, name: ts.Name, id: ts.ID, system: isSystemKeyspace(ks.Name), weight: ts.Weight,
				seed: derive(n.cfg.Seed, "table", ks.Name, ts.Name)}
			if tb.id == "" {
				if tb.system {
					tb.id = systemTableID(ks.Name, ts.Name)
				} else {
					u := timeUUID(n.clock.tick(), n.rng)
					tb.id = hex.EncodeToString(u[:])
				}
			}
			tb.prof = tableProfile(tb.seed, ts.RowsPerPartition, ts.BlobPercent)
			tb.schema = newSchema(&tb.prof)
			tb.dir = ks.Name + "/" + ts.Name + "-" + tb.id
			tb.baseDir = tb.dir
			n.addTable(tb)
			for _, ix := range ts.Indexes {
				it := &table{ks: ks.Name, name: ts.Name, index: ix, id: tb.id, system: tb.system,
					weight: ts.Weight * 0.08, baseDir: tb.dir,
					seed: derive(n.cfg.Seed, "index", ks.Name, ts.Name, ix)}
				// Index rows: the indexed value and the base row's key.
				it.prof = profile{rowsMean: 3, textCols: 1, wordsMax: 2}
				it.schema = &schema{keyType: marshal + "UTF8Type", pk: column{"value", "text", marshal + "UTF8Type"},
					clustering: []column{{"id", "uuid", marshal + "UUIDType"}}}
				it.dir = tb.dir
				if n.t.era >= 22 {
					it.dir = tb.dir + "/." + ix
				}
				tb.indexes = append(tb.indexes, it)
				n.addTable(it)
			}
			if err := n.mkdir(tb.dir); err != nil {
				return err
			}
			for _, it := range tb.indexes {
				if err := n.mkdir(it.dir); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (n *Node) addTable(tb *table) {
	tb.nextGen = 1
	n.tables = append(n.tables, tb)
	n.byName[tb.key()] = tb
}

func tableProfile(seed uint64, rows, blob int) profile {
	r := newRng(derive(seed, "profile"))
	p := profile{
		rowsMean: rows,
		textCols: r.between(1, 4),
		wordsMax: r.between(3, 9), // 9 words of <= 12 bytes fit a one-byte length
		intCols:  r.between(1, 4),
		blobPct:  blob,
		blobMax:  r.between(256, 2048),
	}
	if p.rowsMean == 0 {
		p.rowsMean = 4
	}
	return p
}

// mkdir creates rel (and parents) with mode 0755 regardless of umask.
func (n *Node) mkdir(rel string) error {
	p := n.abs(rel)
	var missing []string
	for d := p; d != n.Dir && d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	for _, d := range missing {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) abs(rel string) string { return filepath.Join(n.Dir, filepath.FromSlash(rel)) }

// stamp sets a file's mtime from the simulated clock (a real clock leaves
// the OS's mtime).
func (n *Node) stamp(rel string, t time.Time) error {
	if !n.clock.simulated() {
		return nil
	}
	return os.Chtimes(n.abs(rel), t, t)
}

// lookup finds a table by keyspace and name; "table.index" names a
// secondary index.
func (n *Node) lookup(ks, name string) (*table, error) {
	tb, ok := n.byName[ks+"/"+name]
	if !ok {
		return nil, fmt.Errorf("no table %s.%s: %w", ks, name, os.ErrNotExist)
	}
	return tb, nil
}

func (n *Node) keyspaces() []string {
	seen := map[string]bool{}
	var out []string
	for _, tb := range n.tables {
		if !seen[tb.ks] {
			seen[tb.ks] = true
			out = append(out, tb.ks)
		}
	}
	sort.Strings(out)
	return out
}

// populate writes the initial live SSTables. Each table's share of
// TotalBytes is split the way size-tiered compaction leaves it: tiers
// growing 4x in size with one to three SSTables each, so a few SSTables are
// large and many small. The smallest tier counts as flushed.
//
// Everything that must be deterministic (generations, seeds, times) is
// planned first; then tables are written concurrently, which overlaps the
// many small system-table SSTables (file creation is slow on some disks)
// with the big ones' compression.
func (n *Node) populate() error {
	var wsum float64
	for _, tb := range n.tables {
		wsum += tb.weight
	}
	if wsum == 0 {
		return nil
	}
	type planned struct {
		tb      *table
		gen     int
		piece   piece
		flushed bool
		created time.Time
		st      *sstable
	}
	var plan [][]*planned // per table
	for _, tb := range n.tables {
		if tb.weight == 0 {
			continue
		}
		budget := float64(n.cfg.TotalBytes) * tb.weight / wsum
		r := newRng(derive(tb.seed, "plan"))
		sizes, tiers := tierSizes(budget, r)
		model := n.model(tb)
		var ps []*planned
		for i, size := range sizes {
			tb.nextGen += r.intn(7) // generations compacted away since
			p := &planned{tb: tb, gen: tb.nextGen, flushed: tiers[i] == 0, created: n.clock.tick()}
			tb.nextGen++
			p.piece = piece{seed: derive(tb.seed, "flush", p.gen), length: model.payloadFor(size)}
			ps = append(ps, p)
		}
		plan = append(plan, ps)
	}

	sem := make(chan struct{}, n.workers)
	errs := make([]error, len(plan))
	var wg sync.WaitGroup
	for i, ps := range plan {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, p := range ps {
				st, err := n.writeSSTable(p.tb, p.gen, []piece{p.piece}, writeOpts{created: p.created})
				if err != nil {
					errs[i] = err
					return
				}
				p.st = st
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, ps := range plan {
		for _, p := range ps {
			p.st.info.Flushed = p.flushed
			p.tb.live = append(p.tb.live, p.st)
			if p.flushed && n.cfg.Backups {
				if err := n.linkBackup(p.tb, p.st); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// tierSizes splits budget bytes into SSTable sizes, largest first, and
// returns each one's tier (0 = smallest, the flushed ones).
func tierSizes(budget float64, r *rng) ([]float64, []int) {
	top := 0
	if budget > 256<<10 {
		top = min(int(math.Log(budget/(256<<10))/math.Log(4)), 5)
	}
	var sizes []float64
	var tiers []int
	var sum float64
	for t := top; t >= 0; t-- {
		count := r.between(1, 3)
		if t == top && top > 0 {
			count = r.between(1, 2)
		}
		for range count {
			s := math.Pow(4, float64(t)) * (0.75 + 0.5*r.float())
			sizes = append(sizes, s)
			tiers = append(tiers, t)
			sum += s
		}
	}
	for i := range sizes {
		sizes[i] *= budget / sum
	}
	return sizes, tiers
}

// sizeModel turns a target SSTable size into a payload length, from a
// sample of the table's rows compressed the way Data.db will be.
type sizeModel struct {
	dataPerPayload  float64 // compressed bytes per payload byte (1/ratio)
	otherPerPayload float64 // index, filter, summary, offsets per payload byte
	fixed           float64 // Statistics, TOC, Digest, headers
}

func (m sizeModel) payloadFor(size float64) int64 {
	p := (size - m.fixed) / (m.dataPerPayload + m.otherPerPayload)
	return max(int64(p), 512)
}

func (n *Node) estimate(tb *table) sizeModel {
	const sample = 64 << 10
	buf, parts, hints := genSegment(nil, sample, derive(tb.seed, "sample"), &tb.prof, 0, nil, nil, 0)
	c := newCompressor(n.cfg.FlateLevel)
	var comp int
	var out []byte
	k := 0
	for i := 0; i < len(buf); i += n.chunk {
		end := min(i+n.chunk, len(buf))
		h := k
		for k < len(hints) && hints[k].pos() < end {
			k++
		}
		out = c.zlibChunk(out[:0], buf[i:end], hints[h:k], i)
		comp += len(out) + 4
	}
	perPart := 24.0 // index entry, filter bits, summary share
	if n.t.legacyNames {
		perPart = 32
	}
	if n.t.format == "bti" {
		perPart = 8
	}
	return sizeModel{
		dataPerPayload:  float64(comp) / sample,
		otherPerPayload: (float64(len(parts))*perPart + 8*sample/float64(n.chunk)) / sample,
		fixed:           5000,
	}
}

// activity does what a running node does between the initial state and a
// backup: a compaction of the two smallest SSTables of one user table and a
// flush into another. With Snapshots on, the snapshot taken before it then
// differs from the live set both ways; with Backups on, the compacted
// flushes survive only in backups/.
func (n *Node) activity() error {
	var compacted *table
	for _, tb := range n.userTables() {
		if len(tb.live) >= 3 {
			compacted = tb
			break
		}
	}
	if compacted != nil {
		s := smallest(compacted.live, 2)
		if _, err := n.compact(compacted, s); err != nil {
			return err
		}
	}
	for _, tb := range n.userTables() {
		if tb != compacted && tb.weight > 0 {
			size := max(float64(n.cfg.TotalBytes)*tb.weight/200, 16<<10)
			_, err := n.flush(tb, int64(size))
			return err
		}
	}
	return nil
}

// userTables are the base tables with SSTables in non-system keyspaces.
func (n *Node) userTables() []*table {
	var out []*table
	for _, tb := range n.tables {
		if !tb.system && tb.index == "" && len(tb.live) > 0 {
			out = append(out, tb)
		}
	}
	return out
}

// smallest returns the k smallest live SSTables, in generation order.
func smallest(live []*sstable, k int) []*sstable {
	s := append([]*sstable(nil), live...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].info.Bytes < s[j].info.Bytes })
	s = s[:min(k, len(s))]
	sort.Slice(s, func(i, j int) bool { return s[i].gen < s[j].gen })
	return s
}

// refresh recomputes the exported fields from the internal state.
func (n *Node) refresh() {
	n.Tables = n.Tables[:0]
	n.SSTables = n.SSTables[:0]
	n.LiveFiles = n.LiveFiles[:0]
	n.Bytes = 0
	for _, tb := range n.tables {
		if tb.index == "" {
			ti := TableInfo{Keyspace: tb.ks, Name: tb.name, ID: tb.id, Dir: tb.dir, System: tb.system}
			for _, ix := range tb.indexes {
				ti.Indexes = append(ti.Indexes, ix.index)
			}
			n.Tables = append(n.Tables, ti)
		}
		for _, st := range tb.live {
			n.SSTables = append(n.SSTables, st.info)
			for _, c := range st.info.Components {
				n.LiveFiles = append(n.LiveFiles, c.Path)
			}
			n.Bytes += st.info.Bytes
		}
	}
	sort.Slice(n.Tables, func(i, j int) bool { return n.Tables[i].Dir < n.Tables[j].Dir })
	sort.Slice(n.SSTables, func(i, j int) bool { return n.SSTables[i].Prefix < n.SSTables[j].Prefix })
	sort.Strings(n.LiveFiles)
	n.InFlight = sortedKeys(n.inflight)
	n.BackupFiles = sortedKeys(n.backups)
	n.Snapshots = n.Snapshots[:0]
	for _, s := range n.snaps {
		n.Snapshots = append(n.Snapshots, *s)
	}
	sort.Slice(n.Snapshots, func(i, j int) bool { return n.Snapshots[i].Tag < n.Snapshots[j].Tag })
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Keyspaces returns the names of the node's keyspaces, sorted.
func (n *Node) Keyspaces() []string { return n.keyspaces() }

// Keyspace returns the live SSTables of one keyspace, sorted by Prefix.
func (n *Node) Keyspace(ks string) []SSTableInfo {
	var out []SSTableInfo
	for _, s := range n.SSTables {
		if s.Keyspace == ks {
			out = append(out, s)
		}
	}
	return out
}

// KeyspaceFiles returns the live files of one keyspace, sorted: what a
// backup of that keyspace must contain.
func (n *Node) KeyspaceFiles(ks string) []string {
	var out []string
	for _, f := range n.LiveFiles {
		if strings.HasPrefix(f, ks+"/") {
			out = append(out, f)
		}
	}
	return out
}
