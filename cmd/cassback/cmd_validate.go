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
	"github.com/cassback/cassback/manifest"
)

// errDamaged is returned when validate finds anything missing or corrupt.
var errDamaged = errors.New("validate found missing or corrupt data")

func validateCmd(g *globals, opts []ff.Option) *ffcli.Command {
	var o cassback.ValidateOptions
	fs := flag.NewFlagSet("cassback validate", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON document (schema in docs/cli.md)")
	fs.BoolVar(&o.Checksum, "checksum", false, "also read every referenced chunk and check its BLAKE3, each whole file's BLAKE3 and each Data.db's Cassandra digest")
	fs.StringVar(&o.Host, "host", "", "validate only this host's backups (default without a backup name: every host)")
	fs.IntVar(&o.Threads, "threads", 8, "reads from the store at once")
	return &ffcli.Command{
		Name:       "validate",
		ShortUsage: "cassback [global options] validate [BACKUP_NAME] [--checksum] [--host H] [--json]",
		ShortHelp:  "check that backups are complete and intact",
		LongHelp: `Checks one backup, or without a name every backup in the store (of --host
only, if given): every manifest decodes; every chunk it references is in an
index file and in a stored pack of the indexed size; every such pack's
header agrees with the index (two small ranged reads per pack). With
--checksum, every referenced chunk is read and its BLAKE3 checked, and so is
each whole file and each Data.db's Cassandra Digest. Also lists orphan packs,
stale sessions and condemned packs waiting to be deleted. Exits 1 when
anything is missing or corrupt.`,
		FlagSet: fs,
		Options: opts,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 1 {
				return usagef("validate takes at most one backup name")
			}
			if len(args) == 1 {
				if _, _, _, err := manifest.ParseBackupName(args[0]); err != nil {
					return usagef("%v", err)
				}
				o.Name = args[0]
			}
			if o.Host != "" {
				if err := checkHost(o.Host); err != nil {
					return err
				}
			}
			if err := g.setup(); err != nil {
				return err
			}
			if o.Checksum && g.endpoint == "survey" {
				return usagef("validate --checksum reads data, and the survey endpoint stores none")
			}
			r, err := g.repo(ctx, false)
			if err != nil {
				return err
			}
			rep, err := r.Validate(ctx, o)
			if err != nil {
				return err
			}
			if *asJSON {
				err = writeJSON(g.stdout, validateJSON(o, rep))
			} else {
				printValidate(g, o, rep)
			}
			if err != nil {
				return err
			}
			if !rep.OK() {
				return fmt.Errorf("%w: %d problems (see the report)", errDamaged, len(rep.Problems)+len(rep.BadIndex)+len(rep.Damaged))
			}
			return nil
		},
	}
}

func printValidate(g *globals, o cassback.ValidateOptions, rep cassback.ValidateReport) {
	w := g.stdout
	byBackup := map[string][]cassback.Problem{}
	for _, p := range rep.Problems {
		byBackup[p.Backup] = append(byBackup[p.Backup], p)
	}
	names := append([]string(nil), rep.Backups...)
	for b := range byBackup {
		found := false
		for _, n := range names {
			found = found || n == b
		}
		if !found {
			names = append(names, b)
		}
	}
	for _, b := range names {
		ps := byBackup[b]
		if len(ps) == 0 {
			fmt.Fprintf(w, "All files present for backup %s\n", b)
			continue
		}
		fmt.Fprintf(w, "Missing or corrupt files found for backup %s\n", b)
		heads := map[cassback.ProblemKind]string{cassback.Corrupt: "Corrupt Files:", cassback.Missing: "Missing Files:", cassback.Unindexed: "Unindexed Files (stored, but no index file names their packs):"}
		for _, kind := range []cassback.ProblemKind{cassback.Corrupt, cassback.Missing, cassback.Unindexed} {
			first := true
			for _, p := range ps {
				if p.Kind != kind {
					continue
				}
				if first {
					fmt.Fprintln(w, heads[kind])
					first = false
				}
				where := p.File
				if where == "" {
					where = "(the manifest)"
				}
				fmt.Fprintf(w, "\t%s/%s %s: %s\n", p.Keyspace, p.Table, where, p.What)
			}
		}
	}
	if o.Checksum {
		fmt.Fprintln(w, "Files were checksummed")
	} else {
		fmt.Fprintln(w, "Files were not checksummed")
	}
	fmt.Fprintf(w, "\nChecked %d backups, %d files, %d chunks, %d pack headers; read %s in %.1fs\n",
		len(rep.Backups), rep.Files, rep.Chunks, rep.Packs, human(rep.BytesRead), rep.Duration.Seconds())
	for _, b := range rep.BadIndex {
		fmt.Fprintf(w, "Unreadable index file: %s\n", b)
	}
	for _, d := range rep.Damaged {
		fmt.Fprintf(w, "Damaged object: %s\n", d)
	}
	if len(rep.Orphans) > 0 {
		fmt.Fprintf(w, "Orphan packs (in no index file; purge removes them when old enough): %d\n", len(rep.Orphans))
		for _, p := range rep.Orphans {
			fmt.Fprintf(w, "\t%s\n", p)
		}
	}
	for _, s := range rep.StaleSessions {
		fmt.Fprintf(w, "Stale session: %s (%s, %s, last renewed %s)\n", s.Key, s.Kind, s.State, s.Renewed.UTC().Format(time.RFC3339))
	}
	for _, s := range rep.Condemned {
		fmt.Fprintf(w, "Condemned, waiting to be deleted: %s (%d packs, %d bytes, condemned %s)\n", s.ID, len(s.Packs), s.Bytes, s.Time.UTC().Format(time.RFC3339))
	}
	for _, n := range rep.Lone {
		fmt.Fprintf(w, "Commit marker without its backup (written late by a process stopped after a purge removed the backup, or the manifest was lost; the next purge removes it): %s\n", n)
	}
}
