package nodegen

import (
	"fmt"
	"regexp"
	"time"
)

// Config says what node to generate. The zero value is valid: a 64 MiB
// Cassandra 4.0 ("nb") node with the default keyspace mix and seed 0.
type Config struct {
	// Seed makes the output deterministic: the same Config and directory
	// path give the same names, bytes and (with the simulated clock) mtimes.
	Seed uint64

	// TotalBytes is the approximate size of all live SSTables (every
	// component). 0 means 64 MiB. The result is usually within a few
	// percent; Node.Bytes has the exact figure.
	TotalBytes int64

	// Version is the SSTable version: "ka" (2.1), "la"/"lb" (2.2),
	// "ma".."me" (3.x), "na"/"nb" (4.x), "oa" (5.0 BIG) or "da" (5.0 BTI).
	// "" means "nb".
	Version string

	// Keyspaces to generate; empty means the default mix: the version's
	// system keyspaces and three user keyspaces (ks_app, metrics,
	// inventory) with several tables each, one with a secondary index.
	Keyspaces []KeyspaceSpec

	// Snapshots also takes a snapshot of the user keyspaces (hard links,
	// manifest.json, schema.cql) before the generated activity, so the
	// snapshot holds SSTables that are no longer live and vice versa.
	Snapshots bool

	// Backups turns on incremental backups: flushed SSTables (the smallest
	// tier at generation, and every Flush later) are hard-linked into
	// <table>/backups/; compaction outputs are not, as in Cassandra.
	Backups bool

	// InFlight leaves unfinished work in some user tables, named as the
	// version would: a flush still writing (no TOC.txt), a flush written but
	// not committed, a compaction between prepare and commit, and a
	// Statistics.db.tmp rewrite. 3.0+ use transaction logs; 2.x tmp-/tmplink-
	// markers. None of it is live; Node.InFlight lists the files.
	InFlight bool

	// ChunkLength is the compression chunk length in bytes: a power of two
	// from 4 KiB to 1 MiB. 0 means the version's default (64 KiB before
	// 4.0, 16 KiB from 4.0).
	ChunkLength int

	// FlateLevel 0 compresses chunks with the package's fast
	// fixed-Huffman deflate encoder; 1-9 uses compress/flate at that level,
	// closer to Java's Deflater output but 2-3x slower.
	FlateLevel int

	// Workers is how many goroutines generate and compress the chunks of
	// one SSTable, and how many tables Generate writes at once; 0 means
	// GOMAXPROCS. Output does not depend on it.
	Workers int

	// Now is the clock for file mtimes, snapshot tags and time-based UUIDs.
	// nil means a simulated clock that starts at 2024-11-26T00:00:00Z plus
	// a seed-dependent offset and advances one second per step; files
	// then get that mtime, so the whole tree is deterministic. With a real
	// clock, mtimes and transaction-log names vary between runs.
	Now func() time.Time
}

// KeyspaceSpec is one keyspace to generate.
type KeyspaceSpec struct {
	Name   string
	Tables []TableSpec
}

// TableSpec is one table. Zero fields take the documented defaults.
type TableSpec struct {
	Name string

	// ID is the table id in the directory name, 32 lowercase hex digits.
	// "" means what Cassandra would use: name-based for system keyspaces,
	// a time-based UUID (from the seed) for the others.
	ID string

	// Weight is the table's share of TotalBytes relative to the other
	// tables. 0 gives an empty table: a directory without SSTables.
	Weight float64

	// RowsPerPartition is the mean number of rows per partition; 0 means 4.
	RowsPerPartition int

	// BlobPercent is the percentage of rows carrying a random blob, which
	// makes Data.db less compressible; 0 means none.
	BlobPercent int

	// Indexes are legacy secondary indexes on the table. Each has its own
	// SSTables: in .<index>/ below the table directory from 2.2, beside the
	// table's own as <ks>-<table>.<index>-ka-... in 2.1.
	Indexes []string
}

const defaultTotalBytes = 64 << 20

var (
	nameRE = regexp.MustCompile(`^\w{1,48}$`) // CQL identifiers as Cassandra stores them
	idRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func (c *Config) validate() error {
	if c.TotalBytes < 0 {
		return fmt.Errorf("negative TotalBytes %d", c.TotalBytes)
	}
	if c.ChunkLength != 0 && (c.ChunkLength < 4<<10 || c.ChunkLength > segmentSize || c.ChunkLength&(c.ChunkLength-1) != 0) {
		return fmt.Errorf("chunk length %d: want a power of two from 4 KiB to 1 MiB", c.ChunkLength)
	}
	if c.FlateLevel < 0 || c.FlateLevel > 9 {
		return fmt.Errorf("flate level %d: want 0-9", c.FlateLevel)
	}
	if c.Workers < 0 {
		return fmt.Errorf("negative Workers %d", c.Workers)
	}
	seen := map[string]bool{}
	for _, ks := range c.Keyspaces {
		if !nameRE.MatchString(ks.Name) {
			return fmt.Errorf("keyspace name %q: want 1-48 letters, digits or underscores", ks.Name)
		}
		if seen[ks.Name] {
			return fmt.Errorf("keyspace %s given twice", ks.Name)
		}
		seen[ks.Name] = true
		tables := map[string]bool{}
		for _, t := range ks.Tables {
			if !nameRE.MatchString(t.Name) {
				return fmt.Errorf("table name %s.%q: want 1-48 letters, digits or underscores", ks.Name, t.Name)
			}
			if tables[t.Name] {
				return fmt.Errorf("table %s.%s given twice", ks.Name, t.Name)
			}
			tables[t.Name] = true
			if t.ID != "" && !idRE.MatchString(t.ID) {
				return fmt.Errorf("table %s.%s: id %q is not 32 lowercase hex digits", ks.Name, t.Name, t.ID)
			}
			if t.Weight < 0 || t.RowsPerPartition < 0 || t.BlobPercent < 0 || t.BlobPercent > 100 {
				return fmt.Errorf("table %s.%s: weight, rows per partition and blob percent must be >= 0 (blob percent <= 100)", ks.Name, t.Name)
			}
			for _, ix := range t.Indexes {
				if !nameRE.MatchString(ix) {
					return fmt.Errorf("index name %s.%s.%q: want 1-48 letters, digits or underscores", ks.Name, t.Name, ix)
				}
			}
		}
	}
	return nil
}
