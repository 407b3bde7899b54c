package nodegen

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
)

// defaultKeyspaces is the keyspace mix Generate uses when Config.Keyspaces
// is empty: the system keyspaces of the version's release (most of their
// tables empty, as on a real node) and three user keyspaces.
func defaultKeyspaces(t *traits) []KeyspaceSpec {
	// w: a tiny share of TotalBytes; 0: an empty table directory.
	type st struct {
		name string
		w    float64
	}
	mk := func(ks string, tables ...st) KeyspaceSpec {
		spec := KeyspaceSpec{Name: ks}
		for _, x := range tables {
			spec.Tables = append(spec.Tables, TableSpec{Name: x.name, Weight: x.w, RowsPerPartition: 2})
		}
		return spec
	}
	var sys []KeyspaceSpec
	switch {
	case t.era <= 22:
		system := []st{{"local", 0.0002}, {"peers", 0.0001}, {"peer_events", 0}, {"compaction_history", 0.002},
			{"sstable_activity", 0.001}, {"size_estimates", 0.003}, {"schema_keyspaces", 0.0002},
			{"schema_columnfamilies", 0.0006}, {"schema_columns", 0.0009}, {"schema_triggers", 0},
			{"schema_usertypes", 0}, {"IndexInfo", 0}, {"batchlog", 0}, {"hints", 0}, {"paxos", 0}, {"range_xfers", 0}}
		if t.era == 21 {
			system = append(system, st{"compactions_in_progress", 0.0001})
			sys = append(sys, mk("system", system...),
				mk("system_auth", st{"users", 0.0001}, st{"credentials", 0.0001}, st{"permissions", 0}))
		} else {
			system = append(system, st{"schema_functions", 0}, st{"schema_aggregates", 0}, st{"available_ranges", 0})
			sys = append(sys, mk("system", system...),
				mk("system_auth", st{"roles", 0.0001}, st{"role_members", 0}, st{"role_permissions", 0},
					st{"resource_role_permissons_index", 0}),
				mk("system_distributed", st{"repair_history", 0.0005}, st{"parent_repair_history", 0.0002}))
		}
	default:
		peers, events, ranges, xfers := "peers", "peer_events", "available_ranges", "transferred_ranges"
		activity := "sstable_activity"
		if t.era >= 40 {
			peers, events, ranges, xfers = "peers_v2", "peer_events_v2", "available_ranges_v2", "transferred_ranges_v2"
		}
		if t.era >= 50 {
			activity = "sstable_activity_v2"
		}
		system := []st{{"local", 0.0002}, {peers, 0.0001}, {events, 0}, {"compaction_history", 0.002},
			{activity, 0.001}, {"size_estimates", 0.003}, {"prepared_statements", 0.0005}, {"batches", 0},
			{"paxos", 0}, {"IndexInfo", 0}, {ranges, 0}, {xfers, 0}, {"built_views", 0}, {"view_builds_in_progress", 0}}
		if t.era >= 40 {
			system = append(system, st{"table_estimates", 0.002}, st{"repairs", 0}, st{"top_partitions", 0})
		}
		schema := []st{{"keyspaces", 0.0002}, {"tables", 0.0005}, {"columns", 0.0008}, {"dropped_columns", 0},
			{"triggers", 0}, {"views", 0}, {"types", 0}, {"functions", 0}, {"aggregates", 0}, {"indexes", 0.0001}}
		auth := []st{{"roles", 0.0001}, {"role_members", 0}, {"role_permissions", 0}, {"resource_role_permissons_index", 0}}
		dist := []st{{"repair_history", 0.0005}, {"parent_repair_history", 0.0002}, {"view_build_status", 0}}
		if t.era >= 40 {
			auth = append(auth, st{"network_permissions", 0})
			dist = append(dist, st{"partition_denylist", 0})
		}
		if t.era >= 50 {
			schema = append(schema, st{"column_masks", 0})
			auth = append(auth, st{"cidr_groups", 0}, st{"cidr_permissions", 0}, st{"identity_to_role", 0})
		}
		sys = append(sys, mk("system", system...), mk("system_schema", schema...), mk("system_auth", auth...),
			mk("system_distributed", dist...))
	}
	sys = append(sys, mk("system_traces", st{"sessions", 0}, st{"events", 0}))

	user := []KeyspaceSpec{
		{Name: "ks_app", Tables: []TableSpec{
			{Name: "events", Weight: 0.26, RowsPerPartition: 6, BlobPercent: 10},
			{Name: "users", Weight: 0.07, RowsPerPartition: 1, Indexes: []string{"users_email_idx"}},
			{Name: "sessions", Weight: 0.12, RowsPerPartition: 3, BlobPercent: 30},
		}},
		{Name: "metrics", Tables: []TableSpec{
			{Name: "samples", Weight: 0.30, RowsPerPartition: 48},
			{Name: "rollups_1h", Weight: 0.07, RowsPerPartition: 24},
		}},
		{Name: "inventory", Tables: []TableSpec{
			{Name: "items", Weight: 0.10, RowsPerPartition: 1, BlobPercent: 20},
			{Name: "orders", Weight: 0.08, RowsPerPartition: 4, BlobPercent: 5},
			{Name: "audit_log", Weight: 0},
		}},
	}
	return append(sys, user...)
}

