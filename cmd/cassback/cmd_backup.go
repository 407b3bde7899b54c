package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback"
)

type backupConfig struct {
	threads        int
	reportInterval int
	recursive      bool
	exclude        listFlag
	includeSystem  bool
	ignoreExisting bool
	ignoreChanges  bool
	dataDirs       listFlag
	host           string
	manifestSecs   float64
	drain          time.Duration
	json           bool
	dedupScope     string
}

func backupCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var c backupConfig
	fs := flag.NewFlagSet("cassback backup", flag.ContinueOnError)
	fs.IntVar(&c.threads, "threads", 4, "number of files read and packs uploaded at once")
	fs.IntVar(&c.reportInterval, "report-interval-secs", 5, "seconds between progress reports while watching (0 disables)")
	fs.BoolVar(&c.recursive, "recursive", false, "accepted for compatibility; data directories are always walked recursively")
	fs.Var(&c.exclude, "exclude-keyspace", "keyspace not to back up (repeatable; comma-separated lists too)")
	fs.BoolVar(&c.includeSystem, "include-system-keyspace", false, "also back up the keyspace system")
	fs.BoolVar(&c.ignoreExisting, "ignore-existing", false, "record existing SSTables without uploading them (continuous mode)")
	fs.BoolVar(&c.ignoreChanges, "ignore-changes", false, "back up what is there now and exit instead of watching for changes")
	fs.Var(&c.dataDirs, "cassandra_data_dir", "a Cassandra data directory (repeatable for JBOD; default /var/lib/cassandra/data)")
	fs.Var(&c.dataDirs, "cassandra-data-dir", "same as --cassandra_data_dir")
	fs.StringVar(&c.host, "host", "", "name of this node in the store (default: the fully qualified host name)")
	fs.Float64Var(&c.manifestSecs, "manifest-interval-secs", 5, "continuous mode: a changed keyspace gets a new manifest at most this often")
	fs.BoolVar(&c.json, "json", false, "print the summary as one JSON document (schema in docs/cli.md)")
	fs.StringVar(&c.dedupScope, "dedup-scope", cassback.DedupStore, "what chunks are deduplicated against: store (every host's) or host (this host's own; other hosts' index files are never read)")
	fs.DurationVar(&c.drain, "drain-timeout", time.Minute, "continuous mode: on SIGTERM/SIGINT, finish uploads for at most this long, then write the final manifests and exit")
	return &ffcli.Command{
		Name:       "backup",
		ShortUsage: "cassback [global options] backup [options]",
		ShortHelp:  "back up SSTables",
		LongHelp: `Backs up every complete SSTable of the data directories: TOC.txt present with
every component it lists, no open transaction-log ADD, no temporary marker.
Snapshots, backups/ folders, non-SSTable files, excluded keyspaces and the
keyspace system (unless --include-system-keyspace) are skipped. Files are
cut into content-defined chunks and only chunks the store does not have are
uploaded. Then one manifest per keyspace is written, once every chunk it
references is durable, and a summary is printed.

A file unchanged since this host's last manifest (same path, size, mtime and
inode) is not read again.

Nothing below a data directory that is a symbolic link is followed, and
nothing but regular files is opened (a FIFO or device is never waited on):
such entries, SSTables whose TOC.txt lists a missing component and, in
one-shot mode, SSTables removed before they were held are left out with a
warning naming each, and counted in the summary. A one-shot backup holds a
hard link to every file of the SSTables it found (in a folder beside the data
directory), so a compaction during the backup does not take them away.`,
		FlagSet: fs,
		Options: opts,
		Exec:    func(ctx context.Context, args []string) error { return runBackup(ctx, g, &c, args) },
	}
}

