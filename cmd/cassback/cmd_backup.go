package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback/cmd/engine"
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
inode) is not read again.`,
		FlagSet: fs,
		Options: opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("backup takes no arguments, got %q", args[0])
			}
			if err := g.setup(); err != nil {
				return err
			}
			if c.threads < 1 {
				return usagef("--threads %d: must be at least 1", c.threads)
			}
			if !c.ignoreChanges {
				return errors.New("continuous backup (watching for changes) is not available in this version; use --ignore-changes")
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
			if err := engine.CheckDataDirs(c.dataDirs); err != nil {
				return err
			}
			r, err := g.repo(ctx, true)
			if err != nil {
				return err
			}
			sum, err := r.Backup(ctx, engine.BackupOptions{
				DataDirs: c.dataDirs, Host: c.host, ExcludeKeyspaces: c.exclude, IncludeSystem: c.includeSystem,
				Threads: c.threads, CassandraVersion: g.cassandraVersion,
			})
			if err == nil || sum.Files > 0 {
				printBackupSummary(g, sum)
			}
			return err
		},
	}
}

func printBackupSummary(g *globals, s engine.BackupSummary) {
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
	g.log.Info("backup done", "files", s.Files, "reused", s.FilesReused, "bytes_read", s.BytesRead,
		"bytes_new", s.BytesNew, "manifests", len(s.Manifests), "dur", s.Duration)
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