// isSystemKeyspace reports whether Cassandra owns the keyspace: its table
// ids are name-based and its snapshots carry no schema.cql.
func isSystemKeyspace(ks string) bool { return ks == "system" || strings.HasPrefix(ks, "system_") }

// systemTableID is TableId.forSystemTable (and 2.1's generateLegacyCfId):
// UUID.nameUUIDFromBytes(keyspace + table), an MD5-based version-3 UUID.
// system.local is 7ad54392bcdd35a684174e047860b377 on every node.
func systemTableID(ks, table string) string {
	h := md5.Sum([]byte(ks + table))
	h[6] = h[6]&0x0f | 0x30
	h[8] = h[8]&0x3f | 0x80
	return hex.EncodeToString(h[:])
}

type column struct{ name, cql, marshal string }

// schema is the CQL shape of a table, used for Statistics.db's header and
// snapshots' schema.cql.
type schema struct {
	keyType    string
	pk         column
	clustering []column
	regular    []column
}

const marshal = "org.apache.cassandra.db.marshal."

func newSchema(p *profile) *schema {
	s := &schema{keyType: marshal + "UUIDType", pk: column{"id", "uuid", marshal + "UUIDType"}}
	if p.rowsMean > 1 {
		s.clustering = []column{{"seq", "int", marshal + "Int32Type"}}
	}
	texts := []string{"name", "status", "body", "tags"}
	ints := []string{"count", "size_bytes", "version", "score", "retries", "flags"}
	for i := 0; i < p.textCols; i++ {
		s.regular = append(s.regular, column{texts[i], "text", marshal + "UTF8Type"})
	}
	for i := 0; i < p.intCols; i++ {
		s.regular = append(s.regular, column{ints[i], "bigint", marshal + "LongType"})
	}
	if p.blobPct > 0 {
		s.regular = append(s.regular, column{"payload", "blob", marshal + "BytesType"})
	}
	return s
}

// schemaCQL is a snapshot's schema.cql (3.0+): the table and its indexes.
func schemaCQL(tb *table, chunk int) string {
	s := tb.schema
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s (\n", tb.ks, tb.name)
	cols := append([]column{s.pk}, s.clustering...)
	cols = append(cols, s.regular...)
	for _, c := range cols {
		fmt.Fprintf(&b, "\t%s %s,\n", c.name, c.cql)
	}
	pk := s.pk.name
	for _, c := range s.clustering {
		pk += ", " + c.name
	}
	fmt.Fprintf(&b, "\tPRIMARY KEY (%s)\n) WITH ID = %s\n", pk, dashed(tb.id))
	for _, c := range s.clustering {
		fmt.Fprintf(&b, "\tAND CLUSTERING ORDER BY (%s ASC)\n", c.name)
	}
	b.WriteString("\tAND additional_write_policy = '99p'\n" +
		"\tAND bloom_filter_fp_chance = 0.01\n" +
		"\tAND caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}\n" +
		"\tAND comment = ''\n" +
		"\tAND compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}\n")
	fmt.Fprintf(&b, "\tAND compression = {'chunk_length_in_kb': '%d', 'class': 'org.apache.cassandra.io.compress.DeflateCompressor'}\n", chunk>>10)
	b.WriteString("\tAND crc_check_chance = 1.0\n" +
		"\tAND default_time_to_live = 0\n" +
		"\tAND gc_grace_seconds = 864000\n" +
		"\tAND max_index_interval = 2048\n" +
		"\tAND memtable_flush_period_in_ms = 0\n" +
		"\tAND min_index_interval = 128\n" +
		"\tAND read_repair = 'BLOCKING'\n" +
		"\tAND speculative_retry = '99p';\n")
	for _, ix := range tb.indexes {
		col := "id"
		if len(s.regular) > 0 {
			col = s.regular[0].name
		}
		fmt.Fprintf(&b, "CREATE INDEX IF NOT EXISTS %s ON %s.%s (%s);\n", ix.index, tb.ks, tb.name, col)
	}
	return b.String()
}

// dashed turns 32 hex digits into the 8-4-4-4-12 form.
func dashed(id string) string {
	if len(id) != 32 {
		return id
	}
	return id[0:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
}
