package sstable

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tree writes files (relative path → content) under a new temporary root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		writeFile(t, root, rel, content)
	}
	return root
}

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var bigTOC = "Data.db\nIndex.db\nSummary.db\nFilter.db\nStatistics.db\nCompressionInfo.db\nDigest.crc32\nTOC.txt\n"

// sstable returns the files of a complete BIG SSTable dir/prefix.
func sstable(dir, prefix string) map[string]string {
	m := map[string]string{}
	for c := range strings.FieldsSeq(bigTOC) {
		m[dir+"/"+prefix+"-"+c] = "x"
	}
	m[dir+"/"+prefix+"-TOC.txt"] = bigTOC
	return m
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// found returns "dir/prefix" of every SSTable found.
func found(res ScanResult) []string {
	var out []string
	for _, s := range res.SSTables {
		out = append(out, s.Dir+"/"+s.Prefix)
	}
	return out
}

// skipped returns the reason Scan gave for path, or "".
func skipped(res ScanResult, path string) string {
	for _, s := range res.Skipped {
		if s.Path == path {
			return s.Reason
		}
	}
	return ""
}

const td = "ks/t-" + id32 // a 2.1+ table directory

func TestScan(t *testing.T) {
	const txnID = "5a7fd8e0-1b2c-11ef-8f3e-0123456789ab"
	addLog := "ADD:[/var/lib/cassandra/data/" + td + "/nb-2-big,0,8][2613697339]\n"
	removeLog := "REMOVE:[/var/lib/cassandra/data/" + td + "/nb-1-big,1700000000000,8][1234]\n"
	tests := []struct {
		name    string
		files   map[string]string
		opt     ScanOptions
		want    []string          // dir/prefix found
		skipped map[string]string // path → reason
	}{
		{
			name:  "complete",
			files: sstable(td, "nb-1-big"),
			want:  []string{td + "/nb-1-big"},
		},
		{
			name: "TOC lists a missing component",
			files: func() map[string]string {
				m := sstable(td, "nb-1-big")
				delete(m, td+"/nb-1-big-Index.db")
				return m
			}(),
			skipped: map[string]string{td + "/nb-1-big": SkipIncomplete},
		},
		{
			name: "no TOC",
			files: func() map[string]string {
				m := sstable(td, "nb-1-big")
				delete(m, td+"/nb-1-big-TOC.txt")
				return m
			}(),
			skipped: map[string]string{td + "/nb-1-big": SkipIncomplete},
		},
		{
			name:    "TOC with a path in it",
			files:   merge(sstable(td, "nb-1-big"), map[string]string{td + "/nb-1-big-TOC.txt": "Data.db\n../../etc/passwd\n"}),
			skipped: map[string]string{td + "/nb-1-big": SkipIncomplete},
		},
		{
			name:    "open transaction",
			files:   merge(sstable(td, "nb-1-big"), sstable(td, "nb-2-big"), map[string]string{td + "/nb_txn_compaction_" + txnID + ".log": addLog + removeLog}),
			want:    []string{td + "/nb-1-big"},
			skipped: map[string]string{td + "/nb-2-big": SkipUncommitted, td + "/nb_txn_compaction_" + txnID + ".log": SkipTxnLog},
		},
		{
			name:    "committed transaction",
			files:   merge(sstable(td, "nb-1-big"), sstable(td, "nb-2-big"), map[string]string{td + "/nb_txn_compaction_" + txnID + ".log": addLog + removeLog + "COMMIT:[,0,0][2613697339]\n"}),
			want:    []string{td + "/nb-2-big"},
			skipped: map[string]string{td + "/nb-1-big": SkipObsolete},
		},
		{
			name:    "aborted transaction, lower case",
			files:   merge(sstable(td, "nb-2-big"), map[string]string{td + "/nb_txn_flush_" + txnID + ".log": strings.ToLower(addLog) + "abort:[,0,0][1]\n"}),
			skipped: map[string]string{td + "/nb-2-big": SkipUncommitted},
		},
		{
			name:    "torn COMMIT is not a commit",
			files:   merge(sstable(td, "nb-2-big"), map[string]string{td + "/nb_txn_flush_" + txnID + ".log": addLog + "COMMIT:[,0,0][26"}),
			skipped: map[string]string{td + "/nb-2-big": SkipUncommitted},
		},
		{
			name:  "transaction in another directory does not count",
			files: merge(sstable(td, "nb-2-big"), map[string]string{"ks/u-" + id32 + "/nb_txn_flush_" + txnID + ".log": addLog}),
			want:  []string{td + "/nb-2-big"},
		},
		{
			name: "temporary markers and suffixes",
			files: merge(
				sstable(td, "tmp-la-2-big"), sstable(td, "tmplink-la-3-big"),
				sstable(td, "la-4-big"), map[string]string{
					td + "/la-4-big-Statistics.db.tmp":            "new",
					td + "/la-4-big-Data.db." + txnID + ".tmp":    "streaming",
					td + "/tmp/la-5-big-Data.db":                  "x",
					"ks/u-" + id32 + "/ks-u-tmp-ka-1-Data.db":     "x",
					"ks/u-" + id32 + "/ks-u-tmplink-ka-1-Data.db": "x",
					"ks/u-" + id32 + "/ks-u-ka-1-Data.db.tmp":     "x",
				}),
			want: []string{td + "/la-4-big"},
			skipped: map[string]string{
				td + "/tmp-la-2-big-Data.db":                  "temporary",
				td + "/la-4-big-Statistics.db.tmp":            "temporary",
				td + "/tmp":                                   "temporary",
				"ks/u-" + id32 + "/ks-u-tmplink-ka-1-Data.db": "temporary",
			},
		},
		{
			name: "snapshots and backups ignored",
			files: merge(
				sstable(td+"/snapshots/1700000000000", "nb-1-big"),
				sstable(td+"/backups", "nb-1-big"),
				sstable(td+"/snapshots/1700000000000/.by_name", "nb-1-big"),
				map[string]string{td + "/snapshots/1700000000000/manifest.json": "{}"},
			),
			skipped: map[string]string{td + "/snapshots": SkipSnapshot, td + "/backups": SkipBackups},
		},
		{
			name:    "system excluded by default, any case; system_auth kept",
			files:   merge(sstable("system/local-"+id32, "nb-1-big"), sstable("System/peers-"+id32, "nb-1-big"), sstable("system_auth/roles-"+id32, "nb-1-big")),
			want:    []string{"system_auth/roles-" + id32 + "/nb-1-big"},
			skipped: map[string]string{"system": SkipSystem, "System": SkipSystem},
		},
		{
			name:  "system included",
			files: merge(sstable("system/local-"+id32, "nb-1-big"), sstable("system_auth/roles-"+id32, "nb-1-big")),
			opt:   ScanOptions{IncludeSystem: true},
			want:  []string{"system/local-" + id32 + "/nb-1-big", "system_auth/roles-" + id32 + "/nb-1-big"},
		},
		{
			name:    "exclude list is exact",
			files:   merge(sstable("a/t-"+id32, "nb-1-big"), sstable("b/t-"+id32, "nb-1-big"), sstable("B/t-"+id32, "nb-1-big")),
			opt:     ScanOptions{ExcludeKeyspaces: []string{"b"}},
			want:    []string{"B/t-" + id32 + "/nb-1-big", "a/t-" + id32 + "/nb-1-big"},
			skipped: map[string]string{"b": SkipExcluded},
		},
		{
			name:  "system selected by name",
			files: merge(sstable("system/local-"+id32, "nb-1-big"), sstable("b/t-"+id32, "nb-1-big")),
			opt:   ScanOptions{Keyspaces: []string{"system"}},
			want:  []string{"system/local-" + id32 + "/nb-1-big"},
		},
		{
			name:    "keyspace selection",
			files:   merge(sstable("a/t-"+id32, "nb-1-big"), sstable("b/t-"+id32, "nb-1-big")),
			opt:     ScanOptions{Keyspaces: []string{"b"}},
			want:    []string{"b/t-" + id32 + "/nb-1-big"},
			skipped: map[string]string{"a": SkipExcluded},
		},
		{
			name: "secondary indexes: 2.2+ directory and 2.1 name",
			files: merge(
				sstable(td, "nb-1-big"), sstable(td+"/.by_name", "nb-1-big"),
				sstable("ks/u-"+id32, "ks-u-ka-1"), sstable("ks/u-"+id32, "ks-u.by_name-ka-1"),
			),
			want: []string{td + "/nb-1-big", td + "/.by_name/nb-1-big", "ks/u-" + id32 + "/ks-u-ka-1", "ks/u-" + id32 + "/ks-u.by_name-ka-1"},
		},
		{
			name: "1.0 and 1.1 layouts without TOC",
			files: map[string]string{
				"ks/cf-hd-5-Data.db": "x", "ks/cf-hd-5-Index.db": "x", "ks/cf-hd-5-Filter.db": "x", "ks/cf-hd-5-Statistics.db": "x",
				"ks/cf-hd-6-Index.db":        "x", // no Data.db: not renamed yet
				"ks/cf-tmp-hd-7-Data.db":     "x",
				"ks/cf2/ks-cf2-hf-1-Data.db": "x", "ks/cf2/ks-cf2-hf-1-Index.db": "x",
				"ks/snapshots/123/cf-hd-1-Data.db": "x",
			},
			want:    []string{"ks/cf-hd-5", "ks/cf2/ks-cf2-hf-1"},
			skipped: map[string]string{"ks/cf-hd-6": SkipIncomplete, "ks/cf-tmp-hd-7-Data.db": SkipTemporary},
		},
		{
			name: "non-SSTable files are skipped, not errors",
			files: merge(sstable(td, "nb-1-big"), map[string]string{
				td + "/t.json": "{}", "ks/schema.cql": "", "README": "", "lost+found/x": "", td + "/upload/nb-1-big-Data.db": "",
			}),
			want: []string{td + "/nb-1-big"},
			skipped: map[string]string{
				td + "/t.json": SkipOther, "ks/schema.cql": SkipOther, "README": SkipOther,
				"lost+found": SkipUnexpected, td + "/upload": SkipUnexpected,
			},
		},
		{
			name: "SAI components and other extras belong to the SSTable",
			files: merge(sstable(td, "oa-1-big"), map[string]string{
				td + "/oa-1-big-SAI+aa+GroupComplete.db": "x", td + "/oa-1-big-SAI+aa+v+TermsData.db": "x", td + "/oa-1-big-SI_v.db": "x",
			}),
			want: []string{td + "/oa-1-big"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tree(t, tt.files)
			res, err := Scan(root, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			got := found(res)
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("found %v, want %v\nskipped %v", got, want, res.Skipped)
			}
			for p, reason := range tt.skipped {
				if r := skipped(res, p); r != reason {
					t.Errorf("skip of %s: got %q, want %q (all: %v)", p, r, reason, res.Skipped)
				}
			}
			n := 0
			for _, c := range res.SkipCounts {
				n += c
			}
			if n != len(res.Skipped) {
				t.Errorf("SkipCounts add up to %d, Skipped has %d", n, len(res.Skipped))
			}
		})
	}
}

func TestScanFiles(t *testing.T) {
	root := tree(t, merge(sstable(td, "oa-1-big"), map[string]string{
		td + "/oa-1-big-SAI+aa+GroupComplete.db": "x",
		td + "/oa-1-big-Statistics.db.tmp":       "x",
		td + "/oa-10-big-Data.db":                "x",
	}))
	res, err := Scan(root, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SSTables) != 1 {
		t.Fatalf("found %v", found(res))
	}
	got := res.SSTables[0]
	want := SSTable{Keyspace: "ks", Table: "t", TableID: id32, Dir: td, Prefix: "oa-1-big", Layout: Layout22, Version: "oa", Gen: "1", Format: "big"}
	for _, c := range []string{"CompressionInfo.db", "Data.db", "Digest.crc32", "Filter.db", "Index.db", "SAI+aa+GroupComplete.db", "Statistics.db", "Summary.db", "TOC.txt"} {
		want.Files = append(want.Files, td+"/oa-1-big-"+c)
	}
	slices.Sort(want.Files)
	if !slices.Equal(got.Files, want.Files) {
		t.Errorf("files\n got %v\nwant %v", got.Files, want.Files)
	}
	got.Files, want.Files = nil, nil
	if got.Keyspace != want.Keyspace || got.Table != want.Table || got.TableID != want.TableID || got.Dir != want.Dir ||
		got.Prefix != want.Prefix || got.Layout != want.Layout || got.Version != want.Version || got.Gen != want.Gen || got.Format != want.Format {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestScanMaxSkipped(t *testing.T) {
	files := map[string]string{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		files[td+"/"+n+".json"] = ""
	}
	root := tree(t, files)
	for _, tt := range []struct{ max, want int }{{0, 5}, {2, 2}, {-1, 0}} {
		res, err := Scan(root, ScanOptions{MaxSkipped: tt.max})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Skipped) != tt.want || res.SkipCounts[SkipOther] != 5 {
			t.Errorf("MaxSkipped %d: %d skips kept, %d counted; want %d and 5", tt.max, len(res.Skipped), res.SkipCounts[SkipOther], tt.want)
		}
	}
}

func TestScanUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every directory")
	}
	root := tree(t, merge(sstable(td, "nb-1-big"), sstable("other/t-"+id32, "nb-1-big")))
	dir := filepath.Join(root, "ks", "t-"+id32)
	if err := os.Chmod(dir, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	_, err := Scan(root, ScanOptions{})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Scan with an unreadable table directory: %v, want an error naming %s", err, dir)
	}
	// An excluded keyspace is not read at all.
	if _, err := Scan(root, ScanOptions{ExcludeKeyspaces: []string{"ks"}}); err != nil {
		t.Errorf("Scan excluding the unreadable keyspace: %v", err)
	}
}

