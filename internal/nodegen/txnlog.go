package nodegen

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path"
	"sort"
	"strings"
)

// txnLog is a 3.0+ lifecycle transaction log, <ver>_txn_<op>_<uuid>.log in
// the table's directory. Records follow LogRecord.java:
//
//	ADD:[<abs prefix>,0,<files>][<crc>]       new SSTable, before it is written
//	REMOVE:[<abs prefix>,<mtime ms>,<files>][<crc>]  obsoleted SSTable, at prepare
//	COMMIT:[,0,0][<crc>]
//
// where the prefix is the canonical path without the trailing '-' and crc
// is CRC-32 over the path, the type, the update time (low int, then high
// int) and the file count, big-endian. Each record is a line.
type txnLog struct {
	rel string
}

func (n *Node) newTxn(dir, op string) *txnLog {
	id := timeUUID(n.clock.tick(), n.rng)
	return &txnLog{rel: dir + "/" + fmt.Sprintf("%s_txn_%s_%s.log", n.t.txnVersion, op, uuidString(id))}
}

func logRecord(typ, prefix string, updateTime int64, numFiles int) string {
	if typ != "REMOVE" {
		updateTime = 0 // kept only for REMOVE
	}
	var b [12]byte
	binary.BigEndian.PutUint32(b[0:], uint32(updateTime))
	binary.BigEndian.PutUint32(b[4:], uint32(updateTime>>32))
	binary.BigEndian.PutUint32(b[8:], uint32(numFiles))
	crc := crc32.ChecksumIEEE([]byte(prefix + typ))
	crc = crc32.Update(crc, crc32.IEEETable, b[:])
	return fmt.Sprintf("%s:[%s,%d,%d][%d]", typ, prefix, updateTime, numFiles, crc)
}

// append adds one record, opening and closing the file like Cassandra's
// FileUtils.appendAndSync. The log counts as in flight until removed.
func (n *Node) appendTxn(l *txnLog, typ, prefix string, updateTime int64, numFiles int) error {
	f, err := os.OpenFile(n.abs(l.rel), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	n.inflight[l.rel] = true
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(logRecord(typ, prefix, updateTime, numFiles) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return n.stamp(l.rel, n.clock.tick())
}

func (n *Node) removeTxn(l *txnLog) error {
	delete(n.inflight, l.rel)
	return os.Remove(n.abs(l.rel))
}

// canonPrefix is the absolute, symlink-free SSTable prefix used in logs.
func (n *Node) canonPrefix(tb *table, gen int) string {
	return path.Join(n.canon, tb.dir, n.baseName(tb, gen, ""))
}

// existing lists the files of an SSTable as Cassandra's
// LogRecord.getExistingFiles does (every name starting with "<prefix>-"),
// sorted by mtime then name, with the newest mtime in milliseconds.
func (n *Node) existing(st *sstable) ([]string, int64, error) {
	dir, base := path.Split(st.info.Prefix)
	entries, err := os.ReadDir(n.abs(dir))
	if err != nil {
		return nil, 0, err
	}
	type f struct {
		rel   string
		mtime int64
	}
	var fs []f
	for _, e := range entries {
		if e.IsDir() || !strings.HasPrefix(e.Name(), base+"-") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, 0, err
		}
		fs = append(fs, f{dir + e.Name(), info.ModTime().UnixMilli()})
	}
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].mtime != fs[j].mtime {
			return fs[i].mtime < fs[j].mtime
		}
		return fs[i].rel < fs[j].rel
	})
	var rels []string
	var newest int64
	for _, x := range fs {
		rels = append(rels, x.rel)
		newest = max(newest, x.mtime)
	}
	return rels, newest, nil
}
