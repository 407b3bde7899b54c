package nodegen

import (
	"fmt"
	"sort"
	"strings"
)

// traits is what differs between SSTable versions, as far as the files on
// disk are concerned. Sources: Cassandra's BigFormat/BtiFormat version
// comments and the real SSTables under shared/testdata/cassandra-sstables.
type traits struct {
	name    string // "nb"
	release string // Cassandra release line that writes it
	format  string // "big" or "bti"
	era     int    // 21, 22, 30, 40, 50: selects system tables and file conventions

	legacyNames bool   // 2.1: "<ks>-<cf>-ka-<gen>-<Comp>" and 2i files beside the table's
	tmpMarkers  bool   // 2.x: unfinished SSTables carry tmp-/tmplink- markers; 3.0+: transaction logs
	digest      string // component name of the whole-Data.db checksum
	adler       bool   // Digest and per-chunk checksums use Adler-32 (2.x), else CRC-32
	maxCompLen  bool   // CompressionInfo.db has maxCompressedLength (na+)
	statsCRC    bool   // Statistics.db has CRC-32s after header and each component (na+)
	statsHeader bool   // Statistics.db has the serialization-header component (3.0+)
	vintIndex   bool   // Index.db positions are unsigned vints (3.0+), else long + int
	chunk       int    // default chunk_length_in_kb * 1024
	txnVersion  string // version in transaction-log names (latest BIG version of the writer)

	// tocOrders are component orders seen in real TOC.txt files of this
	// version. Before 5.0 the order is a Java HashSet's, so it varies
	// between JVM runs; one is picked per node.
	tocOrders [][]string
}

var versions = map[string]*traits{}

func init() {
	big := func(digest string) []string {
		return []string{"Data.db", "Index.db", "Filter.db", "Summary.db", "Statistics.db", "CompressionInfo.db", digest, "TOC.txt"}
	}
	add := func(t traits, orders ...string) {
		for _, o := range orders {
			t.tocOrders = append(t.tocOrders, strings.Fields(o))
		}
		if len(t.tocOrders) == 0 {
			t.tocOrders = [][]string{big(t.digest)}
		}
		if t.txnVersion == "" {
			t.txnVersion = t.name
		}
		versions[t.name] = &t
	}
	add(traits{name: "ka", release: "2.1", format: "big", era: 21, legacyNames: true, tmpMarkers: true, digest: "Digest.sha1", adler: true, chunk: 64 << 10},
		"Index.db Digest.sha1 CompressionInfo.db Data.db Statistics.db Summary.db TOC.txt Filter.db",
		"Filter.db TOC.txt Statistics.db Summary.db Index.db Data.db Digest.sha1 CompressionInfo.db",
		"Data.db TOC.txt Digest.sha1 Filter.db Statistics.db CompressionInfo.db Summary.db Index.db")
	for _, v := range []string{"la", "lb"} {
		add(traits{name: v, release: "2.2", format: "big", era: 22, tmpMarkers: true, digest: "Digest.adler32", adler: true, chunk: 64 << 10},
			"CompressionInfo.db Digest.adler32 Filter.db Summary.db Data.db Statistics.db TOC.txt Index.db",
			"TOC.txt Statistics.db Digest.adler32 CompressionInfo.db Summary.db Data.db Filter.db Index.db")
	}
	m := map[string][]string{
		"ma": {"Filter.db Digest.crc32 Data.db Index.db Summary.db TOC.txt Statistics.db CompressionInfo.db",
			"Index.db Statistics.db Digest.crc32 Summary.db Data.db TOC.txt Filter.db CompressionInfo.db"},
		"mb": {"CompressionInfo.db Summary.db TOC.txt Digest.crc32 Filter.db Statistics.db Data.db Index.db"},
		"mc": {"TOC.txt Summary.db Filter.db Statistics.db Index.db Data.db CompressionInfo.db Digest.crc32",
			"Digest.crc32 CompressionInfo.db TOC.txt Summary.db Statistics.db Index.db Data.db Filter.db"},
		"md": {"Summary.db Statistics.db CompressionInfo.db TOC.txt Index.db Filter.db Data.db Digest.crc32"},
		"me": {"Data.db Statistics.db CompressionInfo.db Index.db Digest.crc32 Filter.db Summary.db TOC.txt"},
	}
	for v, orders := range m {
		add(traits{name: v, release: "3.0/3.11", format: "big", era: 30, digest: "Digest.crc32", statsHeader: true, vintIndex: true, chunk: 64 << 10}, orders...)
	}
	add(traits{name: "na", release: "4.0-rc1", format: "big", era: 40, digest: "Digest.crc32", statsHeader: true, vintIndex: true, maxCompLen: true, statsCRC: true, chunk: 16 << 10},
		"Filter.db Digest.crc32 Index.db TOC.txt Summary.db Statistics.db CompressionInfo.db Data.db",
		"Index.db TOC.txt Filter.db CompressionInfo.db Summary.db Data.db Statistics.db Digest.crc32")
	add(traits{name: "nb", release: "4.0/4.1", format: "big", era: 40, digest: "Digest.crc32", statsHeader: true, vintIndex: true, maxCompLen: true, statsCRC: true, chunk: 16 << 10},
		"CompressionInfo.db Index.db TOC.txt Filter.db Summary.db Statistics.db Digest.crc32 Data.db")
	// 5.0 writes components in a fixed order.
	add(traits{name: "oa", release: "5.0", format: "big", era: 50, digest: "Digest.crc32", statsHeader: true, vintIndex: true, maxCompLen: true, statsCRC: true, chunk: 16 << 10},
		"Data.db Statistics.db Digest.crc32 TOC.txt CompressionInfo.db Filter.db Index.db Summary.db")
	add(traits{name: "da", release: "5.0", format: "bti", era: 50, digest: "Digest.crc32", statsHeader: true, vintIndex: true, maxCompLen: true, statsCRC: true, chunk: 16 << 10, txnVersion: "oa"},
		"Data.db Statistics.db Digest.crc32 TOC.txt CompressionInfo.db Filter.db Partitions.db Rows.db")
}

// Versions lists the SSTable versions Generate accepts, oldest first.
func Versions() []string {
	vs := make([]string, 0, len(versions))
	for v := range versions {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		a, b := versions[vs[i]], versions[vs[j]]
		if a.era != b.era {
			return a.era < b.era
		}
		return a.name < b.name
	})
	return vs
}

func lookupVersion(v string) (*traits, error) {
	if v == "" {
		v = "nb"
	}
	t, ok := versions[v]
	if !ok {
		return nil, fmt.Errorf("unsupported SSTable version %q (have %s)", v, strings.Join(Versions(), ", "))
	}
	return t, nil
}
