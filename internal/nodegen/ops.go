package nodegen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Flush writes a new SSTable of about bytes bytes (all components) into a
// table, the way a memtable flush does: from 3.0 under a flush transaction
// log (ADD, components, TOC.txt last, COMMIT, log deleted); in 2.x under
// tmp- names renamed into place at the end. The table's secondary indexes
// flush with it. With incremental backups (Config.Backups) the new files
// are hard-linked into backups/.
func (n *Node) Flush(ks, table string, bytes int64) (SSTableInfo, error) {
	tb, err := n.lookup(ks, table)
	if err != nil {
		return SSTableInfo{}, err
	}
	if tb.index != "" {
		return SSTableInfo{}, fmt.Errorf("flush %s.%s: an index flushes with its table %s", ks, table, tb.name)
	}
	if bytes <= 0 {
		return SSTableInfo{}, fmt.Errorf("flush %s.%s: size %d must be positive", ks, table, bytes)
	}
	st, err := n.flush(tb, bytes)
	n.refresh()
	if err != nil {
		return SSTableInfo{}, fmt.Errorf("flush %s.%s: %w", ks, table, err)
	}
	return st.info, nil
}

func (n *Node) flush(tb *table, bytes int64) (*sstable, error) {
	gen := tb.nextGen
	tb.nextGen++
	pc := piece{seed: derive(tb.seed, "flush", gen), length: n.model(tb).payloadFor(float64(bytes))}
	st, err := n.commitNew(tb, gen, []piece{pc}, "flush", nil, writeOpts{})
	if err != nil {
		return nil, err
	}
	st.info.Flushed = true
	n.setLive(tb, st, nil)
	if n.cfg.Backups {
		if err := n.linkBackup(tb, st); err != nil {
			return nil, err
		}
	}
	for _, it := range tb.indexes {
		if _, err := n.flush(it, max(bytes*8/100, 4<<10)); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Compact replaces SSTables of a table (the generations in gens) by one new
// SSTable whose uncompressed payload is the inputs' payloads joined in
// generation order and compressed again. From 3.0 it runs under a compaction
// transaction log (ADD new, components, REMOVE inputs, COMMIT, inputs
// deleted, log deleted); in 2.x the output is written under tmp- names and
// renamed, then the inputs are deleted. Hard links of the inputs in
// snapshots/ and backups/ stay. Use "table.index" for an index's SSTables.
func (n *Node) Compact(ks, table string, gens []string) (SSTableInfo, error) {
	tb, err := n.lookup(ks, table)
	if err != nil {
		return SSTableInfo{}, err
	}
	if len(gens) == 0 {
		return SSTableInfo{}, fmt.Errorf("compact %s.%s: no generations given", ks, table)
	}
	var in []*sstable
	seen := map[string]bool{}
	for _, g := range gens {
		if seen[g] {
			return SSTableInfo{}, fmt.Errorf("compact %s.%s: generation %s given twice", ks, table, g)
		}
		seen[g] = true
		st := tb.find(g)
		if st == nil {
			return SSTableInfo{}, fmt.Errorf("compact %s.%s: no live SSTable with generation %s: %w", ks, table, g, fs.ErrNotExist)
		}
		in = append(in, st)
	}
	st, err := n.compact(tb, in)
	n.refresh()
	if err != nil {
		return SSTableInfo{}, fmt.Errorf("compact %s.%s: %w", ks, table, err)
	}
	return st.info, nil
}

func (n *Node) compact(tb *table, in []*sstable) (*sstable, error) {
	in = append([]*sstable(nil), in...)
	sort.Slice(in, func(i, j int) bool { return in[i].gen < in[j].gen })
	var pieces []piece
	var keys int64
	for _, s := range in {
		pieces = append(pieces, s.pieces...)
		keys += s.info.Partitions
	}
	gen := tb.nextGen
	tb.nextGen++
	st, err := n.commitNew(tb, gen, pieces, "compaction", in, writeOpts{estKeys: keys})
	if err != nil {
		return nil, err
	}
	n.setLive(tb, st, in)
	return st, nil
}

func (tb *table) find(gen string) *sstable {
	for _, st := range tb.live {
		if st.info.Gen == gen {
			return st
		}
	}
	return nil
}

// setLive adds st to the table's live SSTables and drops the removed ones.
func (n *Node) setLive(tb *table, st *sstable, removed []*sstable) {
	live := tb.live[:0]
	for _, s := range tb.live {
		drop := false
		for _, r := range removed {
			drop = drop || s == r
		}
		if !drop {
			live = append(live, s)
		}
	}
	tb.live = append(live, st)
	sort.Slice(tb.live, func(i, j int) bool { return tb.live[i].gen < tb.live[j].gen })
}

// commitNew writes a new SSTable and makes it live on disk, obsoleting
// olds, with the version's protocol (transaction log or tmp rename).
func (n *Node) commitNew(tb *table, gen int, pieces []piece, op string, olds []*sstable, o writeOpts) (*sstable, error) {
	if n.t.tmpMarkers {
		o.marker = "tmp"
		st, err := n.writeSSTable(tb, gen, pieces, o)
		if err != nil {
			return nil, err
		}
		if err := n.renameTmp(tb, st); err != nil {
			return nil, err
		}
		for _, old := range olds {
			if err := n.deleteSSTable(old); err != nil {
				return nil, err
			}
		}
		return st, nil
	}
	log := n.newTxn(tb.dir, op)
	if err := n.appendTxn(log, "ADD", n.canonPrefix(tb, gen), 0, len(n.toc)); err != nil {
		return nil, err
	}
	st, err := n.writeSSTable(tb, gen, pieces, o)
	if err != nil {
		return nil, err
	}
	for _, old := range olds {
		files, newest, err := n.existing(old)
		if err != nil {
			return nil, err
		}
		if err := n.appendTxn(log, "REMOVE", n.canonPrefix(tb, old.gen), newest, max(len(files), len(n.toc))); err != nil {
			return nil, err
		}
	}
	if err := n.appendTxn(log, "COMMIT", "", 0, 0); err != nil {
		return nil, err
	}
	for _, old := range olds {
		if err := n.deleteSSTable(old); err != nil {
			return nil, err
		}
	}
	return st, n.removeTxn(log)
}

// renameTmp gives a 2.x SSTable its final names: every component but Data
// and Summary first, then Data ("-Data present should mean the sstable was
// completely renamed"), then Summary, as SSTableWriter.rename does.
func (n *Node) renameTmp(tb *table, st *sstable) error {
	final := n.baseName(tb, st.gen, "")
	var order []int
	var data, summary = -1, -1
	for i, c := range st.info.Components {
		switch c.Name {
		case "Data.db":
			data = i
		case "Summary.db":
			summary = i
		default:
			order = append(order, i)
		}
	}
	order = append(order, data)
	if summary >= 0 {
		order = append(order, summary)
	}
	for _, i := range order {
		c := &st.info.Components[i]
		to := tb.dir + "/" + final + "-" + c.Name
		if err := os.Rename(n.abs(c.Path), n.abs(to)); err != nil {
			return err
		}
		c.Path = to
	}
	st.info.Prefix = tb.dir + "/" + final
	return nil
}

// deleteSSTable removes an SSTable's files, oldest mtime first, as
// Cassandra's transaction tidier does.
func (n *Node) deleteSSTable(st *sstable) error {
	files, _, err := n.existing(st)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.Remove(n.abs(f)); err != nil {
			return err
		}
		delete(n.inflight, f) // a Statistics.db.tmp left in flight goes too
	}
	return nil
}

// RewriteStatistics rewrites the Statistics.db of a live SSTable with a new
// repairedAt (as incremental repair or sstablerepairedset do): the new
// content goes to <Statistics.db>.tmp, which is renamed over the old file,
// so the path keeps its name but gets a new inode and mtime.
func (n *Node) RewriteStatistics(ks, table, gen string) error {
	tb, err := n.lookup(ks, table)
	if err != nil {
		return err
	}
	st := tb.find(gen)
	if st == nil {
		return fmt.Errorf("rewrite statistics %s.%s: no live SSTable with generation %s: %w", ks, table, gen, fs.ErrNotExist)
	}
	err = n.rewriteStatistics(st, true)
	n.refresh()
	if err != nil {
		return fmt.Errorf("rewrite statistics %s.%s-%s: %w", ks, table, gen, err)
	}
	return nil
}

func (n *Node) rewriteStatistics(st *sstable, rename bool) error {
	now := n.clock.tick()
	stats := st.stats
	stats.repairedAt = now.UnixMilli()
	b := statistics(n.t, &stats)
	rel := st.info.Prefix + "-Statistics.db"
	tmp := rel + ".tmp"
	if n.inflight[tmp] {
		// An earlier rewrite never finished; Cassandra would overwrite it.
		if err := os.Remove(n.abs(tmp)); err != nil {
			return err
		}
		delete(n.inflight, tmp)
	}
	if err := n.writeFile(tmp, b); err != nil {
		return err
	}
	if err := n.stamp(tmp, now); err != nil {
		return err
	}
	if !rename {
		n.inflight[tmp] = true
		return nil
	}
	if err := os.Rename(n.abs(tmp), n.abs(rel)); err != nil {
		return err
	}
	st.stats = stats
	return nil
}

// Snapshot does what "nodetool snapshot -t tag [keyspace...]" does: for each
// table of the keyspaces (all when none are given) it hard-links the live
// SSTables into <table>/snapshots/<tag>/ (index SSTables into .<index>/
// below it from 2.2) and writes manifest.json listing the Data.db files,
// plus schema.cql (3.0+) for non-system keyspaces. Tables without
// SSTables get a snapshot directory with a manifest too. The tag must not
// exist yet.
func (n *Node) Snapshot(tag string, keyspaces ...string) error {
	if tag == "" || tag == "." || tag == ".." || strings.ContainsAny(tag, `/\`) {
		return fmt.Errorf("snapshot: invalid tag %q", tag)
	}
	all := n.keyspaces()
	for _, ks := range keyspaces {
		if i := sort.SearchStrings(all, ks); i == len(all) || all[i] != ks {
			return fmt.Errorf("snapshot %s: no keyspace %s: %w", tag, ks, fs.ErrNotExist)
		}
	}
	if len(keyspaces) == 0 {
		keyspaces = all
	}
	err := n.snapshot(tag, keyspaces)
	n.refresh()
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", tag, err)
	}
	return nil
}

func (n *Node) snapshot(tag string, keyspaces []string) error {
	if _, ok := n.snaps[tag]; ok {
		return fmt.Errorf("snapshot %s already exists", tag)
	}
	want := map[string]bool{}
	for _, ks := range keyspaces {
		want[ks] = true
	}
	now := n.clock.tick()
	info := &SnapshotInfo{Tag: tag}
	for _, ks := range keyspaces {
		info.Keyspaces = append(info.Keyspaces, ks)
	}
	sort.Strings(info.Keyspaces)
	for _, tb := range n.tables {
		if tb.index != "" || !want[tb.ks] {
			continue
		}
		sdir := tb.baseDir + "/snapshots/" + tag
		if _, err := os.Lstat(n.abs(sdir)); err == nil {
			return fmt.Errorf("%s already exists", sdir)
		}
		if err := n.mkdir(sdir); err != nil {
			return err
		}
		var listed []string
		for _, t := range append([]*table{tb}, tb.indexes...) {
			dest, sub := sdir, ""
			if t.index != "" && n.t.era >= 22 {
				sub = "." + t.index + "/"
				dest = sdir + "/." + t.index
				if err := n.mkdir(dest); err != nil {
					return err
				}
			}
			for _, st := range t.live {
				for _, c := range st.info.Components {
					to := dest + "/" + path.Base(c.Path)
					if err := os.Link(n.abs(c.Path), n.abs(to)); err != nil {
						return err
					}
					info.Files = append(info.Files, to)
					if c.Name == "Data.db" {
						listed = append(listed, sub+path.Base(c.Path))
					}
				}
			}
		}
		files := []string{sdir + "/manifest.json"}
		if err := n.writeFile(files[0], n.snapshotManifest(listed, now)); err != nil {
			return err
		}
		if n.t.era >= 30 && !tb.system {
			files = append(files, sdir+"/schema.cql")
			if err := n.writeFile(files[1], []byte(schemaCQL(tb, n.chunk))); err != nil {
				return err
			}
		}
		for _, f := range files {
			if err := n.stamp(f, now); err != nil {
				return err
			}
		}
		info.Files = append(info.Files, files...)
	}
	sort.Strings(info.Files)
	n.snaps[tag] = info
	return nil
}

// snapshotManifest is manifest.json: json-simple's compact output before
// 4.1, Jackson's (with created_at as decimal epoch seconds) from 4.1.
func (n *Node) snapshotManifest(files []string, now time.Time) []byte {
	var b strings.Builder
	b.WriteString(`{"files":[`)
	for i, f := range files {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(f))
	}
	b.WriteByte(']')
	if n.t.name == "nb" || n.t.era >= 50 {
		fmt.Fprintf(&b, `,"created_at":%d.%09d,"expires_at":null`, now.Unix(), now.Nanosecond())
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// linkBackup hard-links a flushed SSTable into the table's backups/ (index
// SSTables into backups/.<index>/ from 2.2), as incremental backups do.
func (n *Node) linkBackup(tb *table, st *sstable) error {
	dest := tb.baseDir + "/backups"
	if tb.index != "" && n.t.era >= 22 {
		dest += "/." + tb.index
	}
	if err := n.mkdir(dest); err != nil {
		return err
	}
	for _, c := range st.info.Components {
		to := dest + "/" + path.Base(c.Path)
		if err := os.Link(n.abs(c.Path), n.abs(to)); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("backup of %s: %w", c.Path, err)
			}
			return err
		}
		n.backups[to] = true
	}
	return nil
}

// model caches a table's size model.
func (n *Node) model(tb *table) sizeModel {
	if tb.sizes == nil {
		m := n.estimate(tb)
		tb.sizes = &m
	}
	return *tb.sizes
}
