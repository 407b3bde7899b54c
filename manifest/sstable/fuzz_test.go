package sstable

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// FuzzParsePath classifies hostile relative paths, as a scan of an odd data
// directory and a restore of a hostile manifest do: it must never panic; a
// path it refuses wraps ErrBadPath; one it accepts splits into Dir and
// Name, and a component it recognises has a prefix SplitPrefix reads back
// as the same SSTable.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"ks/t-" + id32 + "/nb-1-big-Data.db", "ks/t-" + id32 + "/tmp-la-2-big-Data.db",
		"ks/t-" + id32 + "/nb-4-big-Data.db.5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.tmp",
		"ks/t-" + id32 + "/ks-t-ka-5-Data.db", "ks/cf-hd-5-Data.db", "ks/t/.idx/nb-1-big-Data.db",
		"ks/t-" + id32 + "/snapshots/tag/nb-1-big-TOC.txt", "ks/t-" + id32 + "/backups/.idx/nb-1-big-Index.db",
		"ks/t-" + id32 + "/nb_txn_compaction_5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.log",
		"ks/t-" + id32 + "/oa-7-big-SAI+aa+val_idx+TermsData.db", "../etc/passwd", "ks//t", "/abs",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		p, err := ParsePath(rel)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("ParsePath(%q): %v does not wrap ErrBadPath", rel, err)
			}
			return
		}
		if p.Rel != rel || strings.TrimPrefix(p.Dir+"/"+p.Name, "/") != rel {
			t.Fatalf("ParsePath(%q): Dir %q, Name %q", rel, p.Dir, p.Name)
		}
		if filepath.IsAbs(rel) || slices.Contains(strings.Split(rel, "/"), "..") {
			t.Fatalf("ParsePath accepted %q, which leaves the data directory", rel)
		}
		if p.Keyspace != "" && !IsName(p.Keyspace) {
			t.Fatalf("ParsePath(%q): keyspace %q", rel, p.Keyspace)
		}
		if p.Kind != KindComponent {
			return
		}
		layout, version, gen, format, ok := SplitPrefix(p.Prefix)
		if !ok || layout != p.Layout || version != p.Version || gen != p.Gen || format != p.Format {
			t.Fatalf("ParsePath(%q) = prefix %q (%v %q %q %q); SplitPrefix gives %v %q %q %q, %v",
				rel, p.Prefix, p.Layout, p.Version, p.Gen, p.Format, layout, version, gen, format, ok)
		}
		if !validComponent(p.Component) {
			t.Fatalf("ParsePath(%q): component %q", rel, p.Component)
		}
	})
}

// tocDir and txnTable are the table directory and SSTable the TOC and
// transaction-log targets write.
const (
	txnTable  = "ks/t-" + id32
	txnPrefix = "nb-1-big"
	txnLog    = "nb_txn_compaction_5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.log"
)

// fuzzSSTable writes a BIG SSTable of Data.db, Index.db, Statistics.db and
// the given TOC.txt into a fresh table directory below root.
func fuzzSSTable(t *testing.T, root string, toc []byte) string {
	dir := filepath.Join(root, filepath.FromSlash(txnTable))
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"Data.db", "Index.db", "Statistics.db"} {
		if err := os.WriteFile(filepath.Join(dir, txnPrefix+"-"+c), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, txnPrefix+"-TOC.txt"), toc, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// FuzzTOC checks a hostile TOC.txt: CheckComplete and Scan must never panic
// nor fail, must agree, and must call the SSTable complete exactly when
// every component the TOC lists is there.
func FuzzTOC(f *testing.F) {
	f.Add([]byte("Data.db\nIndex.db\nStatistics.db\nTOC.txt\n"))
	f.Add([]byte("Data.db\r\nFilter.db\n"))
	f.Add([]byte("../../../etc/shadow\n"))
	f.Add([]byte("  Data.db  \n\n\n"))
	f.Add([]byte{})
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, toc []byte) {
		if len(toc) > maxTOC {
			return // a read error, not a verdict: not what this target checks
		}
		dir := fuzzSSTable(t, root, toc)
		files, ok, reason, err := CheckComplete(dir, txnPrefix)
		if err != nil {
			t.Fatalf("CheckComplete: %v", err)
		}
		present := map[string]bool{"Data.db": true, "Index.db": true, "Statistics.db": true, "TOC.txt": true}
		want := true
		for line := range strings.SplitSeq(string(toc), "\n") {
			if c := strings.TrimSpace(line); c != "" && !present[c] {
				want = false
			}
		}
		if ok != want {
			t.Fatalf("TOC %q: complete %v (%s), want %v", toc, ok, reason, want)
		}
		if ok && len(files) != 4 {
			t.Fatalf("TOC %q: files %q, want the 4 components", toc, files)
		}
		checkScanAgrees(t, root, ok)
	})
}

// addRE matches a well-formed transaction-log ADD of txnPrefix, the shape
// Cassandra writes.
var addRE = regexp.MustCompile(`^(?i:add):\[[^,\]\n]*/` + txnPrefix + `,[0-9]+,[0-9]+\]\[[0-9]+\]$`)

// FuzzTxnLog checks a hostile transaction log beside a complete SSTable:
// CheckComplete and Scan must never panic nor fail, must agree, and must
// never call the SSTable complete while the log has a well-formed ADD of it
// and no COMMIT at all.
func FuzzTxnLog(f *testing.F) {
	add := "ADD:[/var/lib/cassandra/data/" + txnTable + "/" + txnPrefix + ",0,8][2613697339]\n"
	f.Add([]byte(add))
	f.Add([]byte(add + "COMMIT:[,0,0][2613697339]\n"))
	f.Add([]byte(strings.ToLower(add) + "abort:[,0,0][1]\n"))
	f.Add([]byte(add + "COMMIT:[,0,0][26"))
	f.Add([]byte("REMOVE:[/data/" + txnTable + "/" + txnPrefix + ",1700000000000,8][1]\nCOMMIT:[,0,0][1]\n"))
	f.Add([]byte("ADD:[,,][]\nADD:[\n:]["))
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, log []byte) {
		dir := fuzzSSTable(t, root, []byte("Data.db\nIndex.db\nTOC.txt\n"))
		if err := os.WriteFile(filepath.Join(dir, txnLog), log, 0o644); err != nil {
			t.Fatal(err)
		}
		_, ok, reason, err := CheckComplete(dir, txnPrefix)
		if err != nil {
			t.Fatalf("CheckComplete: %v", err)
		}
		added := false
		for line := range strings.SplitSeq(string(log), "\n") {
			added = added || addRE.MatchString(strings.TrimSpace(line))
		}
		if ok && added && !strings.Contains(strings.ToLower(string(log)), "commit") {
			t.Fatalf("log %q: SSTable complete (%s) though added and never committed", log, reason)
		}
		checkScanAgrees(t, root, ok)
	})
}

// checkScanAgrees checks that Scan of root finds the one SSTable exactly
// when CheckComplete did.
func checkScanAgrees(t *testing.T, root string, complete bool) {
	t.Helper()
	res, err := Scan(root, ScanOptions{})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	found := len(res.SSTables) == 1 && res.SSTables[0].Prefix == txnPrefix
	if found != complete || len(res.SSTables) > 1 {
		t.Fatalf("Scan found %d SSTables, CheckComplete says complete %v", len(res.SSTables), complete)
	}
}
