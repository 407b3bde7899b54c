package nodegen

import (
	"os"
	"strings"
)

// leaveInFlight leaves four kinds of unfinished work in user tables, as a
// crash or a copy taken mid-operation would find them. None is live.
//
// 3.0+ (transaction logs):
//  1. a flush still streaming: log with ADD, partial Data.db and index, no TOC.txt;
//  2. a flush fully written but not committed: log with ADD, all components
//     incl. TOC.txt, no COMMIT;
//  3. a compaction between prepare and commit: log with ADD (complete new
//     SSTable) and REMOVE of two inputs, no COMMIT; the inputs stay live;
//  4. a Statistics.db.tmp beside a live SSTable (mutable-component rewrite).
//
// 2.x (tmp markers): 1. a partial tmp- SSTable; 2. a complete tmp- SSTable
// with its TOC, not yet renamed; 3. a partial tmp- compaction output with
// tmplink- hard links of its Data and index (early open); 4. as in 3.0+.
func (n *Node) leaveInFlight() error {
	users := n.userTables()
	if len(users) == 0 {
		return nil
	}
	pick := func(i int) *table { return users[i%len(users)] }
	size := max(float64(n.cfg.TotalBytes)/100, 256<<10)

	// 1. Flush in progress: about half of the payload streamed.
	tb := pick(0)
	gen := tb.nextGen
	tb.nextGen++
	pc := piece{seed: derive(tb.seed, "flush", gen), length: n.model(tb).payloadFor(size)}
	if err := n.writeInFlight(tb, gen, []piece{pc}, "flush", nil, writeOpts{partial: max(pc.length/2, 1)}); err != nil {
		return err
	}

	// 2. Flush written, not committed.
	tb = pick(1)
	gen = tb.nextGen
	tb.nextGen++
	pc = piece{seed: derive(tb.seed, "flush", gen), length: n.model(tb).payloadFor(size / 2)}
	if err := n.writeInFlight(tb, gen, []piece{pc}, "flush", nil, writeOpts{}); err != nil {
		return err
	}

	// 4. A mutable component being rewritten (before 3, so that a REMOVE
	// record would count the .tmp file, as Cassandra's would).
	tb = pick(3)
	if err := n.rewriteStatistics(smallest(tb.live, 1)[0], false); err != nil {
		return err
	}

	// 3. Compaction not committed, in a table with two live SSTables.
	tb = nil
	for i := range users {
		if t := pick(2 + i); len(t.live) >= 2 {
			tb = t
			break
		}
	}
	if tb != nil {
		in := smallest(tb.live, 2)
		var pieces []piece
		var keys int64
		for _, s := range in {
			pieces = append(pieces, s.pieces...)
			keys += s.info.Partitions
		}
		gen = tb.nextGen
		tb.nextGen++
		o := writeOpts{estKeys: keys}
		if n.t.tmpMarkers {
			var total int64
			for _, p := range pieces {
				total += p.length
			}
			o.partial = max(total/2, 1)
		}
		if err := n.writeInFlight(tb, gen, pieces, "compaction", in, o); err != nil {
			return err
		}
	}
	return nil
}

// writeInFlight writes an SSTable that does not become live: under an open
// transaction log (3.0+) or tmp- names (2.x). For a 2.x compaction it also
// adds the tmplink- hard links an early-opened reader makes.
func (n *Node) writeInFlight(tb *table, gen int, pieces []piece, op string, olds []*sstable, o writeOpts) error {
	if n.t.tmpMarkers {
		o.marker = "tmp"
		st, err := n.writeSSTable(tb, gen, pieces, o)
		if err != nil {
			return err
		}
		for _, c := range st.info.Components {
			n.inflight[c.Path] = true
		}
		if op != "compaction" {
			return nil
		}
		tmp, link := n.baseName(tb, gen, "tmp"), n.baseName(tb, gen, "tmplink")
		for _, c := range st.info.Components {
			if c.Name != "Data.db" && c.Name != "Index.db" {
				continue
			}
			to := strings.Replace(c.Path, tmp, link, 1)
			if err := os.Link(n.abs(c.Path), n.abs(to)); err != nil {
				return err
			}
			n.inflight[to] = true
		}
		return nil
	}
	log := n.newTxn(tb.dir, op)
	if err := n.appendTxn(log, "ADD", n.canonPrefix(tb, gen), 0, len(n.toc)); err != nil {
		return err
	}
	st, err := n.writeSSTable(tb, gen, pieces, o)
	if err != nil {
		return err
	}
	for _, c := range st.info.Components {
		n.inflight[c.Path] = true
	}
	for _, old := range olds {
		files, newest, err := n.existing(old)
		if err != nil {
			return err
		}
		if err := n.appendTxn(log, "REMOVE", n.canonPrefix(tb, old.gen), newest, max(len(files), len(n.toc))); err != nil {
			return err
		}
	}
	return nil
}