func TestScanMissingRoot(t *testing.T) {
	if _, err := Scan(filepath.Join(t.TempDir(), "nope"), ScanOptions{}); err == nil {
		t.Error("Scan of a missing data directory: no error")
	}
}

func TestScanSymlinks(t *testing.T) {
	root := tree(t, sstable("elsewhere/t-"+id32, "nb-1-big"))
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(data, "ks"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A table directory moved elsewhere and linked back, and a dangling link.
	if err := os.Symlink(filepath.Join(root, "elsewhere", "t-"+id32), filepath.Join(data, "ks", "t-"+id32)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "gone"), filepath.Join(data, "ks", "u-"+id32)); err != nil {
		t.Fatal(err)
	}
	res, err := Scan(data, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Neither is followed: a backup never leaves the data directory.
	if got := found(res); len(got) != 0 {
		t.Errorf("found %v through a symlinked table directory", got)
	}
	for _, rel := range []string{"ks/t-" + id32, "ks/u-" + id32} {
		if sk := skipOf(res, rel); sk.Reason != SkipNotRegular || !strings.Contains(sk.Detail, "symbolic link") {
			t.Errorf("%s: skip %+v, want %q as a symbolic link", rel, sk, SkipNotRegular)
		}
	}
	// A symlinked keyspace directory is not followed either.
	if err := os.Symlink(filepath.Join(data, "ks"), filepath.Join(data, "ks2")); err != nil {
		t.Fatal(err)
	}
	if res, err = Scan(data, ScanOptions{}); err != nil || skipped(res, "ks2") != SkipNotRegular {
		t.Errorf("symlinked keyspace: %v, skip %q", err, skipped(res, "ks2"))
	}
}

func TestCheckComplete(t *testing.T) {
	const txn = "nb_txn_flush_5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.log"
	root := tree(t, merge(sstable(td, "nb-1-big"), sstable(td, "nb-2-big"), map[string]string{
		td + "/" + txn: "ADD:[/data/" + td + "/nb-2-big,0,8][1]\n",
	}))
	dir := filepath.Join(root, filepath.FromSlash(td))

	files, ok, reason, err := CheckComplete(dir, "nb-1-big")
	if err != nil || !ok || reason != "" || len(files) != 8 || files[0] != "nb-1-big-CompressionInfo.db" {
		t.Errorf("CheckComplete(nb-1-big) = %v, %v, %q, %v", files, ok, reason, err)
	}
	_, ok, reason, err = CheckComplete(dir, "nb-2-big")
	if err != nil || ok || !strings.HasPrefix(reason, SkipUncommitted+": ") || !strings.Contains(reason, txn) {
		t.Errorf("CheckComplete(nb-2-big) = %v, %q, %v; want uncommitted naming the log", ok, reason, err)
	}
	// The log commits: nb-2-big becomes complete.
	writeFile(t, root, td+"/"+txn, "ADD:[/data/"+td+"/nb-2-big,0,8][1]\nCOMMIT:[,0,0][2]\n")
	if _, ok, reason, err := CheckComplete(dir, "nb-2-big"); err != nil || !ok {
		t.Errorf("after COMMIT: CheckComplete(nb-2-big) = %v, %q, %v", ok, reason, err)
	}
	for _, tt := range []struct{ dir, prefix, reason string }{
		{dir, "nb-3-big", SkipIncomplete + ": no files"},
		{dir, "bogus", SkipMalformed + ": not an SSTable prefix"},
		{filepath.Join(root, "nope"), "nb-1-big", SkipIncomplete + ": directory vanished"},
	} {
		if _, ok, reason, err := CheckComplete(tt.dir, tt.prefix); err != nil || ok || reason != tt.reason {
			t.Errorf("CheckComplete(%s) = %v, %q, %v; want %q", tt.prefix, ok, reason, err, tt.reason)
		}
	}
}

func TestParseTxnRecords(t *testing.T) {
	log := "ADD:[/d/ks/t-x/nb-5-big,0,8][3455316384]\n" +
		"remove:[/d/ks/t-x/nb-1-big,1700000000000,8][1]\r\n" +
		"Add:[/d/with,comma/nb-6-big,0,8][7]\n" +
		"ADD:[/d/ks/t-x/nb-7-big,0,8]\n" + // no checksum: torn
		"garbage\n" +
		"COMMIT:[,0,0][9]"
	adds, removes, committed, aborted := parseTxnRecords([]byte(log))
	if !slices.Equal(adds, []string{"nb-5-big", "nb-6-big"}) || !slices.Equal(removes, []string{"nb-1-big"}) || !committed || aborted {
		t.Errorf("parseTxnRecords = %v %v %v %v", adds, removes, committed, aborted)
	}
}

func TestKeyspaces(t *testing.T) {
	root := tree(t, merge(sstable(td, "nb-1-big"), sstable("system/local-"+id32, "nb-1-big"), sstable("other/t-"+id32, "nb-1-big"),
		map[string]string{"empty/.keep": "", "stray.txt": "x", "bad-name/x": ""}))
	if err := os.Symlink(filepath.Join(root, "ks"), filepath.Join(root, "ks2")); err != nil {
		t.Fatal(err)
	}
	got, err := Keyspaces(root, ScanOptions{ExcludeKeyspaces: []string{"other"}})
	if want := []string{"empty", "ks"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Keyspaces = %v, %v; want %v", got, err, want)
	}
}
