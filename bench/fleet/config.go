package fleet

import (
	"fmt"
	"runtime"
	"time"
)

// Config says what store to generate. The zero value is valid: 10 hosts of
// 1 GiB, each with 3 daily backups of 4 keyspaces × 10 tables × 16
// SSTables, seed 0.
type Config struct {
	// Hosts is the number of hosts, named host000, host001, …; 0 means 10.
	Hosts int
	// BytesPerHost is the logical size of one backup of one host: every
	// component of its live SSTables. 0 means 1 GiB. What a host's index
	// holds is this plus what churn adds (Stats.ChunkBytes).
	BytesPerHost int64
	// Keyspaces is the number of user keyspaces per host (ks00, ks01, …);
	// 0 means 4. Each host also has the keyspace fleet_shared.
	Keyspaces int
	// TablesPerKeyspace is the number of tables in each (t00, t01, …); 0
	// means 10. Tables get a weight between 0.25 and 1.75, so their sizes
	// differ; table IDs are the same on every host, as Cassandra's are.
	TablesPerKeyspace int
	// SSTablesPerTable is the number of live SSTables of each table; 0 means
	// 16. Their Data.db sizes are tiered as size-tiered compaction leaves
	// them: two SSTables a tier, tiers 4× apart, at most seven tiers.
	SSTablesPerTable int
	// BackupsPerHost is the number of daily backups of each host; 0 means 3.
	BackupsPerHost int
	// Churn is the fraction of each table's SSTables that a day's
	// compactions replace between two backups; 0 means 0.05, and a
	// negative value means none (every backup the same).
	Churn float64
	// SharedFraction is about the fraction of a host's chunks that are also
	// every other host's (the fleet_shared keyspace); 0 means 0.01, and a
	// negative value means none.
	SharedFraction float64
	// Seed makes the store deterministic, apart from the config's random
	// ID and chunker polynomial (index.NewConfig).
	Seed uint64
	// Workers is the number of hosts generated at once; 0 means GOMAXPROCS.
	Workers int
	// Start is the time of each host's first backup, at whole seconds;
	// host i backs up i seconds later, then every 24 hours. The zero value
	// means 2026-11-01T01:00:00Z.
	Start time.Time
}

// The component files of an SSTable, in the order a backup reads them, and
// their sizes as fractions of Data.db (Cassandra 4's "nb" BIG format with
// 16 KiB compression chunks).
var components = []string{"Data.db", "Index.db", "Filter.db", "Summary.db",
	"CompressionInfo.db", "Statistics.db", "Digest.crc32", "TOC.txt"}

// sharedKeyspace holds the SSTables every host has byte for byte.
const (
	sharedKeyspace = "fleet_shared"
	sharedTables   = 8
)

// withDefaults returns c with its zero fields set, or an error for a value
// no store can be made of.
func (c Config) withDefaults() (Config, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Hosts, 10)
	def(&c.Keyspaces, 4)
	def(&c.TablesPerKeyspace, 10)
	def(&c.SSTablesPerTable, 16)
	def(&c.BackupsPerHost, 3)
	def(&c.Workers, runtime.GOMAXPROCS(0))
	if c.BytesPerHost == 0 {
		c.BytesPerHost = 1 << 30
	}
	switch {
	case c.Churn == 0:
		c.Churn = 0.05
	case c.Churn < 0:
		c.Churn = 0
	}
	switch {
	case c.SharedFraction == 0:
		c.SharedFraction = 0.01
	case c.SharedFraction < 0:
		c.SharedFraction = 0
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	}
	c.Start = c.Start.UTC().Truncate(time.Second)
	switch {
	case c.Hosts < 0 || c.Hosts > 1000:
		return c, fmt.Errorf("fleet: %d hosts: want 1 to 1000", c.Hosts)
	case c.BytesPerHost < 0:
		return c, fmt.Errorf("fleet: negative BytesPerHost %d", c.BytesPerHost)
	case c.Keyspaces < 0 || c.Keyspaces > 100 || c.TablesPerKeyspace < 0 || c.TablesPerKeyspace > 100:
		return c, fmt.Errorf("fleet: %d keyspaces of %d tables: want 1 to 100 of each", c.Keyspaces, c.TablesPerKeyspace)
	case c.SSTablesPerTable < 0 || c.BackupsPerHost < 0 || c.Workers < 0:
		return c, fmt.Errorf("fleet: negative SSTablesPerTable, BackupsPerHost or Workers")
	case c.Churn > 1 || c.SharedFraction > 0.5:
		return c, fmt.Errorf("fleet: churn %g (want at most 1) or shared fraction %g (want at most 0.5)", c.Churn, c.SharedFraction)
	}
	return c, nil
}

// Stats is what Generate wrote. Counts are over all hosts and backups.
type Stats struct {
	Hosts    int
	Backups  int   // backups in all (each a manifest per keyspace)
	SSTables int64 // live SSTables at the last backup of every host
	Files    int64 // their component files

	Chunks       int64 // chunks the index files name: stored chunks
	ChunkBytes   int64 // their bytes
	SharedChunks int64 // chunks of fleet_shared, each referenced by every host
	Refs         int64 // chunk references in all manifests
	LogicalBytes int64 // bytes all manifests describe (every backup counted whole)

	Packs      int64
	PackBytes  int64 // logical size of every pack, as Stat reports it
	StubBytes  int64 // what the stubs hold on disk
	IndexFiles int64
	IndexBytes int64
	Manifests  int64
	// ManifestBytes is the encoded size of every manifest.
	ManifestBytes int64
	Commits       int64 // commit markers: one a backup, unless its keyspaces need more

	Elapsed time.Duration
}

func (s *Stats) add(o Stats) {
	s.Backups += o.Backups
	s.SSTables += o.SSTables
	s.Files += o.Files
	s.Chunks += o.Chunks
	s.ChunkBytes += o.ChunkBytes
	s.SharedChunks += o.SharedChunks
	s.Refs += o.Refs
	s.LogicalBytes += o.LogicalBytes
	s.Packs += o.Packs
	s.PackBytes += o.PackBytes
	s.StubBytes += o.StubBytes
	s.IndexFiles += o.IndexFiles
	s.IndexBytes += o.IndexBytes
	s.Manifests += o.Manifests
	s.ManifestBytes += o.ManifestBytes
	s.Commits += o.Commits
}
