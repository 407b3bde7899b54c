package sstable

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"hash/adler32"
	"hash/crc32"
	"strconv"
	"strings"
	"testing"
)

const id32 = "0123456789abcdef0123456789abcdef"

func TestParsePath(t *testing.T) {
	tests := []struct {
		rel  string
		want Path // Rel, Dir and Name are filled in by the test
	}{
		// 2.2+ names.
		{"ks/t-" + id32 + "/nb-1-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "nb", Gen: "1", Format: "big", Component: "Data.db", Prefix: "nb-1-big"}},
		{"ks/t-" + id32 + "/la-5-big-Digest.adler32", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "la", Gen: "5", Format: "big", Component: "Digest.adler32", Prefix: "la-5-big"}},
		{"ks/t-" + id32 + "/da-12-bti-Partitions.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "da", Gen: "12", Format: "bti", Component: "Partitions.db", Prefix: "da-12-bti"}},
		{"ks/t-" + id32 + "/nb-3fw2_0tj3_3ftw02fh7tq1bd7xso-big-TOC.txt", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "nb", Gen: "3fw2_0tj3_3ftw02fh7tq1bd7xso", Format: "big", Component: "TOC.txt", Prefix: "nb-3fw2_0tj3_3ftw02fh7tq1bd7xso-big"}},
		{"ks/t-" + id32 + "/oa-7-big-SAI+aa+GroupComplete.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "oa", Gen: "7", Format: "big", Component: "SAI+aa+GroupComplete.db", Prefix: "oa-7-big"}},
		{"ks/t-" + id32 + "/oa-7-big-SAI+aa+val_idx+TermsData.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "oa", Gen: "7", Format: "big", Component: "SAI+aa+val_idx+TermsData.db", Prefix: "oa-7-big"}},
		{"ks/t-" + id32 + "/mc-3-big-SI_by_name.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "mc", Gen: "3", Format: "big", Component: "SI_by_name.db", Prefix: "mc-3-big"}},
		// 2.2+ with a table directory that kept its pre-2.1 name.
		{"ks/t/la-1-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t",
			Version: "la", Gen: "1", Format: "big", Component: "Data.db", Prefix: "la-1-big"}},
		// Temporaries.
		{"ks/t-" + id32 + "/tmp-la-2-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "la", Gen: "2", Format: "big", Component: "Data.db", Prefix: "la-2-big", Temporary: true}},
		{"ks/t-" + id32 + "/tmplink-la-2-big-Index.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "la", Gen: "2", Format: "big", Component: "Index.db", Prefix: "la-2-big", Temporary: true}},
		{"ks/t-" + id32 + "/nb-4-big-Statistics.db.tmp", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "nb", Gen: "4", Format: "big", Component: "Statistics.db", Prefix: "nb-4-big", Temporary: true}},
		{"ks/t-" + id32 + "/nb-4-big-Data.db.5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.tmp", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "nb", Gen: "4", Format: "big", Component: "Data.db", Prefix: "nb-4-big", Temporary: true}},
		{"ks/t-" + id32 + "/tmp/nb-9-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "nb", Gen: "9", Format: "big", Component: "Data.db", Prefix: "nb-9-big", Temporary: true}},
		{"ks/t-" + id32 + "/ks-t-tmp-ka-3-Data.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "ka", Gen: "3", Component: "Data.db", Prefix: "ks-t-ka-3", Temporary: true}},
		{"ks/t-" + id32 + "/ks-t-tmplink-ka-3-Index.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "ka", Gen: "3", Component: "Index.db", Prefix: "ks-t-ka-3", Temporary: true}},
		{"ks/t/ks-t-tmp-ic-3-Data.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "t",
			Version: "ic", Gen: "3", Component: "Data.db", Prefix: "ks-t-ic-3", Temporary: true}},
		{"ks/cf-tmp-hd-5-Data.db", Path{Kind: KindComponent, Layout: Layout10, Keyspace: "ks", Table: "cf",
			Version: "hd", Gen: "5", Component: "Data.db", Prefix: "cf-hd-5", Temporary: true}},
		// Legacy names: 2.1 with id, 1.1–2.0 without, 1.0 at keyspace level.
		{"ks/t-" + id32 + "/ks-t-ka-5-Data.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "ka", Gen: "5", Component: "Data.db", Prefix: "ks-t-ka-5"}},
		{"ks/t/ks-t-ic-5-Digest.sha1", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "t",
			Version: "ic", Gen: "5", Component: "Digest.sha1", Prefix: "ks-t-ic-5"}},
		{"Keyspace1/Standard1/Keyspace1-Standard1-hf-5-Data.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "Keyspace1", Table: "Standard1",
			Version: "hf", Gen: "5", Component: "Data.db", Prefix: "Keyspace1-Standard1-hf-5"}},
		{"ks/Standard1-hd-5-Data.db", Path{Kind: KindComponent, Layout: Layout10, Keyspace: "ks", Table: "Standard1",
			Version: "hd", Gen: "5", Component: "Data.db", Prefix: "Standard1-hd-5"}},
		{"ks/Standard1-h-5-Compacted", Path{Kind: KindComponent, Layout: Layout10, Keyspace: "ks", Table: "Standard1",
			Version: "h", Gen: "5", Component: "Compacted", Prefix: "Standard1-h-5"}},
		// A table named "tmp" is not a temporary marker.
		{"ks/tmp/ks-tmp-jb-1-Data.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "tmp",
			Version: "jb", Gen: "1", Component: "Data.db", Prefix: "ks-tmp-jb-1"}},
		// Directory and name disagree on the keyspace (as in Cassandra's own test data): the directory wins.
		{"legacy_tables/legacy_ka_repeated_rt-" + id32 + "/Keyspace1-legacy_ka_repeated_rt-ka-1-Data.db", Path{Kind: KindComponent, Layout: Layout11,
			Keyspace: "legacy_tables", Table: "legacy_ka_repeated_rt", TableID: id32,
			Version: "ka", Gen: "1", Component: "Data.db", Prefix: "Keyspace1-legacy_ka_repeated_rt-ka-1"}},
		// Secondary indexes: 2.2+ directory, ≤2.1 name, 1.0 name.
		{"ks/t-" + id32 + "/.by_name/nb-2-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32, Index: "by_name",
			Version: "nb", Gen: "2", Format: "big", Component: "Data.db", Prefix: "nb-2-big"}},
		{"ks/t-" + id32 + "/ks-t.by_name-ka-2-Data.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "t", TableID: id32, Index: "by_name",
			Version: "ka", Gen: "2", Component: "Data.db", Prefix: "ks-t.by_name-ka-2"}},
		{"ks/t/ks-t.by_name-ic-2-Index.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "t", Index: "by_name",
			Version: "ic", Gen: "2", Component: "Index.db", Prefix: "ks-t.by_name-ic-2"}},
		{"ks/cf.by_name-hd-2-Data.db", Path{Kind: KindComponent, Layout: Layout10, Keyspace: "ks", Table: "cf", Index: "by_name",
			Version: "hd", Gen: "2", Component: "Data.db", Prefix: "cf.by_name-hd-2"}},
		// Snapshots and backups, with and without an index directory; 1.0's at keyspace level.
		{"ks/t-" + id32 + "/snapshots/1700000000000/nb-1-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Snapshot: "1700000000000", Version: "nb", Gen: "1", Format: "big", Component: "Data.db", Prefix: "nb-1-big"}},
		{"ks/t-" + id32 + "/snapshots/truncated-1700000000000-t/.by_name/nb-1-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Index: "by_name", Snapshot: "truncated-1700000000000-t", Version: "nb", Gen: "1", Format: "big", Component: "Data.db", Prefix: "nb-1-big"}},
		{"ks/t-" + id32 + "/backups/nb-1-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			InBackups: true, Version: "nb", Gen: "1", Format: "big", Component: "Data.db", Prefix: "nb-1-big"}},
		{"ks/t-" + id32 + "/backups/.by_name/nb-1-big-Data.db", Path{Kind: KindComponent, Layout: Layout22, Keyspace: "ks", Table: "t", TableID: id32,
			Index: "by_name", InBackups: true, Version: "nb", Gen: "1", Format: "big", Component: "Data.db", Prefix: "nb-1-big"}},
		{"ks/snapshots/123/cf-hd-1-Data.db", Path{Kind: KindComponent, Layout: Layout10, Keyspace: "ks", Table: "cf",
			Snapshot: "123", Version: "hd", Gen: "1", Component: "Data.db", Prefix: "cf-hd-1"}},
		{"ks/backups/cf-hd-1-Data.db", Path{Kind: KindComponent, Layout: Layout10, Keyspace: "ks", Table: "cf",
			InBackups: true, Version: "hd", Gen: "1", Component: "Data.db", Prefix: "cf-hd-1"}},
		// A 1.1 table named "backups" is a table, not 1.0's backups directory.
		{"ks/backups/ks-backups-ic-1-Data.db", Path{Kind: KindComponent, Layout: Layout11, Keyspace: "ks", Table: "backups",
			Version: "ic", Gen: "1", Component: "Data.db", Prefix: "ks-backups-ic-1"}},
		// Transaction logs.
		{"ks/t-" + id32 + "/nb_txn_compaction_5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.log", Path{Kind: KindTxnLog, Keyspace: "ks", Table: "t", TableID: id32,
			Version: "nb", TxnOp: "compaction", TxnID: "5a7fd8e0-1b2c-11ef-8f3e-0123456789ab"}},
		{"ks/t-" + id32 + "/.by_name/mc_txn_anticompactionafterrepair_5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.log", Path{Kind: KindTxnLog, Keyspace: "ks", Table: "t", TableID: id32,
			Index: "by_name", Version: "mc", TxnOp: "anticompactionafterrepair", TxnID: "5a7fd8e0-1b2c-11ef-8f3e-0123456789ab"}},
		// Other files: never an error.
		{"ks/t-" + id32 + "/t.json", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/snapshots/1700000000000/manifest.json", Path{Keyspace: "ks", Table: "t", TableID: id32, Snapshot: "1700000000000"}},
		{"ks/t-" + id32 + "/snapshots/1700000000000/schema.cql", Path{Keyspace: "ks", Table: "t", TableID: id32, Snapshot: "1700000000000"}},
		{"ks/t-" + id32 + "/nb-1-big-Data.db~", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/foo.tmp", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/nb-1-Data.db", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/nbc-1-big-Data.db", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/nb-x1-big-Data.db", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/nb-3fw2_0tj3_3ftw02fh7tq1bd7xs-big-Data.db", Path{Keyspace: "ks", Table: "t", TableID: id32}}, // 27-char id
		{"ks/t-" + id32 + "/junk-nb-1-big-Data.db", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/nb_txn_compaction_nouuid.log", Path{Keyspace: "ks", Table: "t", TableID: id32}},
		{"ks/t-" + id32 + "/.hidden/sub/nb-1-big-Data.db", Path{Keyspace: "ks"}},
		{"ks/t-0123/nb-1-big-Data.db", Path{Keyspace: "ks"}},                             // short id
		{"ks/t-0123456789ABCDEF0123456789ABCDEF/nb-1-big-Data.db", Path{Keyspace: "ks"}}, // upper-case id
		{"ks/t-" + id32 + "/upload/nb-1-big-Data.db", Path{Keyspace: "ks"}},
		{"ks/schema.cql", Path{Keyspace: "ks"}},
		{"lost+found/x", Path{}},
		{"README", Path{}},
		{"ks/t-" + id32 + "/ks-t-ka-5-Data.db/extra", Path{Keyspace: "ks"}},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			got, err := ParsePath(tt.rel)
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", tt.rel, err)
			}
			want := tt.want
			want.Rel = tt.rel
			if i := strings.LastIndexByte(tt.rel, '/'); i >= 0 {
				want.Dir, want.Name = tt.rel[:i], tt.rel[i+1:]
			} else {
				want.Name = tt.rel
			}
			if got != want {
				t.Errorf("ParsePath(%q)\n got %+v\nwant %+v", tt.rel, got, want)
			}
		})
	}
}

func TestParsePathMalformed(t *testing.T) {
	for _, rel := range []string{
		"",
		"/ks/t/nb-1-big-Data.db",
		"ks//nb-1-big-Data.db",
		"ks/t/",
		"./ks/t/nb-1-big-Data.db",
		"ks/../t/nb-1-big-Data.db",
		"ks/t/..",
		`ks\t\nb-1-big-Data.db`,
		"ks/t/nb-1-big-Data.db\x00",
		"ks/t/nb-1-big-\nData.db",
		"ks/t/\xff",
		"ks/" + strings.Repeat("a", 256) + "/x",
	} {
		_, err := ParsePath(rel)
		if !errors.Is(err, ErrBadPath) {
			t.Errorf("ParsePath(%q) = %v, want ErrBadPath", rel, err)
		}
	}
}

func TestSplitPrefix(t *testing.T) {
	tests := []struct {
		prefix               string
		layout               Layout
		version, gen, format string
		ok                   bool
	}{
		{"nb-1-big", Layout22, "nb", "1", "big", true},
		{"da-3g3i_16y0_0vajl2jq1r2uw372nw-bti", Layout22, "da", "3g3i_16y0_0vajl2jq1r2uw372nw", "bti", true},
		{"ks-cf-ka-1", Layout11, "ka", "1", "", true},
		{"ks-cf.idx-ic-12", Layout11, "ic", "12", "", true},
		{"cf-hd-5", Layout10, "hd", "5", "", true},
		{"tmp-nb-1-big", LayoutNone, "", "", "", false},
		{"nb-1", LayoutNone, "", "", "", false},
		{"", LayoutNone, "", "", "", false},
		{"a-b-c-d-e", LayoutNone, "", "", "", false},
	}
	for _, tt := range tests {
		l, v, g, f, ok := SplitPrefix(tt.prefix)
		if l != tt.layout || v != tt.version || g != tt.gen || f != tt.format || ok != tt.ok {
			t.Errorf("SplitPrefix(%q) = %v %q %q %q %v, want %v %q %q %q %v", tt.prefix, l, v, g, f, ok, tt.layout, tt.version, tt.gen, tt.format, tt.ok)
		}
	}
}

func TestRelease(t *testing.T) {
	for v, want := range map[string]string{
		"h": "1.0", "hd": "1.0", "hf": "1.1", "ic": "1.2", "jb": "2.0", "ka": "2.1", "la": "2.2", "lb": "2.2",
		"ma": "3.0", "me": "3.0", "na": "4.0", "nb": "4.0", "nc": "5.0", "oa": "5.0", "da": "5.0", "zz": "", "": "",
	} {
		if got := Release(v); got != want {
			t.Errorf("Release(%q) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[string]bool{"h": false, "hd": false, "hf": false, "ia": true, "ka": true, "nb": true, "da": true, "": false} {
		if got := HasTOC(v); got != want {
			t.Errorf("HasTOC(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestDigest(t *testing.T) {
	data := []byte("some sstable data")
	dec := func(v uint32) []byte { return []byte(strconv.FormatUint(uint64(v), 10)) }
	sha := sha1.Sum(data)
	tests := []struct {
		version string
		digest  []byte
		ok      bool
	}{
		{"nb", dec(crc32.ChecksumIEEE(data)), true},
		{"da", dec(crc32.ChecksumIEEE(data)), true},
		{"ma", dec(crc32.ChecksumIEEE(data)), true},
		{"la", dec(adler32.Checksum(data)), true},
		{"ka", dec(adler32.Checksum(data)), true},
		{"ka", append(dec(adler32.Checksum(data)), '\n'), true},
		{"ic", []byte(hex.EncodeToString(sha[:]) + "  ks-cf-ic-1-Data.db\n"), true},
		{"nb", dec(adler32.Checksum(data)), false},
		{"la", dec(crc32.ChecksumIEEE(data)), false},
		{"ic", []byte(strings.Repeat("0", 40)), false},
	}
	for _, tt := range tests {
		err := CheckDigest(tt.version, tt.digest, bytes.NewReader(data))
		if tt.ok && err != nil {
			t.Errorf("CheckDigest(%s, %q): %v", tt.version, tt.digest, err)
		}
		if !tt.ok && !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("CheckDigest(%s, %q) = %v, want ErrDigestMismatch", tt.version, tt.digest, err)
		}
	}
	for _, bad := range []string{"", "abc", "-1", "99999999999", strings.Repeat("1", 5000)} {
		err := CheckDigest("nb", []byte(bad), bytes.NewReader(data))
		if err == nil || errors.Is(err, ErrDigestMismatch) {
			t.Errorf("CheckDigest(nb, %.20q) = %v, want a parse error", bad, err)
		}
	}
	for comp, want := range map[string]string{"Digest.crc32": "crc32", "Digest.adler32": "adler32", "Digest.sha1": "adler32", "Data.db": ""} {
		if got := DigestAlgorithm(comp); got != want {
			t.Errorf("DigestAlgorithm(%q) = %q, want %q", comp, got, want)
		}
	}
}