// printBackupSummary prints the summary of a one-shot backup, unless c.json
// (then the caller prints its document), and logs it.
func printBackupSummary(g *globals, c *backupConfig, s cassback.BackupSummary) {
	g.log.Info("backup done", "files", s.Files, "reused", s.FilesReused, "bytes_read", s.BytesRead,
		"bytes_new", s.BytesNew, "manifests", len(s.Manifests), "incomplete", s.Incomplete, "vanished", s.Vanished,
		"not_regular", s.NotRegular, "dur", s.Duration)
	if c.json {
		return
	}
	ratio := "n/a (nothing new)"
	if s.BytesNew > 0 {
		ratio = fmt.Sprintf("%.2fx", s.DedupRatio())
	}
	fmt.Fprintf(g.stdout, "Backed up %d files (%d unchanged, not read) in %d keyspaces in %.1fs\n",
		s.Files, s.FilesReused, len(s.Manifests), s.Duration.Seconds())
	fmt.Fprintf(g.stdout, "Bytes: %s total, %s read, %s new in %d chunks (%d already stored), %d packs; dedup ratio %s\n",
		human(s.BytesTotal), human(s.BytesRead), human(s.BytesNew), s.ChunksNew, s.ChunksDup, s.Packs, ratio)
	for _, n := range s.Manifests {
		fmt.Fprintf(g.stdout, "Backup: %s\n", n)
	}
	for _, ks := range s.Failed {
		fmt.Fprintf(g.stdout, "Failed keyspace: %s\n", ks)
	}
	if s.Incomplete+s.Vanished+s.NotRegular > 0 {
		fmt.Fprintf(g.stdout, "Left out (warnings in the log name each): %d incomplete SSTables, %d SSTables removed before they were held, %d entries not regular files (symbolic links, FIFOs, devices)\n",
			s.Incomplete, s.Vanished, s.NotRegular)
	}
}

// human formats a byte count as the original cassback did: 1024-based,
// one decimal, G/M/K, or plain bytes.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func runBackup(ctx context.Context, g *globals, c *backupConfig, args []string) error {
	if len(args) > 0 {
		return usagef("backup takes no arguments, got %q", args[0])
	}
	if err := g.setup(); err != nil {
		return err
	}
	if c.threads < 1 {
		return usagef("--threads %d: must be at least 1", c.threads)
	}
	if c.ignoreExisting && c.ignoreChanges {
		return usagef("--ignore-existing applies to continuous backup, not with --ignore-changes")
	}
	if c.manifestSecs <= 0 {
		return usagef("--manifest-interval-secs %v: must be positive", c.manifestSecs)
	}
	if err := cassback.ValidDedupScope(c.dedupScope); err != nil {
		return usagef("--dedup-scope %q: want %s or %s", c.dedupScope, cassback.DedupStore, cassback.DedupHost)
	}
	if c.host == "" {
		c.host = defaultHost()
	}
	if err := checkHost(c.host); err != nil {
		return err
	}
	if len(c.dataDirs) == 0 {
		c.dataDirs = listFlag{"/var/lib/cassandra/data"}
	}
	if err := cassback.CheckDataDirs(c.dataDirs); err != nil {
		return err
	}
	r, err := g.repo(ctx, true)
	if err != nil {
		return err
	}
	err = c.backup(ctx, g, r)
	if errors.Is(err, cassback.ErrConfigChanged) {
		// The store was created again where the cache knew another: once
		// more, with the config read from the store.
		g.log.Warn("the store's config changed since it was cached; starting again", "err", err)
		if r, err = g.repo(ctx, true); err != nil {
			return err
		}
		err = c.backup(ctx, g, r)
	}
	return err
}

// backup runs the one-shot or continuous backup the flags ask for.
func (c *backupConfig) backup(ctx context.Context, g *globals, r *cassback.Repo) error {
	bo := cassback.BackupOptions{
		DataDirs: c.dataDirs, Host: c.host, ExcludeKeyspaces: c.exclude, IncludeSystem: c.includeSystem,
		Threads: c.threads, CassandraVersion: g.cassandraVersion, DedupScope: c.dedupScope,
	}
	if !c.ignoreChanges {
		report := time.Duration(c.reportInterval) * time.Second
		if c.reportInterval <= 0 {
			report = -1
		}
		st, err := r.Continuous(ctx, gracefulStop(ctx), cassback.ContinuousOptions{
			BackupOptions: bo, IgnoreExisting: c.ignoreExisting, ReportInterval: report,
			ManifestInterval: time.Duration(c.manifestSecs * float64(time.Second)), DrainTimeout: c.drain,
		})
		if c.json {
			return firstErr(err, writeJSON(g.stdout, continuousJSON(c.host, st)))
		}
		fmt.Fprintf(g.stdout, "Backed up %d SSTables (%d files read, %s, %s new), wrote %d manifests; latency to a durable manifest: median %v, p99 %v\n",
			st.SSTables, st.Files, human(st.BytesRead), human(st.BytesNew), st.Manifests,
			st.LatencyPercentile(50).Round(time.Millisecond), st.LatencyPercentile(99).Round(time.Millisecond))
		return err
	}
	sum, err := r.Backup(ctx, bo)
	if err == nil || sum.Files > 0 {
		printBackupSummary(g, c, sum)
		if c.json {
			return firstErr(err, writeJSON(g.stdout, backupJSON(c.host, sum)))
		}
	}
	return err
}
