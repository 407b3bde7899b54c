package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os/user"
	"sort"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/manifest"
)

type restoreConfig struct {
	o         cassback.RestoreOptions
	host, at  string
	keyspaces listFlag
	tables    listFlag
	reportSec int
	json      bool
}

func restoreCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var c restoreConfig
	o := &c.o
	fs := flag.NewFlagSet("cassback restore", flag.ContinueOnError)
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/cassandra/data", "folder to restore into (Cassandra's data directory or an empty folder)")
	fs.StringVar(&c.host, "host", "", "host whose backups to restore (default: this host's fully qualified name)")
	fs.Var(&c.keyspaces, "keyspace", "restore only this keyspace (repeatable; comma lists too)")
	fs.Var(&c.tables, "table", "restore only this table (repeatable; comma lists too)")
	fs.StringVar(&c.at, "at", "", "restore the latest backup at or before this time (UTC unless it has a zone; default: now)")
	fs.IntVar(&o.Threads, "threads", 8, "ranged reads from the store at once")
	fs.IntVar(&c.reportSec, "report-interval-secs", 5, "accepted for compatibility")
	fs.StringVar(&o.Owner, "owner", "", "owner of restored files (default: as recorded)")
	fs.StringVar(&o.Group, "group", "", "group of restored files (default: as recorded)")
	fs.BoolVar(&o.NoChown, "no-chown", false, "do not change the owner of restored files")
	fs.BoolVar(&o.NoChmod, "no-chmod", false, "do not change the mode of restored files")
	fs.BoolVar(&o.NoChecksum, "no-checksum", false, "trust existing files of the right size and skip the whole-file check after writing (chunks are always checked)")
	fs.BoolVar(&o.NoChecksum, "no-checkum", false, "same as --no-checksum (the original's spelling)")
	fs.BoolVar(&c.json, "json", false, "print the outcome as one JSON document (schema in docs/cli.md)")
	fs.BoolVar(&o.FailIfCorrupt, "fail-if-corrupt", false, "stop at the first missing or corrupt chunk")
	return &ffcli.Command{
		Name:       "restore",
		ShortUsage: "cassback [global options] restore [BACKUP_NAME] --data-dir DIR [options]",
		ShortHelp:  "restore SSTables",
		LongHelp: `Restores one backup by name, or without a name the latest backup at or before
--at of each keyspace of the host. Files go to the layout of the Cassandra
version that wrote them below --data-dir. Chunks are fetched with parallel
ranged reads and checked; each file is written under a temporary name and
renamed into place only when its BLAKE3 matches. An identical existing file
is skipped; a different one is moved to <data-dir>/../cassback-corrupt/.
Exits 1, naming the files, if any file could not be restored.`,
		FlagSet: fs,
		Options: opts,
		Exec:    func(ctx context.Context, args []string) error { return runRestore(ctx, g, &c, args) },
	}
}

func printRestore(g *globals, dataDir string, res cassback.RestoreResult) {
	w := g.stdout
	line := func(f cassback.FileOutcome, reason string) {
		fmt.Fprintf(w, "%s:%s -> %s/%s \tbecause %s\n", f.Backup, f.Path, dataDir, f.Path, reason)
	}
	if len(res.Moved) > 0 {
		fmt.Fprintln(w, "Moved corrupt existing files:")
		for _, f := range res.Moved {
			fmt.Fprintf(w, "%s/%s -> %s\n", dataDir, f.Path, f.Reason)
		}
		fmt.Fprintln(w)
	}
	byReason := map[string][]cassback.FileOutcome{}
	for _, f := range res.Failed {
		byReason[f.Reason] = append(byReason[f.Reason], f)
	}
	reasons := make([]string, 0, len(byReason))
	for r := range byReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "Failed transfers - %s:\n", r)
		for _, f := range byReason[r] {
			line(f, r)
		}
		fmt.Fprintln(w)
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintln(w, "Skipped files:")
		for _, f := range res.Skipped {
			line(f, f.Reason)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Restored files:")
	for _, f := range res.Restored {
		line(f, "no file")
	}
	fmt.Fprintf(w, "\nRestored %d files (%s), skipped %d, failed %d\n", len(res.Restored), human(res.Bytes), len(res.Skipped), len(res.Failed))
}

// checkOwner reports a --owner or --group that names no user or group here.
func checkOwner(o cassback.RestoreOptions) error {
	if o.NoChown {
		return nil
	}
	if o.Owner != "" {
		if _, err := user.Lookup(o.Owner); err != nil {
			return usagef("--owner %s: no such user", o.Owner)
		}
	}
	if o.Group != "" {
		if _, err := user.LookupGroup(o.Group); err != nil {
			return usagef("--group %s: no such group", o.Group)
		}
	}
	return nil
}

func runRestore(ctx context.Context, g *globals, c *restoreConfig, args []string) error {
	o := &c.o
	if len(args) > 1 {
		return usagef("restore takes at most one backup name, got %d arguments", len(args))
	}
	if err := g.setup(); err != nil { // checks --threads (limits)
		return err
	}
	if err := checkOwner(*o); err != nil {
		return err
	}
	when := time.Now()
	if c.at != "" {
		t, err := manifest.ParseTime(c.at)
		if err != nil {
			return usagef("--at: %v", err)
		}
		when = t
	}
	name := ""
	if len(args) == 1 {
		name = args[0]
		if _, _, _, err := manifest.ParseBackupName(name); err != nil {
			return usagef("%v", err)
		}
	}
	if c.host == "" {
		c.host = defaultHost()
	}
	if err := checkHost(c.host); err != nil {
		return err
	}
	r, err := g.repo(ctx, false)
	if err != nil {
		return err
	}
	ms, err := cassback.Select(ctx, r.Store, c.host, name, c.keyspaces, when)
	var damaged *cassback.DamagedError
	if errors.As(err, &damaged) && len(ms) > 0 {
		// Restore the other keyspaces, and fail at the end.
		g.log.Error("restoring the other keyspaces", "err", err)
	} else if err != nil {
		return err
	}
	o.Tables = c.tables
	res, err := r.Restore(ctx, ms, *o)
	if damaged != nil {
		err = errors.Join(damaged, err)
	}
	if c.json {
		return firstErr(err, writeJSON(g.stdout, restoreJSON(o.DataDir, res)))
	}
	printRestore(g, o.DataDir, res)
	return err
}
